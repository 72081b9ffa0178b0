#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    // Only programming errors reach here: user mistakes are UserErrors printed in main().
    process.stderr.write(`qkscope: internal error (please report): ${e instanceof Error ? e.stack : e}\n`);
    process.exitCode = 1;
  },
);

// Benchmarks read the process's own peak RSS (no /usr/bin/time needed). Linux's VmHWM first:
// getrusage's maxrss survives exec, so a child of a large parent (the bench after its in-process
// loops) would report the parent's resident size at fork.
if (process.env.QKSCOPE_REPORT_RSS === '1') {
  process.on('exit', () => {
    let kb = process.resourceUsage().maxRSS;
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
      if (m) kb = Number(m[1]);
    } catch {
      // not Linux: maxRSS
    }
    process.stderr.write(`qkscope-maxrss-kb: ${kb}\n`);
  });
}
