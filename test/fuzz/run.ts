// `npm run fuzz [-- COUNT] [--seed N] [--jobs N]`: the long fuzz run, 1,000,000 cases unless told
// otherwise, split over worker threads (one per core by default), each with its own seed.
// Prints progress, throughput and totals; exits 1 if any case failed (after fast-check shrank it),
// printing the seed that replays it with --jobs 1.

import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

import { emptyStats, runFuzz, type FuzzResult, type FuzzStats } from './engine.js';
import { makeBaseImages } from './image.js';

const DEFAULT_CASES = 1_000_000;

interface Job { cases: number; seed: number; index: number }
type WorkerMessage = { kind: 'progress'; index: number; stats: FuzzStats } | { kind: 'done'; index: number; result: FuzzResult };

function rate(cases: number, elapsedMs: number): string {
  const perSecond = cases / Math.max(elapsedMs / 1000, 1e-9);
  return `${cases.toLocaleString('en')} cases in ${(elapsedMs / 1000).toFixed(1)} s (${Math.round(perSecond).toLocaleString('en')}/s)`;
}

function table(map: Map<string, number>): string {
  return [...map.entries()].sort((a, b) => b[1] - a[1]).map(([key, count]) => `    ${key.padEnd(40)} ${count.toLocaleString('en').padStart(12)}`).join('\n');
}

function merge(into: FuzzStats, from: FuzzStats): void {
  for (const key of ['cases', 'valid', 'absent', 'invalid', 'throws', 'acceptedInvalid', 'refusedValid', 'statusMismatch', 'xenRefused'] as const) into[key] += from[key];
  for (const [name, map] of [['reasons', from.reasons], ['mutations', from.mutations]] as const) {
    for (const [key, count] of map) into[name].set(key, (into[name].get(key) ?? 0) + count);
  }
}

async function work(job: Job): Promise<void> {
  const bases = await makeBaseImages();
  const result = await runFuzz({
    cases: job.cases, seed: job.seed, bases,
    progressEvery: Math.max(10_000, Math.min(50_000, Math.floor(job.cases / 10))),
    onProgress: (stats) => parentPort!.postMessage({ kind: 'progress', index: job.index, stats } satisfies WorkerMessage),
  });
  parentPort!.postMessage({ kind: 'done', index: job.index, result } satisfies WorkerMessage);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { seed: { type: 'string' }, jobs: { type: 'string' } } });
  const cases = positionals[0] === undefined ? DEFAULT_CASES : Number(positionals[0].replaceAll('_', ''));
  const jobs = values.jobs === undefined ? availableParallelism() : Number(values.jobs);
  const seed = values.seed === undefined ? (Date.now() ^ (process.pid << 8)) >>> 0 : Number(values.seed);
  if (!Number.isSafeInteger(cases) || cases <= 0) {
    process.stderr.write(`fuzz: the case count must be a positive integer, not "${positionals[0]}"\n`);
    return 2;
  }
  if (!Number.isSafeInteger(jobs) || jobs <= 0 || jobs > 64) {
    process.stderr.write(`fuzz: --jobs must be 1..64, not "${values.jobs}"\n`);
    return 2;
  }
  if (!Number.isSafeInteger(seed)) {
    process.stderr.write(`fuzz: --seed must be an integer, not "${values.seed}"\n`);
    return 2;
  }
  process.stdout.write(`fuzz: ${cases.toLocaleString('en')} cases over ${jobs} worker thread(s), seeds ${seed}..${seed + jobs - 1}; each sets up its base layouts with sfdisk first\n`);
  const started = performance.now();
  const progress = new Map<number, number>();
  const results: FuzzResult[] = [];
  await Promise.all(Array.from({ length: jobs }, (_, index) => new Promise<void>((resolve, reject) => {
    const share = Math.floor(cases / jobs) + (index < cases % jobs ? 1 : 0);
    const worker = new Worker(new URL(import.meta.url), { workerData: { cases: share, seed: seed + index, index } satisfies Job });
    worker.on('message', (message: WorkerMessage) => {
      if (message.kind === 'progress') {
        progress.set(index, message.stats.cases);
        const done = [...progress.values()].reduce((a, b) => a + b, 0);
        process.stdout.write(`fuzz: ${rate(done, performance.now() - started)}\n`);
      } else {
        results[index] = message.result;
      }
    });
    worker.on('error', reject);
    worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${index} exited with ${code}`))));
  })));
  const elapsed = performance.now() - started;
  const total = emptyStats();
  for (const result of results) merge(total, result.stats);
  process.stdout.write([
    `fuzz: ${rate(total.cases, elapsed)} with ${jobs} worker thread(s)`,
    `fuzz: verdicts: ${total.valid.toLocaleString('en')} valid, ${total.invalid.toLocaleString('en')} invalid, ${total.absent.toLocaleString('en')} absent`,
    `fuzz: throws ${total.throws}, accepted invalid ${total.acceptedInvalid}, refused valid ${total.refusedValid}, absent/invalid mixed up ${total.statusMismatch}, valid but refused by Xen's rules ${total.xenRefused}`,
    `fuzz: ${total.reasons.size} reason codes reached:`,
    table(total.reasons),
    'fuzz: mutations applied:',
    table(total.mutations),
    '',
  ].join('\n'));
  const failed = results.filter((result) => result.failure !== null);
  for (const result of failed) process.stdout.write(`fuzz: FAILED with seed ${result.seed} (replay: --jobs 1 --seed ${result.seed} ${result.stats.cases})\n${result.failure}\n`);
  if (failed.length > 0) return 1;
  process.stdout.write('fuzz: every case held\n');
  return 0;
}

if (isMainThread) {
  main().then((code) => { process.exitCode = code; }, (error) => {
    process.stderr.write(`fuzz: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 2;
  });
} else {
  await work(workerData as Job);
}
