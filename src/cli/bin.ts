#!/usr/bin/env node
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

// Benchmarks read the process's own peak RSS (portable; no /usr/bin/time needed).
if (process.env.QKSCOPE_REPORT_RSS === '1') {
  process.on('exit', () => process.stderr.write(`qkscope-maxrss-kb: ${process.resourceUsage().maxRSS}\n`));
}
