/**
 * The hostile-input suite: every case of cases.ts through the real CLI, under limits.
 *
 *   npm run test:hostile                         # all cases (< 2 minutes)
 *   QKSCOPE_HOSTILE_FILTER=pickle npm run test:hostile
 *   QKSCOPE_HOSTILE_REPORT=results.json ...      # also write time / RSS per case
 *   QKSCOPE_HOSTILE_CLI=/old/dist/src/cli/bin.js  # run another build (to measure "before")
 *   QKSCOPE_HOSTILE_TIMEOUT_MS, QKSCOPE_HOSTILE_AS_MB  # other default limits
 *
 * Not named *.test.ts: the normal `npm test` does not run it (its fast relatives live in
 * test/checkpoint/); .ci/run runs it after npm test.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CASES } from './cases.js';
import { CLI_UNDER_TEST, DEFAULT_LIMITS, HAVE_PRLIMIT, runCli, type CliRun } from './run-cli.js';
// The server's hostile clients (a flood of slow uploads, aborted uploads): their own file.
import './serve.js';

const filter = process.env.QKSCOPE_HOSTILE_FILTER ?? '';
const results: { name: string; status: number | null; ms: number; maxRssMb: number | null; line: string; ok: boolean }[] = [];

const names = new Set<string>();
for (const c of CASES) {
  assert.ok(!names.has(c.name), `duplicate hostile case name: ${c.name}`);
  names.add(c.name);
}

// Two at a time: most of a case is node starting up; the limits are per process.
describe('hostile inputs', { concurrency: 2 }, () => {
for (const c of CASES.filter((x) => x.name.includes(filter) || x.area.includes(filter))) {
  test(c.name, { timeout: (c.limits?.timeoutMs ?? DEFAULT_LIMITS.timeoutMs) + 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qkscope-hostile-'));
    let r: CliRun | undefined;
    try {
      const args = await c.setup(dir);
      r = await runCli(args, c.limits);
      const where = `${c.name}: exit ${r.status}${r.signal ? ` (${r.signal})` : ''} after ${r.ms.toFixed(0)} ms; stderr:\n${r.lines.join('\n')}`;
      assert.ok(!r.timedOut, `timed out: ${where}`);
      const all = r.lines.join('\n') + '\n' + r.stdout;
      assert.doesNotMatch(all, /internal error/, where);
      assert.doesNotMatch(all, /\bat .*\.js:\d+/, `a stack trace: ${where}`);
      let line = r.lines[0] ?? '';
      if (c.check) c.check(r, dir);
      else {
        assert.equal(r.status, c.exitCode ?? 2, where);
        assert.equal(r.lines.length, 1, `exactly one stderr line expected: ${where}`);
        line = r.lines[0];
        assert.match(line, /^qkscope: /, where);
        assert.match(line.slice('qkscope: '.length), c.expect, where);
      }
      assert.ok(r.maxRssKb !== null, `no RSS report (the CLI did not exit normally): ${where}`);
      assert.ok(r.maxRssKb / 1024 <= (c.maxRssMb ?? 600), `peak RSS ${(r.maxRssKb / 1024).toFixed(0)} MB over ${c.maxRssMb ?? 600} MB: ${where}`);
      results.push({ name: c.name, status: r.status, ms: r.ms, maxRssMb: r.maxRssKb / 1024, line, ok: true });
    } catch (e) {
      results.push({ name: c.name, status: r?.status ?? null, ms: r?.ms ?? 0, maxRssMb: r?.maxRssKb != null ? r.maxRssKb / 1024 : null, line: r?.lines.join(' | ') ?? String(e), ok: false });
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
});

after(() => {
  const rows = results.map((x) => `${x.ok ? 'ok  ' : 'FAIL'} ${x.name.padEnd(62)} exit ${String(x.status).padEnd(4)} ${x.ms.toFixed(0).padStart(6)} ms ${x.maxRssMb === null ? '     ?' : x.maxRssMb.toFixed(0).padStart(6)} MB`);
  process.stdout.write(`# hostile suite (${CLI_UNDER_TEST}; heap ${DEFAULT_LIMITS.heapMb} MB, ${HAVE_PRLIMIT ? `address space ${DEFAULT_LIMITS.addressSpaceMb} MB` : 'no prlimit'}):\n${rows.map((r) => `# ${r}`).join('\n')}\n`);
  if (process.env.QKSCOPE_HOSTILE_REPORT) writeFileSync(process.env.QKSCOPE_HOSTILE_REPORT, JSON.stringify(results, null, 1));
});
