// Storms and crashes. An event storm: 10,000 random add, change and remove events (block, partition
// and nd namespace events) over 64 devices of every kind, against the controller over a fixture
// host, the real sysfs reader, real images and the test hypervisor through koffi. Crashes:
// xen-pmemd as a child process killed with SIGKILL at random moments and restarted, with a
// "reboot" (Xen and /run forget together) after every few kills. Afterwards every valid device
// was reported exactly once and nothing else ever was.
//
// The crash run does XEN_PMEM_CRASH_KILLS kills (default 10, a CI slice); `npm run crash-test`
// asks for 100.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, watch } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { FLAG_BACKUP_COPY, FLAG_NAMESPACE_BOUND, SUPERBLOCK_BYTES } from '../src/core/superblock.js';
import { MiB } from '../src/core/units.js';
import { Controller } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { LEDGER_FILE, replayLedger } from '../src/daemon/ledger.js';
import { loadStateSchemas, parseState, StateStore, type DaemonState } from '../src/daemon/state-store.js';
import { openDevice } from '../src/io/device.js';
import type { DeviceReader } from '../src/io/ports.js';
import { listPmemNamespaces } from '../src/sysfs/model.js';
import type { PmemNamespaceModel } from '../src/sysfs/types.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import { xorshift32 } from './fuzz/forge.js';
import { stackTraceLines } from '../fixtures/cli.js';
import {
  makeDaemonHost, recordingLogger, show, testConfig, waitFor, type DaemonHost, type XenCall, forgetXenInProcess,
} from '../fixtures/daemon-host.js';
import { copyOffsets, flipByte, readBytes, rewriteSuperblocks, writeBytes } from './helpers/damage.js';
import { hasCommand, resizeImage, sfdiskDump, writeTable } from '../fixtures/images.js';

// parseState reads with the schemas the daemon loads only when a state file exists.
before(() => loadStateSchemas());

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk): devices are set up with the real setup path';
/** xen-pmemd's entry point over a fixture tree (the roots are the launcher's flags, not the daemon's). */
const DAEMON = fileURLToPath(new URL('../fixtures/daemon-launcher.js', import.meta.url));
const GiB4 = 0x1_0000_0000n;
/**
 * The smallest region a layout fits in, rounded to whole superpages: 17 MiB plans (12 MiB reserved
 * from 2 MiB, data 14..16 MiB, backup copy at 16 MiB), rounded up to 18 MiB (data 14..16 MiB again,
 * backup at 17 MiB).
 */
const SIZE = 18n * MiB;
const STORM_EVENTS = Number(process.env.XEN_PMEM_STORM_EVENTS ?? 10_000);
const CRASH_KILLS = Number(process.env.XEN_PMEM_CRASH_KILLS ?? 10);
const KILLS_PER_BOOT = 5;
const SEED = Number(process.env.XEN_PMEM_STORM_SEED ?? 61);

type Kind =
  | { kind: 'valid' }
  | { kind: 'denied' }
  | { kind: 'invalid'; reason: string }
  | { kind: 'absent' }
  | { kind: 'devdax' }
  | { kind: 'sector' };

const namespaceUuidOf = (id: number): string => `${id.toString(16).padStart(8, '0')}-5eed-4000-8000-00000000cafe`;
const spfnOf = (id: number): bigint => (GiB4 + BigInt(id) * SIZE) >> 12n;

/** Even regions are labelled (their namespace has a UUID), odd ones label-less. */
function region(id: number, mode: 'raw' | 'devdax' | 'sector'): RegionSpec {
  const labelled = id % 2 === 0 && mode === 'raw';
  return {
    id, start: GiB4 + BigInt(id) * SIZE, size: SIZE,
    namespaces: [{ id: 0, mode, ...(labelled ? { uuid: namespaceUuidOf(id) } : {}) }],
  };
}

interface Fleet {
  host: DaemonHost;
  kinds: Kind[];
  /** The controller's key for each device: `pmemN`, or `namespaceN.0` where there is no block device to map. */
  keys: string[];
}

/**
 * `count` devices. One layout is set up with the real setup path (sfdisk, super block writer),
 * then copied to every device that needs one, with its own reservation UUID and namespace
 * binding re-encoded (a correct checksum, as setup would write it), then damaged per kind.
 */
async function makeFleet(label: string, kinds: Kind[]): Promise<Fleet> {
  const regions = kinds.map((k, id) => region(id, k.kind === 'devdax' ? 'devdax' : k.kind === 'sector' ? 'sector' : 'raw'));
  const host = await makeDaemonHost(label, { regions });
  const first = kinds.findIndex((k) => k.kind === 'valid');
  const prepared = await host.prepare(`pmem${first}`);
  // All setup wrote: MBR and GPT, the two copies, the backup GPT; the rest of the image is a hole.
  const both = copyOffsets(SIZE).both;
  const written = [[0n, 34 * 512], [both[0]!, SUPERBLOCK_BYTES], [both[1]!, SUPERBLOCK_BYTES], [SIZE - 33n * 512n, 33 * 512]] as const;
  const template = written.map(([offset, length]) => ({ offset, bytes: readBytes(prepared.devPath, offset, length) }));
  // The controller's key for each device, as the device model gives it.
  const models = await listPmemNamespaces(host.roots);
  const keys = kinds.map((_, id) => keyOf(models.find((model) => model.namespace === `namespace${id}.0`)!));
  for (const [id, k] of kinds.entries()) {
    if (k.kind === 'devdax' || k.kind === 'sector') continue;
    const name = `pmem${id}`;
    if (k.kind === 'absent') { await host.blank(name); continue; }
    const path = await host.blank(name);
    for (const { offset, bytes } of template) writeBytes(path, offset, bytes);
    const namespaceUuid = id % 2 === 0 ? namespaceUuidOf(id) : null;
    const uuid = randomUUID();
    rewriteSuperblocks(path, both, (sb) => ({
      uuid,
      namespaceUuid,
      flags: (sb.flags & FLAG_BACKUP_COPY) | (namespaceUuid ? FLAG_NAMESPACE_BOUND : 0),
    }));
    if (k.kind === 'invalid') damage(path, k.reason);
  }
  return { host, kinds, keys };
}

function damage(path: string, reason: string): void {
  const both = copyOffsets(SIZE).both;
  switch (reason) {
    case 'bad-checksum': for (const at of both) flipByte(path, at + 80n); return;
    case 'copies-disagree': rewriteSuperblocks(path, [both[1]!], (sb) => ({ createdAt: sb.createdAt + 1n })); return;
    case 'namespace-mismatch': rewriteSuperblocks(path, both, (sb) => ({ namespaceUuid: namespaceUuidOf(999), flags: sb.flags | FLAG_NAMESPACE_BOUND })); return;
    case 'reserved-too-small': rewriteSuperblocks(path, both, () => ({ reservedSize: 4096n })); return;
    case 'area-outside-device': rewriteSuperblocks(path, both, () => ({ dataOffset: 1n << 52n })); return;
    case 'device-size-mismatch': resizeImage(path, SIZE + 2n * MiB); return;
    case 'reserved-overlaps-partition':
      writeTable(path, sfdiskDump(path).replace(/^first-lba: \d+$/m, 'first-lba: 2048') + 'start=4096, size=2048\n');
      return;
    // One MBR partition over the data area, 14..16 MiB: sector 28,672, 4,096 sectors.
    case 'partition-table-not-gpt': writeTable(path, 'label: dos\nstart=28672, size=4096, type=83\n'); return;
    default: throw new Error(`no damage for ${reason}`);
  }
}

function keyOf(model: PmemNamespaceModel): string {
  return model.block?.name ?? model.namespace;
}

function callsFor(calls: XenCall[], id: number): XenCall[] {
  return calls.filter((call) => call.op === 'platform_op' && call.cmd === 67 && call.sub === 'add' && call.spfn === spfnOf(id));
}

// Fixture hosts of 64 devices are thousands of small files: on tmpfs they take a second to
// write, on an overlay file system ten times that. Only this test process sees the change.
if (existsSync('/dev/shm')) process.env.TMPDIR = '/dev/shm';

const hosts: DaemonHost[] = [];
const children = new Set<ChildProcess>();
after(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const host of hosts) await host.cleanup();
  forgetXenInProcess();
});

const STORM_KINDS: Kind[] = [
  ...Array.from({ length: 40 }, (): Kind => ({ kind: 'valid' })),
  ...Array.from({ length: 4 }, (): Kind => ({ kind: 'denied' })),
  ...['bad-checksum', 'copies-disagree', 'namespace-mismatch', 'reserved-too-small', 'area-outside-device', 'device-size-mismatch', 'reserved-overlaps-partition', 'partition-table-not-gpt']
    .map((reason): Kind => ({ kind: 'invalid', reason })),
  ...Array.from({ length: 8 }, (): Kind => ({ kind: 'absent' })),
  { kind: 'devdax' }, { kind: 'devdax' }, { kind: 'sector' }, { kind: 'sector' },
];

describe(`an event storm: ${STORM_EVENTS.toLocaleString('en')} random events over ${STORM_KINDS.length} devices`, { skip }, () => {
  test('every valid device reported exactly once, no other device ever, every device in its state at the end', async (t) => {
    const setupStarted = performance.now();
    const fleet = await makeFleet('storm', STORM_KINDS);
    t.diagnostic(`fixture host with ${STORM_KINDS.length} devices set up in ${Math.round(performance.now() - setupStarted)} ms`);
    const { host, kinds, keys } = fleet;
    hosts.push(host);
    host.useXenInProcess();
    const store = new StateStore(host.stateDir);
    const present = new Set(keys);
    const inFlight = new Map<string, number>();
    let overlapped = 0;
    let scans = 0;
    // The real sysfs reader answers; whether a device is there is the storm's to decide, as the
    // kernel would (a removed device's sysfs directory is gone before udev says so).
    const base = host.ports({ log: recordingLogger() });
    const denied = keys.filter((_, id) => kinds[id]!.kind === 'denied');
    const log = recordingLogger();
    const controller = new Controller(testConfig({ deny: { devices: denied } }), host.ports({
      log,
      saveState: (state) => store.save(state),
      readByBlockName: async (name) => (present.has(name) ? base.readByBlockName(name) : null),
      readBySyspath: async (syspath) => {
        const model = await base.readBySyspath(syspath);
        return model && present.has(keyOf(model)) ? model : null;
      },
      listNamespaces: async () => (await base.listNamespaces()).filter((model) => present.has(keyOf(model))),
      openReader: async (devPath): Promise<DeviceReader> => {
        const name = devPath.split('/').pop()!;
        if (!present.has(name)) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${devPath}'`), { code: 'ENOENT' });
        scans++;
        const now = (inFlight.get(name) ?? 0) + 1;
        inFlight.set(name, now);
        if (now > 1) overlapped++;
        const reader = await openDevice(devPath, 'read');
        return { ...reader, read: (offset, length) => reader.read(offset, length), bytesRead: 0, close: async () => { inFlight.set(name, inFlight.get(name)! - 1); await reader.close(); } };
      },
    }), null);
    try {
      const coldplugStarted = performance.now();
      await controller.start();
      t.diagnostic(`coldplug of ${keys.length} devices in ${Math.round(performance.now() - coldplugStarted)} ms`);

      const random = xorshift32(SEED);
      const pick = <T>(items: readonly T[]): T => items[random() % items.length]!;
      const started = performance.now();
      let delivered = 0;
      const handled: Promise<void>[] = [];
      while (delivered < STORM_EVENTS) {
        const burst = 1 + (random() % 40);
        for (let i = 0; i < burst && delivered < STORM_EVENTS; i++, delivered++) {
          const id = random() % keys.length;
          const key = keys[id]!;
          const action = pick(['add', 'change', 'change', 'change', 'remove', 'bind', 'unbind', 'partition'] as const);
          const namespaceDir = host.tree.namespaces.get(`namespace${id}.0`)!.namespaceDir;
          const gone = action === 'remove' || action === 'unbind';
          // The kernel changes sysfs first; udev tells afterwards.
          if (gone) present.delete(key);
          else if (action === 'add' || action === 'bind') present.add(key);
          const blockEvents = /^pmem\d+$/.test(key);
          let event: DeviceEvent;
          if (action === 'bind' || action === 'unbind' || !blockEvents) {
            event = { action: gone ? (action === 'remove' ? 'remove' : 'unbind') : action === 'partition' ? 'change' : action, subsystem: 'nd', sysname: `namespace${id}.0`, syspath: namespaceDir };
          } else if (action === 'partition') {
            event = { action: 'change', subsystem: 'block', sysname: `${key}p1`, syspath: `/sys/devices/x/block/${key}/${key}p1`, devtype: 'partition' };
          } else {
            event = { action, subsystem: 'block', sysname: key, syspath: `/sys/devices/x/block/${key}`, devtype: 'disk' };
          }
          handled.push(controller.handleEvent(event));
        }
        const pause = random() % 4;
        if (pause === 0) await new Promise((resolve) => setImmediate(resolve));
        else if (pause === 1) await new Promise((resolve) => setTimeout(resolve, random() % 3));
      }
      // The storm ends with every device back, as after a burst of hotplug the machine settles.
      for (const [id, key] of keys.entries()) {
        present.add(key);
        handled.push(controller.handleEvent(/^pmem\d+$/.test(key)
          ? { action: 'add', subsystem: 'block', sysname: key, syspath: `/sys/devices/x/block/${key}`, devtype: 'disk' }
          : { action: 'bind', subsystem: 'nd', sysname: `namespace${id}.0`, syspath: host.tree.namespaces.get(`namespace${id}.0`)!.namespaceDir }));
      }
      await Promise.all(handled);
      const elapsed = performance.now() - started;
      t.diagnostic(`${delivered} events in ${Math.round(elapsed)} ms; ${scans} scans`);

      assert.equal(overlapped, 0, 'no device was ever scanned twice at once');
      assert.ok(scans < delivered, `bursts collapse: ${scans} scans for ${delivered} events`);
      const calls = host.xenCalls();
      const records = new Map(controller.status.snapshot().devices.map((each) => [each.device, each]));
      for (const [id, k] of kinds.entries()) {
        const key = keys[id]!;
        const record = records.get(key);
        assert.ok(record, `a record for ${key}`);
        const adds = callsFor(calls, id).map((call) => call.result);
        if (k.kind === 'valid') {
          assert.deepEqual(adds, ['OK'], `${key}: exactly one add`);
          assert.equal(record.state, 'reported', `${key}: ${record.message}`);
          assert.ok(['reported', 'reported-earlier'].includes(record.reason), record.reason);
          continue;
        }
        assert.deepEqual(adds, [], `${key} (${k.kind}) never reached the hypervisor`);
        const expected = {
          denied: ['rejected', 'not-allowed'],
          invalid: ['rejected', k.kind === 'invalid' ? k.reason : ''],
          absent: ['absent', 'no-superblock'],
          devdax: ['rejected', 'devdax-mode'],
          sector: ['rejected', 'sector-mode'],
        }[k.kind];
        assert.deepEqual([record.state, record.reason], expected, `${key}: ${record.message}`);
      }
      assert.equal(host.xenRegions().length, kinds.filter((k) => k.kind === 'valid').length);
      assert.ok(log.entries.some((entry) => entry.fields.reason === 'removed-while-reported'), 'the storm removed reported devices along the way');
    } finally {
      await controller.stop();
    }
  });
});

// ---- crashes ----------------------------------------------------------------------------------

const CRASH_KINDS: Kind[] = [
  ...Array.from({ length: 9 }, (): Kind => ({ kind: 'valid' })),
  { kind: 'invalid', reason: 'copies-disagree' },
  { kind: 'invalid', reason: 'reserved-too-small' },
  { kind: 'absent' },
];

interface Daemon {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<void>;
}

function startDaemon(host: DaemonHost): Daemon {
  const child = spawn(process.execPath, [
    DAEMON, '--sys-root', host.roots.sysRoot, '--dev-root', host.roots.devRoot, '--state-dir', host.stateDir,
    '--config', join(host.dir, 'no-config.json'),
  ], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv({ mode: 'slow', delayMs: 30 }) }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = new Promise<void>((resolve) => child.on('exit', () => { children.delete(child); resolve(); }));
  return { child, stdout, stderr, exited };
}

/**
 * Resolves as soon as the test hypervisor logs a successful region add (true), or after
 * `timeoutMs` without one (false). inotify on the log's directory: no polling delay.
 */
async function untilXenTakesAnAdd(host: DaemonHost, timeoutMs: number): Promise<boolean> {
  const before = host.regionAdds().filter((call) => call.result === 'OK').length;
  return new Promise<boolean>((resolve) => {
    const watcher = watch(host.dir, () => {
      if (host.regionAdds().filter((call) => call.result === 'OK').length > before) finish(true);
    });
    const timer = setTimeout(() => finish(false), timeoutMs);
    function finish(took: boolean): void {
      clearTimeout(timer);
      watcher.close();
      resolve(took);
    }
  });
}

async function timeToReady(host: DaemonHost): Promise<number> {
  const started = performance.now();
  const daemon = startDaemon(host);
  await waitFor('a calibration start to finish coldplug', async () => (await readState(host))?.pid === daemon.child.pid && (await readState(host))!.ready, 30_000);
  const elapsed = performance.now() - started;
  daemon.child.kill('SIGTERM');
  await daemon.exited;
  return Math.round(elapsed * 1.2);
}

async function readState(host: DaemonHost): Promise<DaemonState | null> {
  try {
    const parsed = parseState(await readFile(join(host.stateDir, 'state.json'), 'utf8'));
    return parsed.kind === 'loaded' ? parsed.state : null;
  } catch {
    return null;
  }
}

describe(`crashes: ${CRASH_KILLS} kill -9s at random moments, restarts, a reboot every ${KILLS_PER_BOOT} kills`, { skip }, () => {
  test('after each boot: every valid device reported exactly once, nothing else ever, the ledger complete', async (t) => {
    const { host, kinds } = await makeFleet('crash', CRASH_KINDS);
    hosts.push(host);
    const random = xorshift32(SEED + 1);
    const valid = kinds.flatMap((k, id) => (k.kind === 'valid' ? [id] : []));
    // How long a start takes to the end of coldplug here, so that kills land all over it.
    let killWindowMs = await timeToReady(host);
    let kills = 0;
    let boots = 0;
    const finalReasons = new Map<string, number>();
    let confirmations = 0;
    /** Pending entries the kills left in the ledger: each may cost one confirming add at the next start. */
    let pendingLeft = 0;
    let strayTemporaries = 0;
    let aimedKills = 0;

    while (kills < CRASH_KILLS) {
      boots++;
      // A reboot: Xen forgets every region, and /run (the daemon's record) empties with it.
      await rm(host.xenStatePath, { force: true });
      await rm(host.xenLogPath, { force: true });
      await rm(host.stateDir, { recursive: true, force: true });
      const killsThisBoot = Math.min(KILLS_PER_BOOT, CRASH_KILLS - kills);
      for (let i = 0; i < killsThisBoot; i++) {
        const daemon = startDaemon(host);
        // Every other kill at a random moment; the rest aimed at the narrowest and worst window:
        // just after Xen took an add, before the daemon recorded the answer.
        if (kills % 2 === 0) {
          await new Promise((resolve) => setTimeout(resolve, random() % killWindowMs));
        } else {
          aimedKills += (await untilXenTakesAnAdd(host, killWindowMs)) ? 1 : 0;
        }
        daemon.child.kill('SIGKILL');
        await daemon.exited;
        kills++;
        // Group commit writes the pending lines of a whole batch before its first hypercall, so
        // one kill can leave several adds pending.
        const journal = await readFile(join(host.stateDir, LEDGER_FILE), 'utf8').catch(() => '');
        pendingLeft += replayLedger(journal).entries.filter((entry) => entry.status === 'pending').length;
      }
      // The boot's last start runs to the end of coldplug and stops cleanly.
      const started = performance.now();
      const last = startDaemon(host);
      let state: DaemonState | null = null;
      await waitFor('the last daemon of the boot to finish coldplug', async () => {
        if (last.child.exitCode !== null) throw new Error(`xen-pmemd exited with ${last.child.exitCode}: ${last.stderr.join('')}`);
        const read = await readState(host);
        if (read?.ready && read.pid === last.child.pid) state = read;
        return state !== null;
      }, 30_000);
      killWindowMs = Math.round((performance.now() - started) * 1.2);
      last.child.kill('SIGTERM');
      await last.exited;
      assert.equal(last.child.exitCode, 0, last.stderr.join(''));
      assert.deepEqual(stackTraceLines(last.stderr.join('')), []);
      const final = (await readState(host))!;

      const calls = host.xenCalls();
      const context = `boot ${boots}: ${show(final.devices.map((each) => [each.device, each.state, each.reason]))}`;
      for (const [id, k] of kinds.entries()) {
        const record = final.devices.find((each) => each.device === `pmem${id}`);
        assert.ok(record, `pmem${id} in the final state; ${context}`);
        const adds = callsFor(calls, id);
        if (k.kind !== 'valid') {
          assert.deepEqual(adds, [], `pmem${id} (${k.kind}) never reached the hypervisor; ${context}`);
          assert.equal(record.state, k.kind === 'absent' ? 'absent' : 'rejected', context);
          continue;
        }
        assert.equal(record.state, 'reported', `pmem${id}: ${record.reason}: ${record.message}; ${context}`);
        finalReasons.set(record.reason, (finalReasons.get(record.reason) ?? 0) + 1);
        const ok = adds.filter((call) => call.result === 'OK');
        const others = adds.filter((call) => call.result !== 'OK');
        // A kill between Xen's answer and its line in the call log leaves no OK line; Xen's own
        // table (below) still holds the region exactly once.
        assert.ok(ok.length <= 1, `pmem${id}: ${ok.length} successful adds; ${context}`);
        for (const call of others) assert.deepEqual([call.result, call.reason], ['EEXIST', 7], `only confirmations of an earlier add (EEXIST already_added): ${call.line}`);
        confirmations += others.length;
      }
      assert.deepEqual(
        host.xenRegions().map((r) => r.spfn).sort((a, b) => (a < b ? -1 : 1)),
        valid.map(spfnOf),
        `Xen holds each valid region once, and nothing else; ${context}`,
      );
      assert.deepEqual(final.ledger.map((entry) => [entry.device, entry.status]).sort(), valid.map((id) => [`pmem${id}`, 'reported']).sort(), context);
      strayTemporaries += (await readdir(host.stateDir)).filter((name) => name.startsWith('.state.json.')).length;
    }
    assert.ok(confirmations <= pendingLeft, `${confirmations} confirmations for ${pendingLeft} pending entries left by ${kills} kills`);
    t.diagnostic(`${kills} kills over ${boots} boots (${aimedKills} right after Xen took an add); valid devices ended as ${show(Object.fromEntries(finalReasons))}; ${confirmations} confirming adds answered EEXIST, for ${pendingLeft} pending entries the kills left; ${strayTemporaries} temporary state files left by kills`);
  });
});
