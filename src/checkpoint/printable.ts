/**
 * Names read from a checkpoint (tensor names, pickled globals, dict keys) are attacker-chosen
 * bytes: before they go into a one-line message, control characters are escaped (a newline
 * would split the line) and long names are cut.
 */
export function printable(s: string, max = 80): string {
  const t = s.replace(/[\x00-\x1f\x7f\u2028\u2029]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return t.length > max ? `${t.slice(0, max)}…` : t;
}
