/**
 * The shape every command shares. A command is a job:
 *
 *   run<Cmd>(…, options, ctx?) → result     plain data, computed through runtime/ and analysis/;
 *                                           no file I/O, progress through ctx.progress
 *   write<Cmd>(result, dir, …) → manifest   through the one run-directory writer (store/run-dir.ts)
 *
 * and `cli/<cmd>.ts` only parses flags, builds the context (progress display, Ctrl-C) and calls
 * the two. The server and library users call the same functions.
 */
import { SILENT, type Progress, type StopSignal } from '../progress.js';

export interface JobContext {
  progress: Progress;
  /** Set `.stop = true` to end a long job after the unit in flight. */
  stop?: StopSignal;
}

export function jobContext(ctx?: Partial<JobContext>): JobContext {
  return { progress: ctx?.progress ?? SILENT, stop: ctx?.stop };
}
