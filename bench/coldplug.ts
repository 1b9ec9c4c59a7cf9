// Item 1, coldplug at scale: the installed xen-pmemd as a child process (dist/runtime's bundle
// with its launcher's node flags, real node-udev monitor, real scans of sparse 1 TiB images,
// libxencall replaced by the test hypervisor) from spawn to READY=1 on its notify socket, next to
// `blkid -p` probing the same image files in one process, and next to Node starting and exiting
// with nothing to do.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

import { fixtureDaemon } from './daemon-bundle.js';
import { showFirst, type BenchHost } from './hosts.js';
import { listenForNotifications } from './notify-listener.js';

const READY_TIMEOUT_MS = 120_000;
const SIGTERM_GRACE_MS = 20;

export interface DaemonColdplugRun {
  devices: number;
  /** Spawn to READY=1 arriving on the notify socket. */
  readyMs: number;
  /** Spawn to the first log line ("starting"): Node, the modules, config, state and libxencall. */
  firstLineMs: number;
  /** The daemon's resident set right after READY=1 (VmRSS, no forced collection). */
  rssBytes: number;
  /** What READY=1 carried, e.g. "pmem devices: 8 absent, 8 reported". */
  status: string;
  regionAdds: number;
}

export interface ProcessRun {
  /** Spawn to exit. */
  ms: number;
}

function elapsedMs(fromNs: bigint, toNs: bigint = process.hrtime.bigint()): number {
  return Number(toNs - fromNs) / 1e6;
}

/** Runs a command to its end and times it from spawn to exit; stdout is returned for checks. */
export function timeProcess(command: string, args: string[]): Promise<ProcessRun & { code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ ms: elapsedMs(started), code, stdout }));
  });
}

/** Node starting and exiting with nothing to do: the floor under any Node daemon's start. */
export async function nodeBareStart(): Promise<ProcessRun> {
  const run = await timeProcess(process.execPath, ['-e', '0']);
  if (run.code !== 0) throw new Error(`node -e 0 exited with ${run.code}`);
  return { ms: run.ms };
}

/**
 * How blkid is asked to probe N files in one process. `blkid -p` (low-level probing) stops at the
 * first file that carries no signature (exit 2 ends its loop), so over a host where half the
 * devices are blank it gives up at the second file. `blkid -c /dev/null` runs the same safe probe
 * of superblocks and partition tables for every file, bypassing the cache, and goes on past blank
 * ones; `-p` is still measured on the prepared half to show the two cost the same per file.
 */
export type BlkidMode = 'probe-all' | 'low-level';

export const BLKID_ARGUMENTS: Record<BlkidMode, string[]> = {
  'probe-all': ['-c', '/dev/null', '-o', 'export'],
  'low-level': ['-p', '-o', 'export'],
};

/** blkid over `paths` in one process; it must find exactly `expectedTables` GPTs. */
export async function blkidProbe(paths: readonly string[], expectedTables: number, mode: BlkidMode = 'probe-all'): Promise<ProcessRun> {
  const run = await timeProcess('blkid', [...BLKID_ARGUMENTS[mode], ...paths]);
  const tables = run.stdout.split('\n').filter((line) => line === 'PTTYPE=gpt').length;
  if (tables !== expectedTables) {
    throw new Error(`blkid ${BLKID_ARGUMENTS[mode].join(' ')} found ${tables} GPTs in ${paths.length} images, expected ${expectedTables} (exit ${run.code})`);
  }
  return { ms: run.ms };
}

async function freshState(bench: BenchHost): Promise<void> {
  const { host } = bench;
  await Promise.all([host.stateDir, host.xenStatePath, host.xenLogPath].map((path) => rm(path, { recursive: true, force: true })));
}

function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

let runs = 0;

/** One daemon start on the first `count` devices, from a clean state and an empty hypervisor. */
export async function daemonColdplug(bench: BenchHost, count: number): Promise<DaemonColdplugRun> {
  const { host } = bench;
  await showFirst(bench, count);
  await freshState(bench);
  const notify = await listenForNotifications(join(host.dir, `notify-${process.pid}-${runs++}.sock`));
  try {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv(), NOTIFY_SOCKET: notify.path };
    // The installed bundle's code and node flags, over the fixture tree, so the bench measures what runs in Dom0.
    const daemon = await fixtureDaemon();
    const args = [...daemon.nodeFlags, daemon.script, '--sys-root', host.roots.sysRoot, '--dev-root', host.roots.devRoot,
      '--state-dir', host.stateDir, '--config', join(host.dir, 'no-config.json')];
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstLineNs: bigint | null = null;
    let stderr = '';
    // xen-pmemd installs its SIGTERM handler only after logging "coldplug done"; a SIGTERM sent
    // within about a millisecond of that line still meets Node's default handler and kills it.
    let coldplugLogged: () => void = () => undefined;
    const coldplugDone = new Promise<void>((resolve) => { coldplugLogged = resolve; });
    createInterface({ input: child.stdout }).on('line', (line) => {
      firstLineNs ??= process.hrtime.bigint();
      if (line.includes('"msg":"coldplug done')) coldplugLogged();
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    const exited = new Promise<number | string | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
    let ready;
    try {
      ready = await Promise.race([
        notify.waitFor('READY=1', READY_TIMEOUT_MS),
        exited.then((code) => { throw new Error(`xen-pmemd exited with ${code} before READY=1: ${stderr.trim()}`); }),
      ]);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
    const rssBytes = residentBytes(child.pid!);
    await coldplugDone;
    await sleep(SIGTERM_GRACE_MS);
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) throw new Error(`xen-pmemd exited with ${code} after SIGTERM: ${stderr.trim()}`);
    if (firstLineNs === null) throw new Error('xen-pmemd logged nothing before READY=1');
    const status = /STATUS=(.*)/.exec(ready.message)?.[1] ?? '';
    const regionAdds = host.regionAdds().filter((call) => call.result === 'OK').length;
    const prepared = Math.ceil(count / 2);
    const expected = `pmem devices: ${count - prepared} absent, ${prepared} reported`;
    if (status !== expected || regionAdds !== prepared) {
      throw new Error(`xen-pmemd on ${count} devices said "${status}" with ${regionAdds} pmem_add; expected "${expected}" and ${prepared}`);
    }
    return {
      devices: count,
      readyMs: elapsedMs(started, ready.atNs),
      firstLineMs: elapsedMs(started, firstLineNs),
      rssBytes,
      status,
      regionAdds,
    };
  } finally {
    notify.close();
  }
}
