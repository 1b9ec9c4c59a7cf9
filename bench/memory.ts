// Item 4, memory: the real xen-pmemd process (runDaemon, bundled like the installed runtime, with
// its launcher's node flags) on the 1024-device host, its udev source replaced by the replay of
// bench/replay-daemon.ts. VmRSS from /proc after READY=1 (coldplug of every device) and after each
// block of events, twice: once the daemon is quiet (300 ms without a log line), and after it has
// been idle for IDLE_MS, as a daemon resident for months mostly is: V8 then shrinks its heap on
// its own (its memory reducer runs a few seconds into idleness). No collection is forced, and
// nothing runs in the process but the daemon and the replay.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { replayDaemon } from './daemon-bundle.js';
import { showFirst, type BenchHost } from './hosts.js';
import { listenForNotifications } from './notify-listener.js';
import { replugAll } from './presence.js';
import type { ReplaySpec } from './replay-daemon.js';

export interface MemoryCheckpoint {
  events: number;
  /** Once quiet. */
  rssBytes: number;
  /** After IDLE_MS without a log line. */
  idleRssBytes: number;
  /** process.memoryUsage() in the daemon as the block ended (no collection forced); null after coldplug. */
  heapUsedBytes: number | null;
  heapTotalBytes: number | null;
  externalBytes: number | null;
}

export interface DaemonMemoryResult {
  /** Events sent: fewer than asked when the time budget ran out first (at a checkpoint). */
  events: number;
  afterColdplug: MemoryCheckpoint;
  checkpoints: MemoryCheckpoint[];
  wallMs: number;
}

/** How long the daemon must have been quiet (no log line, no event handed over) before a figure is read. */
const QUIET_MS = 300;
/** Idle time before the second figure: V8's memory reducer starts about 8 s into idleness. */
export const IDLE_MS = 10_000;
const READY_TIMEOUT_MS = 120_000;

function residentBytes(pid: number): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

let runs = 0;

export async function daemonMemoryRun(bench: BenchHost, total: number, every: number, budgetMs: number, seed = 7): Promise<DaemonMemoryResult> {
  const { host } = bench;
  await showFirst(bench, bench.devices.length);
  await Promise.all([host.stateDir, host.xenStatePath, host.xenLogPath].map((path) => rm(path, { recursive: true, force: true })));
  const daemon = await replayDaemon();
  const notify = await listenForNotifications(join(host.dir, `notify-memory-${process.pid}-${runs++}.sock`));
  const spec: ReplaySpec = { devices: bench.devices, prepared: bench.prepared, sysRoot: host.roots.sysRoot, seed };
  const args = [...daemon.nodeFlags, daemon.script, '--replay', JSON.stringify(spec), '--sys-root', host.roots.sysRoot,
    '--dev-root', host.roots.devRoot, '--state-dir', host.stateDir, '--config', join(host.dir, 'no-config.json')];
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv(), NOTIFY_SOCKET: notify.path },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let lastLineAt = performance.now();
  let stderr = '';
  type Block = Omit<MemoryCheckpoint, 'rssBytes' | 'idleRssBytes'>;
  const sentLines: ((sent: Block) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', () => { lastLineAt = performance.now(); });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    const match = /^replay: sent (\d+) heap (\d+) (\d+) external (\d+) \d+$/.exec(line);
    // The last event of a block has only just been handed over: quiet is counted from here too,
    // since at the default level most decisions log nothing.
    if (match) lastLineAt = performance.now();
    if (match) sentLines.shift()?.({ events: Number(match[1]), heapUsedBytes: Number(match[2]), heapTotalBytes: Number(match[3]), externalBytes: Number(match[4]) });
    else stderr += line + '\n';
  });
  const exited = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const quiet = async (ms: number): Promise<void> => {
    while (performance.now() - lastLineAt < ms) await sleep(Math.min(100, ms / 3));
  };
  /** Both figures, with what the replay said of the block. */
  const measure = async (block: Block): Promise<MemoryCheckpoint> => {
    await quiet(QUIET_MS);
    const rssBytes = residentBytes(child.pid!);
    await quiet(IDLE_MS);
    return { ...block, rssBytes, idleRssBytes: residentBytes(child.pid!) };
  };
  try {
    await Promise.race([
      notify.waitFor('READY=1', READY_TIMEOUT_MS),
      exited.then((code) => { throw new Error(`the replaying xen-pmemd exited with ${code} before READY=1: ${stderr.trim()}`); }),
    ]);
    const afterColdplug = await measure({ events: 0, heapUsedBytes: null, heapTotalBytes: null, externalBytes: null });
    const checkpoints: MemoryCheckpoint[] = [];
    let sent = 0;
    while (sent < total && performance.now() - started < budgetMs) {
      const reply = new Promise<Block>((resolve) => sentLines.push(resolve));
      child.stdin!.write(`go ${Math.min(every, total - sent)}\n`);
      const block = await Promise.race([reply, exited.then((code): never => { throw new Error(`the replaying xen-pmemd exited with ${code}: ${stderr.trim()}`); })]);
      sent = block.events;
      checkpoints.push(await measure(block));
    }
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) throw new Error(`the replaying xen-pmemd exited with ${code} after SIGTERM: ${stderr.trim()}`);
    return { events: sent, afterColdplug, checkpoints, wallMs: performance.now() - started };
  } finally {
    child.kill('SIGKILL');
    notify.close();
    replugAll(host.roots.sysRoot, bench.devices);
  }
}
