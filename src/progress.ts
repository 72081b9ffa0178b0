/**
 * How long jobs say how far they are. Jobs and the image-batch loop call a `Progress`; the CLI
 * gives them one that draws a live bar on a terminal or prints a line every N units in a pipe
 * (cli/progress.ts), the server and library callers give their own or none.
 */
export interface Progress {
  /** A phase of work begins: `total` units (`unit`, e.g. 'images'), `done` of them already done (resume). */
  start(label: string, total: number, opts?: { unit?: string; done?: number }): void;
  /** `n` more units are done; `skipped` of them were skipped (unreadable images). */
  advance(n: number, skipped?: number): void;
  /** A one-line message for the user (a slower route taken, a resumed state). */
  note(message: string): void;
  /** The phase is over (the bar is cleared; a pipe gets its last line). */
  end(): void;
}

/** A Progress that shows nothing (library calls without a display). */
export const SILENT: Progress = {
  start() {},
  advance() {},
  note() {},
  end() {},
};

/** Asks a long job to stop after the unit in flight (SIGINT/SIGTERM, a server's cancel). */
export interface StopSignal {
  stop: boolean;
}
