// Starts the event worker (bench/event-worker.ts) as a child process on a bench host and reads
// its one JSON answer.

import { DAEMON_NODE_FLAGS } from '../src/daemon/node-flags.js';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import type { LatencyResult, MemoryResult, SlowResult, WorkerHost } from './event-worker.js';
import { showFirst, type BenchHost } from './hosts.js';

const WORKER = fileURLToPath(new URL('./event-worker.js', import.meta.url));

function workerHost(bench: BenchHost): WorkerHost {
  const { host } = bench;
  return {
    dir: host.dir,
    sysRoot: host.roots.sysRoot,
    devRoot: host.roots.devRoot,
    library: host.library,
    devices: bench.devices,
    prepared: bench.prepared,
    deviceBySpfn: Object.fromEntries([...bench.deviceBySpfn].map(([spfn, device]) => ['0x' + spfn.toString(16), device])),
  };
}

async function run<T>(bench: BenchHost, args: string[]): Promise<T> {
  const { host } = bench;
  await showFirst(bench, bench.devices.length);
  await Promise.all([host.stateDir, host.xenStatePath, host.xenLogPath].map((path) => rm(path, { recursive: true, force: true })));
  return new Promise((resolve, reject) => {
    // XEN_PMEM_BENCH_PROFILE=DIR: a CPU and a heap profile of each worker into DIR, to see where the time goes.
    const profile = process.env.XEN_PMEM_BENCH_PROFILE;
    const profiling = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`, '--heap-prof', `--heap-prof-dir=${profile}`] : [];
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...profiling, '--expose-gc', WORKER, args[0]!, JSON.stringify(workerHost(bench)), ...args.slice(1)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`event worker ${args[0]} exited with ${code}: ${stderr.trim()}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as T);
      } catch (error) {
        reject(new Error(`event worker ${args[0]} printed no whole JSON document (${stdout.length} bytes): ${(error as Error).message}`));
      }
    });
  });
}

export function latencyRun(bench: BenchHost, events: number, seed: number): Promise<LatencyResult> {
  return run(bench, ['latency', String(events), String(seed)]);
}

/** Stops at the first checkpoint past `budgetMs`, so a slow machine still finishes the bench. */
export function memoryRun(bench: BenchHost, events: number, seed: number, every: number, budgetMs: number): Promise<MemoryResult> {
  return run(bench, ['memory', String(events), String(seed), String(every), String(budgetMs)]);
}

/** Rounds of one slow add (`delayMs`) with events for other devices arriving meanwhile. */
export function slowRun(bench: BenchHost, rounds: number, seed: number, delayMs: number): Promise<SlowResult> {
  return run(bench, ['slow', String(rounds), String(seed), String(delayMs)]);
}
