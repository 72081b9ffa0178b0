/**
 * Progress of a scan: on a TTY a live bar (images done / total, images per second, ETA);
 * in a pipe (Slurm logs, CI) one plain line every N images.
 */
import cliProgress from 'cli-progress';
import type { ScanProgress } from './job.js';

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export interface ProgressReporter {
  update(p: ScanProgress): void;
  stop(): void;
}

export function progressReporter(opts: { tty: boolean; every: number; stream?: NodeJS.WritableStream; label?: string }): ProgressReporter {
  const stream = opts.stream ?? process.stderr;
  const label = opts.label ?? 'scan';
  const rateOf = (p: ScanProgress) => (p.sessionSeconds > 0 ? p.session / p.sessionSeconds : 0);
  const etaOf = (p: ScanProgress) => {
    const r = rateOf(p);
    return r > 0 ? (p.total - p.processed) / r : NaN;
  };
  if (opts.tty) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} |{bar}| {value}/{total} images | {rate} images/s | ETA {etaText}{skippedText}`,
        stream: stream as NodeJS.WriteStream,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const payload = { rate: rateOf(p).toFixed(1), etaText: formatDuration(etaOf(p)), skippedText: p.skipped ? ` | ${p.skipped} skipped` : '' };
        if (!started) {
          bar.start(p.total, p.processed, payload);
          started = true;
        } else bar.update(p.processed, payload);
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let lastLine = -1;
  let last: ScanProgress | null = null;
  const line = (p: ScanProgress) => {
    const pct = p.total ? ((100 * p.processed) / p.total).toFixed(1) : '100.0';
    stream.write(
      `${label}: ${p.processed}/${p.total} images (${pct} %), ${rateOf(p).toFixed(2)} images/s, ETA ${formatDuration(etaOf(p))}${p.skipped ? `, ${p.skipped} skipped` : ''}\n`,
    );
    lastLine = p.processed;
  };
  return {
    update(p) {
      last = p;
      if (lastLine < 0) lastLine = p.processed - p.session; // start of this session
      if (Math.floor(p.processed / opts.every) > Math.floor(lastLine / opts.every) || p.processed === p.total) line(p);
    },
    stop() {
      if (last && lastLine !== last.processed) line(last);
    },
  };
}
