/**
 * A mistake the user can fix (bad path, corrupt file, wrong flag). The CLI prints only the
 * message (one line, naming the file and the fix) and exits non-zero, never a stack trace.
 */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}
