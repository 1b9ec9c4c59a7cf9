// npm run mutants: does each lab test of the hypervisor side fail when the protection it names is
// taken out of the series? Each mutant (hypervisor/mutants/<base>/<name>.patch, a few lines on
// top of the whole series) removes one check or one step the series takes for Xen's safety; the
// lab test that guards it is run against a Xen built with that mutant. A mutant caught is a test
// that failed (its first failing assertion is quoted) or a run that never finished (Xen or the
// Dom0 hung, which is also a failure the test would have shown). A mutant that survives is a hole
// in the tests, and the command exits 1. The series itself is never changed: each mutant is built
// from a copy of it in a directory of its own, named to the lab by XEN_PMEM_XEN_SERIES.
//
// Usage: npm run -s mutants [-- --only NAME[,NAME…]] [--minutes N]
//        (about 2 minutes a mutant under TCG; builds are cached like the series' own)

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { copyFile, cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { LabError, runAsProgram } from './errors.js';
import { hypervisorSeriesDir, preparePatchedXen, XEN_SERIES_ENV, XEN_SOURCE_ENV, type XenBase } from './hypervisor.js';
import { repositoryDir } from './prepare.js';
import { stderrProgress } from './progress.js';

/** The lab tests a mutant can be held against: the compiled test file and the test's name on a base. */
const GUARDS = {
  'patched-xen': { file: 'dist/test/lab/patched-xen.test.js', pattern: (base: XenBase) => `patched Xen ${base}` },
  'xen-large': { file: 'dist/test/lab/xen-large.test.js', pattern: () => 'region added to the patched Xen' },
} as const;
type Guard = keyof typeof GUARDS;

interface Mutant {
  name: string;
  base: XenBase;
  /** Which goal of docs/hypervisor.md the removed protection serves. */
  protects: string;
  guard: Guard;
}

export const MUTANTS: readonly Mutant[] = [
  { name: 'mapped-region-taken', base: '4.17', protects: 'the Dom0 cannot write what Xen uses', guard: 'patched-xen' },
  { name: 'dom0-keeps-access', base: '4.17', protects: 'the Dom0 cannot write what Xen uses', guard: 'patched-xen' },
  { name: 'not-pmem-taken', base: '4.17', protects: 'only persistent memory', guard: 'patched-xen' },
  { name: 'm2p-not-shared', base: '4.17', protects: 'guests keep what they had (PV save and restore)', guard: 'patched-xen' },
  { name: 'add-not-preemptible', base: '4.17', protects: 'large regions (continuations)', guard: 'xen-large' },
  { name: 're-add-einval', base: '4.17', protects: 'distinct answers', guard: 'patched-xen' },
];

export interface MutantOutcome {
  name: string;
  caught: boolean;
  /** The tests that failed, by name. */
  failed: string[];
  /** The first failing test and its message, Xen's panic, or why the run ended. */
  how: string;
  buildSeconds: number;
  runSeconds: number;
  log: string;
}

export interface TestFailure {
  name: string;
  /** The error's message, its lines joined, without the stack. */
  message: string;
}

/** The failing tests a spec reporter lists at the end of its output, each with its message. */
export function failures(output: string): TestFailure[] {
  const lines = output.split('\n');
  const start = lines.findIndex((line) => line.startsWith('✖ failing tests:'));
  if (start === -1) return [];
  const found: TestFailure[] = [];
  let current: { name: string; message: string[]; inStack: boolean } | null = null;
  const close = (): void => {
    if (current) found.push({ name: current.name, message: current.message.join(' ') });
  };
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('✖ ')) {
      close();
      current = { name: line.slice(2).replace(/\s*\([\d.]+m?s\)$/, ''), message: [], inStack: false };
    } else if (current && !current.inStack) {
      if (/^\s+at /.test(line) || line.startsWith('test at ')) current.inStack = true;
      else if (line.trim()) current.message.push(line.trim());
    }
  }
  close();
  return found;
}

/** What Xen said when it panicked during the run, and where: `FATAL PAGE FAULT in put_page_from_l1e+0x81/0x130`. */
export function xenPanic(output: string): string | null {
  const text = output.replace(/\\n/g, '\n');
  const what = /\(XEN\) Panic on CPU \d+:\s*\n\s*\(XEN\) ([^\n]+)/.exec(text)?.[1]?.trim();
  if (what === undefined) return null;
  const where = /\(XEN\)\s+\[<[0-9a-f]+>\] R ([^\s]+)/.exec(text)?.[1];
  return where ? `${what} in ${where}` : what;
}

/** The spec reporter's count of one kind ("pass", "fail", "skipped") in its summary. */
function summaryCount(output: string, kind: string): number {
  const match = new RegExp(`^ℹ ${kind} (\\d+)$`, 'm').exec(output);
  return match ? Number(match[1]) : 0;
}

/** A copy of the base's series with the mutant appended as its last patch. */
async function mutantSeries(mutant: Mutant, into: string): Promise<string> {
  const source = hypervisorSeriesDir(mutant.base);
  const dir = join(into, mutant.name);
  await cp(join(source, 'patches'), join(dir, 'patches'), { recursive: true });
  const name = `patches/9999-mutant-${mutant.name}.patch`;
  await copyFile(join(repositoryDir(), 'hypervisor', 'mutants', mutant.base, `${mutant.name}.patch`), join(dir, name));
  await writeFile(join(dir, 'series'), `${await readFile(join(source, 'series'), 'utf8')}${name}\n`);
  return dir;
}

/** Runs one guard test with the lab pointed at a series; a run past `limitMs` is killed whole. */
function runGuard(guard: Guard, base: XenBase, seriesDir: string, logPath: string, limitMs: number): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  const { file, pattern } = GUARDS[guard];
  const env: NodeJS.ProcessEnv = { ...process.env, [XEN_SERIES_ENV]: `${base}:${seriesDir}` };
  // The other base would run the unchanged series beside the mutant.
  delete env[XEN_SOURCE_ENV];
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', `--test-name-pattern=${pattern(base)}`, file], {
      cwd: repositoryDir(), env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = createWriteStream(logPath);
    let output = '';
    const keep = (chunk: Buffer): void => {
      log.write(chunk);
      output += chunk.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The test runner, QEMU and everything else the run started: one process group.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, limitMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      log.end();
      resolveRun({ code, output, timedOut });
    });
  });
}

export async function runMutant(mutant: Mutant, workDir: string, limitMs: number): Promise<MutantOutcome> {
  const log = stderrProgress(`mutant ${mutant.name}`);
  const seriesDir = await mutantSeries(mutant, workDir);
  const built = Date.now();
  const xen = await preparePatchedXen({ base: mutant.base, seriesDir, log });
  const buildSeconds = xen.cached ? 0 : (Date.now() - built) / 1000;
  const logPath = join(workDir, `${mutant.name}.log`);
  log(`running ${GUARDS[mutant.guard].file} against it (log: ${logPath})`);
  const started = Date.now();
  const run = await runGuard(mutant.guard, mutant.base, seriesDir, logPath, limitMs);
  const runSeconds = (Date.now() - started) / 1000;
  const outcome = { name: mutant.name, buildSeconds, runSeconds, log: logPath };
  if (run.timedOut) {
    return { ...outcome, caught: true, failed: [], how: `the run did not finish in ${Math.round(limitMs / 60_000)} min and was killed (Xen or the Dom0 stopped answering)` };
  }
  if (run.code === 0) {
    const ran = summaryCount(run.output, 'pass');
    if (ran === 0) return { ...outcome, caught: false, failed: [], how: `the test did not run (${summaryCount(run.output, 'skipped')} skipped): see the log` };
    return { ...outcome, caught: false, failed: [], how: 'SURVIVED: the test passed' };
  }
  const failed = failures(run.output);
  const first = failed[0];
  const what = first ? `${first.name}: ${first.message.length > 400 ? `${first.message.slice(0, 400)}…` : first.message}` : `the test run exited ${run.code} with no failing test named: see the log`;
  const panic = xenPanic(run.output);
  return { ...outcome, caught: true, failed: failed.map((failure) => failure.name), how: panic ? `Xen panicked: ${panic}` : what };
}

await runAsProgram(import.meta.url, 'xen-pmem mutants', async () => {
  const { values } = parseArgs({ options: { only: { type: 'string' }, minutes: { type: 'string', default: '15' } } });
  const wanted = values.only?.split(',') ?? null;
  const unknown = wanted?.filter((name) => !MUTANTS.some((mutant) => mutant.name === name)) ?? [];
  if (unknown.length > 0) throw new LabError('bad-options', `no mutant named ${unknown.join(', ')}; the mutants are ${MUTANTS.map((m) => m.name).join(', ')}`);
  const limitMs = Number(values.minutes) * 60_000;
  if (!(limitMs > 0)) throw new LabError('bad-options', `--minutes ${values.minutes}: a positive number of minutes`);
  if (!existsSync(join(repositoryDir(), GUARDS['patched-xen'].file))) throw new LabError('bad-options', 'the compiled tests are missing: run it as npm run mutants');

  const workDir = await mkdtemp(join(tmpdir(), 'xen-pmem-mutants-'));
  const outcomes: MutantOutcome[] = [];
  for (const mutant of MUTANTS.filter((m) => wanted === null || wanted.includes(m.name))) {
    const outcome = await runMutant(mutant, workDir, limitMs);
    outcomes.push(outcome);
    const by = outcome.failed.length > 0 ? ` by ${outcome.failed.length} failing test${outcome.failed.length === 1 ? '' : 's'}` : '';
    process.stdout.write(`${mutant.name} (${mutant.protects}; ${mutant.guard}): ${outcome.caught ? `caught${by}` : 'NOT CAUGHT'}, build ${outcome.buildSeconds.toFixed(0)} s, run ${outcome.runSeconds.toFixed(0)} s\n  ${outcome.how}\n${outcome.failed.map((name) => `  ✖ ${name}\n`).join('')}`);
  }
  await writeFile(join(workDir, 'outcomes.json'), JSON.stringify(outcomes, null, 2) + '\n');
  const survivors = outcomes.filter((outcome) => !outcome.caught);
  process.stdout.write(`${outcomes.length - survivors.length} of ${outcomes.length} mutants caught; logs and outcomes.json in ${workDir}\n`);
  if (survivors.length > 0) process.exitCode = 1;
});
