// The crash test as a benchmark figure (goal 4): test/storm.test.ts's kill -9 run, as
// `npm run crash-test` makes it (100 kills), in a child process; its verdict and its own summary
// line (kills, boots, how the valid devices ended, the confirming adds).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const STORM_TEST = fileURLToPath(new URL('../test/storm.test.js', import.meta.url));

export interface CrashTestFigure {
  kills: number;
  passed: boolean;
  /** The test's diagnostic: what happened over the kills. */
  summary: string;
  wallMs: number;
}

export function crashTest(kills: number): Promise<CrashTestFigure> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', '--test-name-pattern=kill -9', STORM_TEST], {
      env: { ...process.env, XEN_PMEM_CRASH_KILLS: String(kills) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.resume();
    child.on('error', reject);
    child.on('close', (code) => {
      const summary = /^\s*# (\d+ kills over .*)$/m.exec(stdout)?.[1] ?? (code === 0 ? 'passed' : stdout.split('\n').filter((line) => /not ok|error:/.test(line)).slice(0, 3).join(' ').trim());
      resolve({ kills, passed: code === 0, summary, wallMs: performance.now() - started });
    });
  });
}
