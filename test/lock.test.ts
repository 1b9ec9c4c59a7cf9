// Block-device locking (systemd's "Locking Block Device Access"): libc's flock through koffi, the
// waiting with backoff that never blocks the event loop, and the point of it all: a scan
// interleaved with a real `xen-pmem setup` on the same device. setup is held between its
// partition table and its super blocks (a stand-in sfdisk that waits after the real one), and
//   - the daemon's locked read waits for setup's lock, so its one decision is the whole layout;
//   - an unlocked read, as the daemon did before, decides on the half-written device,
// so the first test fails without the lock.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';

import { MiB } from '../src/core/units.js';
import { Controller } from '../src/daemon/controller.js';
import { openDevice } from '../src/io/device.js';
import { DeviceLockedError, lockDevice, openLockedReader, parentDiskOf, READER_PATIENCE, wholeDiskOf } from '../src/io/lock.js';
import type { DeviceReader, FlockPort, LockMode } from '../src/io/ports.js';
import { scanDevice } from '../src/io/scan.js';
import { loadLibc } from '../src/native/libc.js';
import { CLI_PATH } from '../fixtures/cli.js';
import { makeSparseImage } from '../fixtures/images.js';
import { makeDaemonHost, recordingLogger, show, testConfig, waitFor, type DaemonHost, forgetXenInProcess } from '../fixtures/daemon-host.js';

const EWOULDBLOCK = 11;
const scratch = mkdtempSync(join(tmpdir(), 'xen-pmem-lock-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** libc's flock, counting the answers that said another holds the lock. */
function countingFlock(): FlockPort & { busy: number; granted: number } {
  const libc = loadLibc();
  const port = {
    busy: 0,
    granted: 0,
    tryLock(fd: number, mode: LockMode): number {
      const errno = libc.tryLock(fd, mode);
      if (errno === 0) port.granted++;
      else if (errno === EWOULDBLOCK) port.busy++;
      return errno;
    },
  };
  return port;
}

describe('libc flock through koffi', () => {
  test('BSD semantics: shared with shared, exclusive alone, per open file, released by close, across processes', () => {
    const libc = loadLibc();
    const path = makeSparseImage(join(scratch, 'flock.img'), 1n * MiB);
    const [a, b, c] = [openSync(path, 'r'), openSync(path, 'r'), openSync(path, 'r')];
    try {
      assert.equal(libc.tryLock(a, 'shared'), 0);
      assert.equal(libc.tryLock(b, 'shared'), 0, 'two readers at once');
      assert.equal(libc.tryLock(c, 'exclusive'), EWOULDBLOCK, 'no writer while they read');
      closeSync(a);
      closeSync(b);
      assert.equal(libc.tryLock(c, 'exclusive'), 0, 'closing released both');
      const d = openSync(path, 'r');
      assert.equal(libc.tryLock(d, 'shared'), EWOULDBLOCK, 'one open file\'s exclusive lock shuts out another, even in one process');
      closeSync(d);
    } finally {
      closeSync(c);
    }
    // flock(1) of util-linux holds it in another process.
    const holder = spawn('flock', ['--exclusive', path, 'sleep', '3'], { stdio: 'ignore' });
    try {
      // Each look opens afresh: a lock granted to a look is let go at once by its close.
      waitForSync(() => {
        const fd = openSync(path, 'r');
        try {
          return libc.tryLock(fd, 'shared') === EWOULDBLOCK;
        } finally {
          closeSync(fd);
        }
      }, 2000, 'flock(1) to take the lock');
    } finally {
      holder.kill();
    }
  });

  test('an image file is its own whole disk; a partition\'s disk is found in sysfs', () => {
    const path = join(scratch, 'flock.img');
    assert.equal(wholeDiskOf(path), path);
    const sys = join(scratch, 'sys');
    mkdirSync(join(sys, 'devices/virtual/block/pmem0/pmem0p1'), { recursive: true });
    mkdirSync(join(sys, 'dev/block'), { recursive: true });
    writeFileSync(join(sys, 'devices/virtual/block/pmem0/dev'), '259:0\n');
    writeFileSync(join(sys, 'devices/virtual/block/pmem0/pmem0p1/dev'), '259:1\n');
    writeFileSync(join(sys, 'devices/virtual/block/pmem0/pmem0p1/partition'), '1\n');
    symlinkSync('../../devices/virtual/block/pmem0', join(sys, 'dev/block/259:0'));
    symlinkSync('../../devices/virtual/block/pmem0/pmem0p1', join(sys, 'dev/block/259:1'));
    assert.equal(parentDiskOf(sys, '259:1'), '259:0');
    assert.equal(parentDiskOf(sys, '259:0'), null);
  });
});

describe('waiting for a lock', () => {
  function busyThen(busyAnswers: number): FlockPort & { calls: number } {
    const port = { calls: 0, tryLock: (): number => (++port.calls <= busyAnswers ? EWOULDBLOCK : 0) };
    return port;
  }

  test('tries again with pauses that double up to the largest, then holds the lock', async () => {
    const pauses: number[] = [];
    const port = busyThen(6);
    const lock = await lockDevice(join(scratch, 'flock.img'), 'shared', port, { firstDelayMs: 10, maxDelayMs: 50, timeoutMs: 60_000 }, async (ms) => { pauses.push(ms); });
    assert.deepEqual(pauses, [10, 20, 40, 50, 50, 50]);
    assert.equal(lock.attempts, 7);
    await lock.release();
    await lock.release();
  });

  test('gives up after its patience with DeviceLockedError (reason device-locked), closing what it opened', async () => {
    await assert.rejects(
      lockDevice(join(scratch, 'flock.img'), 'exclusive', busyThen(Infinity), { firstDelayMs: 5, maxDelayMs: 20, timeoutMs: 120 }),
      (error: unknown) => error instanceof DeviceLockedError && error.code === 'device-locked' && /is locked by another program .* for more than 0\.12 s/.test(error.message),
    );
  });

  test('never blocks the event loop: timers keep firing while a held device is waited for', async () => {
    const path = makeSparseImage(join(scratch, 'held.img'), 1n * MiB);
    const holder = await lockDevice(path, 'exclusive', loadLibc(), READER_PATIENCE);
    // By order, not by the clock: ten ticks of a timer come while the reader still waits for the
    // lock; a wait that blocked the loop would let none come before the lock was free.
    let ticks = 0;
    const ticker = setInterval(() => { ticks++; }, 10);
    let settled = false;
    const waiting = openLockedReader(path, loadLibc(), { firstDelayMs: 10, maxDelayMs: 40, timeoutMs: 60_000 }).finally(() => { settled = true; });
    await waitFor('ten timer ticks while the reader waits', () => ticks >= 10);
    assert.equal(settled, false, 'the reader was still waiting for the held lock');
    await holder.release();
    const reader = await waiting;
    clearInterval(ticker);
    await reader.close();
  });
});

describe('a scan interleaved with xen-pmem setup on the same device', () => {
  const STANDIN = join(scratch, 'bin');
  const realSfdisk = spawnSync('sh', ['-c', 'command -v sfdisk'], { encoding: 'utf8' }).stdout.trim();
  const skip = realSfdisk === '' ? 'sfdisk is not installed' : false;
  const hosts: DaemonHost[] = [];
  afterEach(async () => {
    for (const host of hosts.splice(0)) await host.cleanup();
    forgetXenInProcess();
  });

  /** sfdisk as the CLI finds it on PATH: the real one, then a wait until the test says go. */
  function standInSfdisk(): void {
    mkdirSync(STANDIN, { recursive: true });
    writeFileSync(join(STANDIN, 'sfdisk'), [
      '#!/bin/sh',
      `${realSfdisk} "$@" || exit $?`,
      ': > "$XEN_PMEM_TEST_HALFWAY"',
      'while [ ! -e "$XEN_PMEM_TEST_GO" ]; do sleep 0.02; done',
      '',
    ].join('\n'));
    chmodSync(join(STANDIN, 'sfdisk'), 0o755);
  }

  interface Interleaving {
    /** The device as an unlocked scan sees it while setup is between its steps. */
    halfway: string;
    /** What the controller had decided for the device by the moment setup was let go. */
    decidedWhileHeld: string | null;
    /** Its decisions, in order, once everything settled. */
    lines: string[];
    final: [string, string, string | undefined];
    setupUuid: string;
    setupMs: number;
  }

  /** Runs setup on a blank pmem0, holds it halfway, lets the controller scan, then lets setup finish. */
  async function interleave(label: string, openReader: (devPath: string) => Promise<DeviceReader>): Promise<Interleaving> {
    standInSfdisk();
    const host = await makeDaemonHost(`lock-${label}`, { regions: [{ id: 0, start: 0x1_0000_0000n, size: 256n * MiB, namespaces: [{ id: 0, mode: 'raw' }] }] });
    hosts.push(host);
    host.useXenInProcess();
    const devPath = await host.blank('pmem0');
    const halfwayMark = join(host.dir, 'halfway');
    const go = join(host.dir, 'go');
    const log = recordingLogger();
    const controller = new Controller(testConfig(), host.ports({ log, openReader }), null);

    const started = Date.now();
    const setup = spawn(process.execPath, [CLI_PATH, 'setup', devPath], {
      env: { ...process.env, PATH: `${STANDIN}:${process.env.PATH ?? '/usr/bin:/bin'}`, XEN_PMEM_TEST_HALFWAY: halfwayMark, XEN_PMEM_TEST_GO: go },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    setup.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    setup.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => setup.on('exit', (code) => resolve(code)));
    try {
      await waitFor('setup to have written its partition table', () => existsSync(halfwayMark), 20_000);
      // The partition table is on the device, the super blocks are not.
      const peek = await openDevice(devPath, 'read');
      const halfway = await scanDevice(peek).finally(() => peek.close());

      const pass = controller.handleEvent({ action: 'change', subsystem: 'block', sysname: 'pmem0', syspath: '/sys/devices/virtual/block/pmem0', devtype: 'disk' });
      await new Promise((resolve) => setTimeout(resolve, 400));
      const record = controller.status.snapshot().devices.find((each) => each.device === 'pmem0');
      const decidedWhileHeld = record ? `${record.state}/${record.reason}` : null;

      writeFileSync(go, '');
      assert.equal(await exited, 0, `setup failed: ${stderr}`);
      const setupMs = Date.now() - started;
      // A real udev would send the change event of setup's close; this decides the device again only if the scan above did not wait.
      await pass;
      const final = controller.status.snapshot().devices.find((each) => each.device === 'pmem0');
      const lines = log.entries.filter((entry) => entry.fields.device === 'pmem0' && entry.level !== 'debug').map((entry) => `${entry.fields.state}/${entry.fields.reason}`);
      const setupUuid = /super block ([0-9a-f-]{36})/.exec(stdout)?.[1] ?? '';
      return {
        halfway: halfway.status === 'invalid' ? `invalid/${halfway.reason}` : halfway.status,
        decidedWhileHeld,
        lines,
        final: [final?.state ?? 'none', final?.reason ?? 'none', final?.layout?.uuid],
        setupUuid,
        setupMs,
      };
    } finally {
      if (!existsSync(go)) writeFileSync(go, '');
      await exited;
      await controller.stop();
    }
  }

  test('with the lock: the daemon\'s read waits while setup writes, and its only decision is the whole layout', { skip }, async (t) => {
    const flock = countingFlock();
    const got = await interleave('locked', (devPath) => openLockedReader(devPath, flock));
    t.diagnostic(`halfway an unlocked scan sees "${got.halfway}"; the locked read got ${flock.busy} "locked" answers before its lock, and nothing was decided while setup held the disk (${got.decidedWhileHeld ?? 'no record'}); then ${got.lines.join(', ')} with reservation ${got.final[2]} (setup wrote ${got.setupUuid}); setup took ${got.setupMs} ms`);
    assert.equal(got.halfway, 'absent', 'halfway, the device has a partition table and no super block');
    assert.equal(got.decidedWhileHeld, null, 'no decision while setup held the lock');
    assert.ok(flock.busy > 0, 'the read found the disk locked and waited');
    assert.deepEqual(got.lines, ['reported/reported'], `one decision, on the complete layout: ${show(got.lines)}`);
    assert.deepEqual(got.final, ['reported', 'reported', got.setupUuid]);
  });

  test('without the lock (the old reader): the same interleaving decides on the half-written device', { skip }, async (t) => {
    const got = await interleave('unlocked', (devPath) => openDevice(devPath, 'read'));
    t.diagnostic(`an unlocked read decided "${got.decidedWhileHeld}" while setup was halfway; lines ${got.lines.join(', ')}`);
    assert.equal(got.decidedWhileHeld, 'absent/no-superblock', 'the daemon judged the device between the partition table and the super blocks');
    assert.deepEqual(got.lines, ['absent/no-superblock'], 'and nothing told it otherwise: without udev\'s event it stays wrong');
  });

  test('a disk locked past the read\'s patience is retrying with reason device-locked, and decided once the lock goes', { skip }, async () => {
    const host = await makeDaemonHost('lock-patience', { regions: [{ id: 0, start: 0x1_0000_0000n, size: 256n * MiB, namespaces: [{ id: 0, mode: 'raw' }] }] });
    hosts.push(host);
    host.useXenInProcess();
    await host.prepare('pmem0');
    const holder = await lockDevice(host.devPath('pmem0'), 'exclusive', loadLibc(), READER_PATIENCE);
    const log = recordingLogger();
    const patience = { firstDelayMs: 10, maxDelayMs: 40, timeoutMs: 200 };
    const controller = new Controller(testConfig({ retry: { initialMs: 100, maxMs: 100 } }), host.ports({ log, openReader: (devPath) => openLockedReader(devPath, loadLibc(), patience) }), null);
    try {
      controller.handleEvent({ action: 'change', subsystem: 'block', sysname: 'pmem0', syspath: '/sys/devices/virtual/block/pmem0', devtype: 'disk' });
      await waitFor('a decision', () => controller.status.snapshot().devices.some((each) => each.device === 'pmem0'), 5000);
      const record = controller.status.snapshot().devices.find((each) => each.device === 'pmem0')!;
      assert.deepEqual([record.state, record.reason], ['retrying', 'device-locked']);
      assert.match(record.message, /is locked by another program/);
      await holder.release();
      await waitFor('the retry after the lock went', () => controller.status.snapshot().devices.find((each) => each.device === 'pmem0')?.state === 'reported', 5000);
    } finally {
      await holder.release();
      await controller.stop();
    }
  });

  test('setup does not deadlock on sfdisk\'s own lock, even with LOCK_BLOCK_DEVICE=1 in the environment', { skip }, async () => {
    const path = makeSparseImage(join(scratch, 'env-lock.img'), 64n * MiB);
    const run = spawnSync(process.execPath, [CLI_PATH, 'setup', path], { env: { ...process.env, LOCK_BLOCK_DEVICE: '1' }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, `${run.error?.message ?? ''}${run.stderr}`);
  });

  test('setup waits for a reader\'s shared lock to go and then writes; wipe zeroes both copies under its lock', { skip }, async () => {
    const path = makeSparseImage(join(scratch, 'wait.img'), 64n * MiB);
    const reader = spawn('flock', ['--shared', path, 'sleep', '1'], { stdio: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    const setup = spawnSync(process.execPath, [CLI_PATH, 'setup', path], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(setup.status, 0, setup.stderr);
    assert.ok(Date.now() - started >= 700, 'setup waited for the shared lock to go');
    reader.kill();
    const wipe = spawnSync(process.execPath, [CLI_PATH, 'wipe', path, '--yes'], { encoding: 'utf8' });
    assert.equal(wipe.status, 0, wipe.stderr);
    assert.match(wipe.stdout, /wiped the xen-pmem super block at 0x100000 and 0x3f00000/);
  });
});

function waitForSync(condition: () => boolean, timeoutMs: number, what: string): void {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    spawnSync('sleep', ['0.05']);
  }
}
