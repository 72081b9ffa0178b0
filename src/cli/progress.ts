/**
 * The CLI's progress display for every long command: on a terminal a live bar (count / total,
 * rate, ETA, skips); in a pipe (Slurm logs, CI) one plain line every N units, plus a line at
 * least every minute so a slow job never looks hung, and a last line at the end.
 */
import cliProgress from 'cli-progress';
import type { Progress } from '../progress.js';

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export interface ProgressDisplayOptions {
  /** Draw a live bar (default: stderr is a terminal). */
  tty?: boolean;
  /** In a pipe: a line every this many units. */
  every?: number;
  /** In a pipe: a line at least this often (seconds) while work goes on. */
  everySeconds?: number;
  stream?: NodeJS.WritableStream;
  /** Notes (one line each) go here too. */
  prefix?: string;
}

/** Default `--progress-every` of every command. */
export const DEFAULT_PROGRESS_EVERY = 100;

export function progressDisplay(opts: ProgressDisplayOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? (stream as NodeJS.WriteStream).isTTY === true;
  const every = opts.every ?? DEFAULT_PROGRESS_EVERY;
  const everyMs = (opts.everySeconds ?? 60) * 1000;
  const prefix = opts.prefix ?? 'qkscope';
  let label = '';
  let unit = 'images';
  let total = 0;
  let done = 0;
  let skipped = 0;
  let startDone = 0;
  let t0 = 0;
  let bar: cliProgress.SingleBar | null = null;
  let lastLineDone = -1;
  let lastLineAt = 0;
  let active = false;

  const rate = () => {
    const s = (performance.now() - t0) / 1000;
    return s > 0 ? (done - startDone) / s : 0;
  };
  const eta = () => {
    const r = rate();
    return r > 0 ? (total - done) / r : NaN;
  };
  const payload = () => ({ label, unit, rate: rate() >= 10 ? rate().toFixed(0) : rate().toFixed(2), etaText: formatDuration(eta()), skippedText: skipped ? ` | ${skipped} skipped` : '' });
  const line = () => {
    const pct = total ? ((100 * done) / total).toFixed(1) : '100.0';
    const p = payload();
    stream.write(`${label}: ${done}/${total} ${unit} (${pct} %), ${p.rate} ${unit}/s, ETA ${p.etaText}${skipped ? `, ${skipped} skipped` : ''}\n`);
    lastLineDone = done;
    lastLineAt = performance.now();
  };

  return {
    start(l, t, o = {}) {
      if (active) this.end();
      label = l;
      total = t;
      unit = o.unit ?? 'images';
      done = o.done ?? 0;
      startDone = done;
      skipped = 0;
      t0 = performance.now();
      active = true;
      if (tty) {
        bar = new cliProgress.SingleBar(
          { format: '{label} |{bar}| {value}/{total} {unit} | {rate} {unit}/s | ETA {etaText}{skippedText}', stream: stream as NodeJS.WriteStream, hideCursor: true, etaBuffer: 50 },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done, payload());
      } else {
        lastLineDone = done;
        lastLineAt = performance.now();
      }
    },
    advance(n, s = 0) {
      if (!active) return;
      done += n;
      skipped += s;
      if (bar) bar.update(done, payload());
      else if (Math.floor(done / every) > Math.floor(lastLineDone / every) || done === total || performance.now() - lastLineAt >= everyMs) line();
    },
    note(message) {
      if (bar) {
        // Keep the bar intact: clear the line, write the note, redraw.
        stream.write(`\r\x1b[2K${prefix}: ${message}\n`);
        bar.render();
      } else stream.write(`${prefix}: ${message}\n`);
    },
    end() {
      if (!active) return;
      active = false;
      if (bar) {
        bar.stop();
        bar = null;
      } else if (lastLineDone !== done) line();
    },
  };
}
