// Faults: I/O errors on the device, devices that vanish in the middle of a decision, every kind
// of answer from the hypervisor, a hypervisor that is slow, a state directory that cannot be
// written, a configuration that cannot be read. Each must leave the daemon deciding other
// devices and the device in a state with a reason, and must never lose a device or report one
// twice. The controller runs over a fixture host with the real sysfs reader, real images set up
// with sfdisk, the real state store and the real bridge; faults are injected at the ports.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { MiB } from '../src/core/units.js';
import type { Config } from '../src/daemon/config.js';
import { Controller, type DaemonPorts } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { LedgerJournal } from '../src/daemon/ledger.js';
import { loadPreviousRun, loadState, loadStateSchemas, parseState, type DaemonState, type DeviceRecord } from '../src/daemon/state-store.js';
import { openDevice } from '../src/io/device.js';
import type { DeviceReader } from '../src/io/ports.js';
import { scanDevice } from '../src/io/scan.js';
import { openXencall } from '../src/native/libxencall.js';
import type { HypercallResult, HypercallPort } from '../src/xen/ports.js';
import { listPmemNamespaces, readPmemByBlockName } from '../src/sysfs/model.js';
import { HypercallBridge } from '../src/xen/bridge.js';
import { OFFSETS, reasonNumberOf, type XenpfPmemReason } from '../src/xen/xenpf-pmem.js';
import type { RegionSpec } from '../fixtures/sysfs-tree.js';
import { stackTraceLines } from '../fixtures/cli.js';
import {
  bridgeWithReport, makeDaemonHost, recordingLogger, testConfig, waitFor, type DaemonHost, type RecordingLogger, type XenEnvOptions, forgetXenInProcess,
} from '../fixtures/daemon-host.js';
import { hasCommand } from '../fixtures/images.js';

// parseState reads with the schemas the daemon loads only when a state file exists.
before(() => loadStateSchemas());

/** xen-pmemd's entry point over a fixture tree (the roots are the launcher's flags, not the daemon's). */
const DAEMON = fileURLToPath(new URL('../fixtures/daemon-launcher.js', import.meta.url));
const GiB4 = 0x1_0000_0000n;
const SIZE = 256n * MiB;
const EX_CONFIG = 78;
const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk): devices are set up with the real setup path';

const ERRNO = { EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, E2BIG: 7, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17, ENODEV: 19, EINVAL: 22, ENOSPC: 28, EROFS: 30, ENOSYS: 38, EOPNOTSUPP: 95 } as const;

function rawRegion(id: number): RegionSpec {
  return { id, start: GiB4 + BigInt(id) * SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'raw' }] };
}
const spfnOf = (id: number): bigint => (GiB4 + BigInt(id) * SIZE) >> 12n;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  forgetXenInProcess();
});

async function makeHost(label: string, devices: number, xen: XenEnvOptions = {}): Promise<DaemonHost> {
  const host = await makeDaemonHost(`faults-${label}`, { regions: Array.from({ length: devices }, (_, id) => rawRegion(id)) });
  cleanups.push(() => host.cleanup());
  host.useXenInProcess(xen);
  for (let id = 0; id < devices; id++) await host.prepare(`pmem${id}`);
  return host;
}

interface Rig { controller: Controller; log: RecordingLogger; ports: DaemonPorts }

function rig(host: DaemonHost, options: { config?: Config; ports?: Partial<DaemonPorts>; previous?: DaemonState | null } = {}): Rig {
  const log = recordingLogger();
  const ports = host.ports({ log, ...options.ports });
  const controller = new Controller(options.config ?? testConfig(), ports, options.previous ?? null);
  cleanups.push(() => controller.stop());
  return { controller, log, ports };
}

function recordOf(controller: Controller, device: string): DeviceRecord {
  const record = controller.status.snapshot().devices.find((each) => each.device === device);
  assert.ok(record, `a record for ${device}`);
  return record;
}

function stateOf(controller: Controller, device: string): [string, string] {
  const record = recordOf(controller, device);
  return [record.state, record.reason];
}

function blockEvent(sysname: string, action = 'change'): DeviceEvent {
  return { action, subsystem: 'block', sysname, syspath: `/sys/devices/virtual/block/${sysname}`, devtype: 'disk' };
}

/** Successful adds per region start, from the test hypervisor's call log. */
function addsFor(host: DaemonHost, spfn: bigint): string[] {
  return host.regionAdds().filter((call) => call.spfn === spfn).map((call) => call.result ?? '?');
}

function errnoError(code: keyof typeof ERRNO, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code, errno: -ERRNO[code], syscall: 'read' });
}

/** The real reader with reads that fail when `fails(offset, nth read)` says so. */
function faultyReader(reader: DeviceReader, fails: (offset: bigint, nth: number) => NodeJS.ErrnoException | null): DeviceReader {
  let reads = 0;
  return {
    path: reader.path, size: reader.size, sectorSize: reader.sectorSize, isBlockDevice: reader.isBlockDevice,
    get bytesRead() { return reader.bytesRead; },
    async read(offset, length) {
      const failure = fails(offset, ++reads);
      if (failure) throw failure;
      return reader.read(offset, length);
    },
    close: () => reader.close(),
  };
}

describe('I/O errors on the device', { skip }, () => {
  test('EIO on every read of pmem0: retrying with a growing delay, pmem1 reported meanwhile; pmem0 reported once the reads work', async () => {
    const host = await makeHost('eio', 2);
    let faulty = true;
    const opens: number[] = [];
    const started = Date.now();
    const { controller, log } = rig(host, {
      config: testConfig({ retry: { initialMs: 20, maxMs: 80 } }),
      ports: {
        openReader: async (devPath) => {
          const reader = await openDevice(devPath, 'read');
          if (!devPath.endsWith('/pmem0')) return reader;
          opens.push(Date.now() - started);
          return faultyReader(reader, () => (faulty ? errnoError('EIO', 'i/o error, read') : null));
        },
      },
    });
    await controller.start();
    const failing = recordOf(controller, 'pmem0');
    assert.deepEqual([failing.state, failing.reason], ['retrying', 'io-error']);
    assert.match(failing.message, /^pmem0: cannot read .*\/pmem0: EIO: i\/o error, read$/);
    assert.ok(failing.nextAttempt, 'the next attempt is on record');
    assert.deepEqual(stateOf(controller, 'pmem1'), ['reported', 'reported'], 'the other device is not held up');

    // 20, 40, 80, 80, ... ms: each retry comes no sooner than its delay (a timer never fires
    // early; a busy machine only makes the gaps longer), so there is no busy loop.
    await waitFor('five attempts to open pmem0', () => opens.length >= 5);
    const gaps = opens.slice(1).map((at, index) => at - opens[index]!);
    [20, 40, 80, 80].forEach((delay, index) => assert.ok(gaps[index]! >= delay - 1, `attempt ${index + 2} came ${gaps[index]} ms after the one before, sooner than its ${delay} ms delay: ${opens.join(', ')}`));
    assert.deepEqual(addsFor(host, spfnOf(0)), [], 'nothing is reported from a device that cannot be read');
    const warnings = log.entries.filter((entry) => entry.fields.device === 'pmem0' && entry.fields.reason === 'io-error');
    assert.equal(warnings.filter((entry) => entry.level === 'warn').length, 1, 'one warning, repeats are debug');

    faulty = false;
    await waitFor('pmem0 to be reported after the fault cleared', () => recordOf(controller, 'pmem0').state === 'reported');
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
    assert.deepEqual(addsFor(host, spfnOf(1)), ['OK']);
  });

  test('EIO on the backup copy only, after the table and the primary were read: retrying, not half a scan trusted', async () => {
    const host = await makeHost('eio-backup', 1);
    const backupAt = SIZE - MiB;
    let faulty = true;
    const { controller } = rig(host, {
      ports: {
        openReader: async (devPath) => faultyReader(await openDevice(devPath, 'read'), (offset) => (faulty && offset === backupAt ? errnoError('EIO', 'i/o error, read') : null)),
      },
    });
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['retrying', 'io-error']);
    assert.deepEqual(addsFor(host, spfnOf(0)), []);
    faulty = false;
    await waitFor('pmem0 reported', () => recordOf(controller, 'pmem0').state === 'reported');
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
  });

  test('EIO opening the device: retrying io-error, no hypercall', async () => {
    const host = await makeHost('eio-open', 1);
    const { controller } = rig(host, {
      config: testConfig({ retry: { initialMs: 5000, maxMs: 5000 } }),
      ports: { openReader: async () => { throw errnoError('EIO', 'i/o error, open'); } },
    });
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['retrying', 'io-error']);
    assert.equal(host.regionAdds().length, 0);
  });

  const dm = deviceMapperAvailable();
  test('a real EIO: the backup copy behind a device-mapper error target', { skip: dm === true ? false : dm }, async () => {
    const host = await makeHost('dm-error', 1);
    const image = join(host.dir, 'pmem0-backing.img');
    await writeFile(image, '');
    // The prepared image becomes the loop device's backing file.
    spawnSync('cp', ['--sparse=always', host.devPath('pmem0'), image]);
    const loop = run('losetup', ['--find', '--show', image]).trim();
    const name = `xen-pmem-eio-${process.pid}`;
    cleanups.push(async () => { run('losetup', ['-d', loop]); });
    const sectors = SIZE / 512n;
    const backup = (SIZE - MiB) / 512n;
    run('dmsetup', ['create', name, '--table', [
      `0 ${backup} linear ${loop} 0`,
      `${backup} 8 error`,
      `${backup + 8n} ${sectors - backup - 8n} linear ${loop} ${backup + 8n}`,
    ].join('\n')]);
    cleanups.push(async () => { run('dmsetup', ['remove', '--retry', name]); });
    const mapped = `/dev/mapper/${name}`;

    const reader = await openDevice(mapped, 'read');
    await assert.rejects(scanDevice(reader), (error: NodeJS.ErrnoException) => error.code === 'EIO');
    await reader.close();

    await rm(host.devPath('pmem0'));
    await symlink(mapped, host.devPath('pmem0'));
    const { controller } = rig(host, { config: testConfig({ retry: { initialMs: 5000, maxMs: 5000 } }) });
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['retrying', 'io-error']);
    assert.match(recordOf(controller, 'pmem0').message, /input\/output error|EIO/i);
    assert.equal(host.regionAdds().length, 0);
  });
});

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

function deviceMapperAvailable(): true | string {
  if (process.getuid?.() !== 0) return 'needs root (losetup, dmsetup)';
  if (!hasCommand('dmsetup') || !hasCommand('losetup')) return 'dmsetup or losetup missing (Debian packages dmsetup, mount)';
  if (!existsSync('/dev/mapper/control') || spawnSync('dmsetup', ['version'], { stdio: 'ignore' }).status !== 0) {
    return 'no device-mapper in this kernel (no /dev/mapper/control): the lab Dom0 has it; here the injected reader above stands in';
  }
  return true;
}

describe('devices that vanish', { skip }, () => {
  test('gone after the first read (ENXIO, and gone from sysfs): removed, no retry, no hypercall', async () => {
    const host = await makeHost('vanish', 1);
    let gone = false;
    const { controller, log } = rig(host, {
      ports: {
        readByBlockName: async (name) => (gone ? null : readPmemByBlockName(host.roots, name)),
        openReader: async (devPath) => faultyReader(await openDevice(devPath, 'read'), (_offset, nth) => {
          if (nth === 1) return null;
          gone = true;
          return errnoError('ENXIO', 'no such device or address, read');
        }),
      },
    });
    await controller.handleEvent(blockEvent('pmem0', 'add'));
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['removed', 'removed']);
    assert.equal(record.nextAttempt, undefined);
    assert.deepEqual(log.entries.filter((entry) => entry.fields.device === 'pmem0').map((entry) => entry.fields.state), ['removed']);
    assert.equal(host.regionAdds().length, 0);
  });

  test('a remove event while the scan is held, then reads fail: removed; the device comes back and is reported once', async () => {
    const host = await makeHost('remove-event', 1);
    let gone = false;
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let opens = 0;
    const { controller } = rig(host, {
      ports: {
        readByBlockName: async (name) => (gone ? null : readPmemByBlockName(host.roots, name)),
        openReader: async (devPath) => {
          const nth = ++opens;
          const reader = await openDevice(devPath, 'read');
          if (nth > 1) return reader;
          await held;
          return faultyReader(reader, () => errnoError('ENODEV', 'no such device, read'));
        },
      },
    });
    const added = controller.handleEvent(blockEvent('pmem0', 'add'));
    await waitFor('the first scan to start', () => opens === 1);
    gone = true;
    const removed = controller.handleEvent(blockEvent('pmem0', 'remove'));
    release();
    await Promise.all([added, removed]);
    assert.deepEqual(stateOf(controller, 'pmem0'), ['removed', 'removed']);
    assert.equal(host.regionAdds().length, 0);

    gone = false;
    await controller.handleEvent(blockEvent('pmem0', 'add'));
    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
  });

  test('removed while its hypercall is under way: reported, then removed-while-reported, and the ledger keeps the region', async () => {
    const host = await makeHost('remove-during-add', 1);
    let gone = false;
    const real = host.openBridge();
    let controller!: Controller;
    let removal: Promise<void> | null = null;
    const rigged = rig(host, {
      ports: {
        readByBlockName: async (name) => (gone ? null : readPmemByBlockName(host.roots, name)),
        listNamespaces: async () => (gone ? [] : listPmemNamespaces(host.roots)),
        bridge: bridgeWithReport(real, async (request) => {
            // The NVDIMM is pulled while Xen works on the add; udev tells the daemon afterwards.
            gone = true;
            setImmediate(() => { removal = controller.handleEvent(blockEvent('pmem0', 'remove')); });
            return real.report(request);
          }),
      },
    });
    controller = rigged.controller;
    await controller.start();
    await waitFor('the remove event handed over', () => removal !== null);
    await removal;
    const record = recordOf(controller, 'pmem0');
    assert.deepEqual([record.state, record.reason], ['removed', 'removed-while-reported']);
    assert.equal(record.layout?.request.spfn, spfnOf(0));
    assert.equal(rigged.log.entries.find((entry) => entry.fields.reason === 'removed-while-reported')?.level, 'error');
    assert.deepEqual(controller.status.snapshot().ledger.map((entry) => [entry.device, entry.status]), [['pmem0', 'reported']]);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
  });
});

/** A stand-in hypervisor behind the HypercallPort interface: the probe proves XENPF_pmem, adds answer as told. */
function scriptedPort(answer: () => AddAnswer | 'throw'): HypercallPort & { adds: number; taken: number } {
  const port = {
    adds: 0,
    /** Adds answered with success: what this hypervisor now holds. */
    taken: 0,
    async platformOp(op: Buffer): Promise<HypercallResult> {
      const after = Buffer.from(op);
      after.writeUInt16LE(1, OFFSETS.abi);
      const sub = op.readUInt32LE(OFFSETS.sub);
      if (sub === 2) {
        // The probe (index 0xffffffff) and the question of what Xen holds: this stand-in lists nothing.
        after.writeUInt16LE(reasonNumberOf('no-such-region'), OFFSETS.reason);
        return { rc: -1, errno: ERRNO.ENOENT, after };
      }
      port.adds++;
      const result = answer();
      if (result === 'throw') throw new Error('koffi: segmentation fault in xencall1');
      after.writeUInt16LE(result.reason === null ? 0 : reasonNumberOf(result.reason), OFFSETS.reason);
      if (result.errno === 0) port.taken++;
      return { rc: result.errno === 0 ? 0 : -1, errno: result.errno, after };
    },
    async xenVersion(cmd: number): Promise<HypercallResult> {
      return { rc: cmd === 0 ? (4 << 16) | 17 : 0, errno: 0, after: Buffer.alloc(16) };
    },
    close() {},
  };
  return port;
}

interface AddAnswer { errno: number; reason: XenpfPmemReason | null }

interface ErrnoRow {
  answer: string;
  result: AddAnswer | 'throw';
  state: string;
  reason: string;
}

const ok: AddAnswer = { errno: 0, reason: null };
const fail = (errno: number, reason: XenpfPmemReason | null = null): AddAnswer => ({ errno, reason });

const ERRNO_ROWS: ErrnoRow[] = [
  { answer: 'rc 0', result: ok, state: 'reported', reason: 'reported' },
  { answer: 'EINVAL not_pmem', result: fail(ERRNO.EINVAL, 'not-pmem'), state: 'rejected', reason: 'not-pmem' },
  { answer: 'EINVAL firmware_memory', result: fail(ERRNO.EINVAL, 'firmware-memory'), state: 'rejected', reason: 'firmware-memory' },
  { answer: 'EINVAL overlaps_added_region', result: fail(ERRNO.EINVAL, 'overlaps-added-region'), state: 'rejected', reason: 'overlaps-added-region' },
  { answer: 'ENOSPC reserved_exhausted', result: fail(ERRNO.ENOSPC, 'reserved-exhausted'), state: 'rejected', reason: 'reserved-exhausted' },
  { answer: 'EPERM not_permitted', result: fail(ERRNO.EPERM, 'not-permitted'), state: 'rejected', reason: 'not-permitted' },
  { answer: 'EBUSY mapped', result: fail(ERRNO.EBUSY, 'mapped'), state: 'retrying', reason: 'mapped' },
  { answer: 'EBUSY busy', result: fail(ERRNO.EBUSY, 'busy'), state: 'retrying', reason: 'busy' },
  { answer: 'ENOMEM no_memory', result: fail(ERRNO.ENOMEM, 'no-memory'), state: 'retrying', reason: 'no-memory' },
  { answer: 'EOPNOTSUPP unsupported_caller', result: fail(ERRNO.EOPNOTSUPP, 'unsupported-caller'), state: 'unsupported', reason: 'unsupported-caller' },
  { answer: 'EEXIST with another reason', result: fail(ERRNO.EEXIST, 'busy'), state: 'failed', reason: 'busy' },
  { answer: 'EIO', result: fail(ERRNO.EIO), state: 'failed', reason: 'eio' },
  { answer: 'EFAULT', result: fail(ERRNO.EFAULT), state: 'failed', reason: 'efault' },
  { answer: 'ENOSYS (after the probe proved XENPF_pmem)', result: fail(ERRNO.ENOSYS), state: 'failed', reason: 'enosys' },
  { answer: 'an errno no table knows (4000)', result: fail(4000), state: 'failed', reason: 'errno-4000' },
  { answer: 'a throw inside the native call', result: 'throw', state: 'failed', reason: 'exception' },
];

describe('every answer from the hypervisor', { skip }, () => {
  // One host for the whole matrix: the answers come from a stand-in port, not from its hypervisor.
  let shared: DaemonHost | null = null;
  after(async () => { await shared?.cleanup(); });

  for (const row of ERRNO_ROWS) {
    test(`${row.answer}: ${row.state}, ${row.reason}; the daemon goes on and reports the device once the hypervisor takes it`, async () => {
      if (!shared) {
        shared = await makeDaemonHost('faults-errno', { regions: [rawRegion(0), rawRegion(1)] });
        for (const device of ['pmem0', 'pmem1']) await shared.prepare(device);
      }
      const host = shared;
      let healed = false;
      const port = scriptedPort(() => (healed ? ok : row.result));
      const bridge = new HypercallBridge(() => ({ kind: 'opened', port }));
      const { controller, log } = rig(host, { config: testConfig({ retry: { initialMs: 100, maxMs: 200 } }), ports: { bridge } });
      await controller.handleEvent(blockEvent('pmem0', 'add'));

      const record = recordOf(controller, 'pmem0');
      assert.deepEqual([record.state, record.reason], [row.state, row.reason], record.message);
      assert.ok(!record.message.includes('\n') && stackTraceLines(record.message).length === 0, record.message);
      assert.match(record.message, /region 0x100000000-0x10fffffff/, 'the sentence names the region');
      const ledger = controller.status.snapshot().ledger;
      if (row.state === 'reported') assert.deepEqual(ledger.map((entry) => entry.status), ['reported']);
      else assert.deepEqual(ledger, [], 'a refused or failed add leaves no entry behind');
      const level = log.entries.find((entry) => entry.fields.device === 'pmem0')?.level;
      assert.equal(level, { reported: 'notice', rejected: 'error', retrying: 'warn', failed: 'error', unsupported: 'warn' }[row.state]);

      // The daemon keeps working: the next device is decided as usual.
      healed = true;
      await controller.handleEvent(blockEvent('pmem1', 'add'));
      assert.deepEqual(stateOf(controller, 'pmem1'), ['reported', 'reported']);
      let decider = controller;
      if (row.state === 'retrying') {
        await waitFor('the retry of pmem0', () => recordOf(controller, 'pmem0').state === 'reported');
      } else if (row.state === 'rejected') {
        // A definite refusal is not sent again in this run, whatever the events (the driver bound
        // again after the refusal brings the disk back with one): a new run sends it once more.
        const adds = port.adds;
        await controller.handleEvent(blockEvent('pmem0'));
        assert.deepEqual([recordOf(controller, 'pmem0').state, port.adds], ['rejected', adds], 'the same layout is not sent again in this run');
        await controller.stop();
        decider = rig(host, { config: testConfig({ retry: { initialMs: 100, maxMs: 200 } }), ports: { bridge }, previous: controller.status.snapshot() }).controller;
        await decider.start();
      } else if (row.state !== 'reported') {
        // Not retried on its own: an event (an operator's `udevadm trigger`) decides it again.
        await controller.handleEvent(blockEvent('pmem0'));
      }
      assert.equal(recordOf(decider, 'pmem0').state, 'reported');
      assert.deepEqual(decider.status.snapshot().ledger.map((entry) => [entry.device, entry.status]).sort(), [['pmem0', 'reported'], ['pmem1', 'reported']]);
      assert.equal(port.taken, 2, 'each device taken once');
      if (row.state === 'reported') assert.equal(port.adds, 2, 'nothing sent twice');
      else assert.ok(port.adds >= 3, `pmem0 sent again only after the fault: ${port.adds} adds`);
    });
  }

  const MODES: [string, [string, string], string[]][] = [
    ['pmem', ['reported', 'reported'], ['OK']],
    ['slow', ['reported', 'reported'], ['OK']],
    ['enomem-once', ['retrying', 'no-memory'], ['ENOMEM']],
    ['ebusy-once', ['retrying', 'busy'], ['EBUSY']],
    ['enosys', ['unsupported', 'enosys'], []],
    ['dom0-console', ['unsupported', 'enosys'], []],
    ['eperm', ['unsupported', 'probe-failed'], []],
    ['no-such-mode', ['unsupported', 'probe-failed'], []],
    ['not-dom0', ['unsupported', 'not-dom0'], []],
  ];
  test('every mode of the test hypervisor, through libxencall and koffi: a state and a reason, never a throw', async () => {
    const host = await makeHost('modes', 1);
    for (const [mode, expected, adds] of MODES) {
      await rm(host.xenStatePath, { force: true });
      await rm(host.xenLogPath, { force: true });
      host.useXenInProcess({ mode, delayMs: 20 });
      const bridge = host.openBridge();
      const log = recordingLogger();
      const controller = new Controller(testConfig({ retry: { initialMs: 60_000, maxMs: 60_000 } }), host.ports({ log, bridge }), null);
      await controller.start();
      await controller.stop();
      assert.deepEqual(stateOf(controller, 'pmem0'), expected, `mode ${mode}`);
      assert.deepEqual(host.regionAdds().map((call) => call.result), adds, `mode ${mode}: region adds`);
      bridge.close();
    }
  });
});

describe('a slow hypervisor', { skip }, () => {
  /** Fails the test if the event loop ever waits this long: a hypercall must not hold it. */
  function loopWatch(): { worstGapMs(): number; stop(): void } {
    let last = performance.now();
    let worst = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 5);
    return { worstGapMs: () => worst, stop: () => clearInterval(ticker) };
  }

  /** The log, with the moment each device's outcome was logged. */
  function timedLog(): { log: RecordingLogger; decidedAt: Map<string, number[]> } {
    const log = recordingLogger();
    const decidedAt = new Map<string, number[]>();
    for (const level of ['debug', 'info', 'notice', 'warn', 'error'] as const) {
      const inner = log[level];
      log[level] = (fields, message) => {
        inner(fields, message);
        if (typeof fields.device === 'string' && 'state' in fields) decidedAt.set(fields.device, [...(decidedAt.get(fields.device) ?? []), performance.now()]);
      };
    }
    return { log, decidedAt };
  }

  test('250 ms per hypercall: three devices reported once each, one at a time, and the event loop never waits for Xen', async (t) => {
    const host = await makeHost('slow', 3, { mode: 'slow', delayMs: 250 });
    const { controller } = rig(host);
    const watch = loopWatch();
    try {
      await controller.start();
    } finally {
      watch.stop();
    }
    for (const id of [0, 1, 2]) {
      assert.deepEqual(stateOf(controller, `pmem${id}`), ['reported', 'reported']);
      assert.deepEqual(addsFor(host, spfnOf(id)), ['OK']);
    }
    // Before the calls left the main thread this was about 250 ms per call (750 ms for the probe).
    // That the loop is free during a call is proven by order in the next test; the stall is a
    // figure (npm run bench measures it), not a bound a busy machine could break.
    t.diagnostic(`longest event-loop stall during coldplug: ${Math.round(watch.worstGapMs())} ms with 250 ms per hypercall`);
  });

  test('group commit: coldplug of six devices writes the ledger twice, all pending lines, then all answers', async () => {
    const host = await makeHost('group-commit', 6);
    const journal = new LedgerJournal(host.stateDir);
    const groups: string[][] = [];
    const { controller } = rig(host, {
      ports: {
        recordLedger: async (steps) => {
          groups.push(steps.map((step) => `${step.op} ${step.entry.device}`));
          return journal.append(steps);
        },
      },
    });
    await controller.start();
    const devices = [0, 1, 2, 3, 4, 5].map((id) => `pmem${id}`);
    assert.deepEqual(groups.map((group) => [...group].sort()), [devices.map((d) => `pending ${d}`), devices.map((d) => `reported ${d}`)]);
    // Every pending line was on disk before the first hypercall of its group: the log of calls
    // comes after both syncs' first, and each region was added once.
    for (const id of [0, 1, 2, 3, 4, 5]) assert.deepEqual(addsFor(host, spfnOf(id)), ['OK']);
    journal.close();
  });

  test('one add held in Xen: other devices are decided meanwhile; the slow one is reported once when Xen answers', async (t) => {
    // pmem0 is the slow one: its add waits until the test releases it, so "meanwhile" is an
    // order, not a time. pmem1 is reported at coldplug; pmem2 stays blank.
    const host = await makeDaemonHost('faults-one-slow', { regions: [0, 1, 2].map(rawRegion) });
    cleanups.push(() => host.cleanup());
    const release = join(host.dir, 'release-the-add');
    host.useXenInProcess({ slowSpfn: spfnOf(0), holdFile: release });
    await host.blank('pmem0');
    await host.prepare('pmem1');
    await host.blank('pmem2');
    const { log, decidedAt } = timedLog();
    const real = host.openBridge();
    let addStarted = 0;
    const { controller } = rig(host, {
      ports: {
        log,
        bridge: bridgeWithReport(real, (request) => {
            if (request.spfn === spfnOf(0)) addStarted = performance.now();
            return real.report(request);
          }),
      },
    });
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem1'), ['reported', 'reported']);

    await host.prepare('pmem0');
    const watch = loopWatch();
    try {
      const slow = controller.handleEvent(blockEvent('pmem0'));
      await waitFor('the slow add to begin', () => addStarted > 0);
      const sent = performance.now();
      controller.handleEvent(blockEvent('pmem1'));
      controller.handleEvent(blockEvent('pmem2'));
      await waitFor('pmem1 and pmem2 decided again', () => (decidedAt.get('pmem1') ?? []).some((at) => at > sent) && (decidedAt.get('pmem2') ?? []).some((at) => at > sent));
      const took = ['pmem1', 'pmem2'].map((device) => decidedAt.get(device)!.find((at) => at > sent)! - sent);
      const pmem0Decided = (decidedAt.get('pmem0') ?? []).some((at) => at > addStarted);
      t.diagnostic(`decided during the held add: pmem1 (already reported) in ${took[0]!.toFixed(1)} ms, pmem2 (absent) in ${took[1]!.toFixed(1)} ms`);
      assert.equal(pmem0Decided, false, 'the held add was still under way');
      assert.equal(host.regionAdds().filter((call) => call.spfn === spfnOf(0)).length, 0, 'Xen has not answered pmem0 yet');
      await writeFile(release, '');
      await slow;
    } finally {
      watch.stop();
    }
    t.diagnostic(`longest event-loop stall during the held add: ${Math.round(watch.worstGapMs())} ms`);
    assert.deepEqual(stateOf(controller, 'pmem0'), ['reported', 'reported']);
    // pmem1's record keeps the report it got at coldplug; its new pass changed nothing.
    assert.deepEqual(stateOf(controller, 'pmem1'), ['reported', 'reported']);
    assert.deepEqual(stateOf(controller, 'pmem2'), ['absent', 'no-superblock']);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
    assert.deepEqual(addsFor(host, spfnOf(1)), ['OK']);
  });

  test('an overlapping region waits for the add under way, and is judged by its answer', async () => {
    // An inconsistent host: region1 starts 128 MiB into region0. The first add Xen is asked for
    // is refused as busy (and dropped from the ledger), so the other device's region is free.
    const host = await makeDaemonHost('faults-overlap-wait', {
      regions: [{ id: 0, start: GiB4, size: SIZE, namespaces: [{ id: 0, mode: 'raw' }] }, { id: 1, start: GiB4 + 128n * MiB, size: SIZE, namespaces: [{ id: 0, mode: 'raw' }] }],
    });
    cleanups.push(() => host.cleanup());
    host.useXenInProcess();
    await host.prepare('pmem0');
    await host.prepare('pmem1');
    const real = host.openBridge();
    const asked: bigint[] = [];
    const { controller } = rig(host, {
      config: testConfig({ retry: { initialMs: 20, maxMs: 20 } }),
      ports: {
        bridge: bridgeWithReport(real, async (request) => {
            asked.push(request.spfn);
            if (asked.length > 1) return real.report(request);
            await new Promise((resolve) => setTimeout(resolve, 100));
            return { kind: 'retry', errno: ERRNO.EBUSY, reason: 'busy', message: 'Xen is busy' };
          }),
      },
    });
    await controller.start();
    const [refused, taken] = asked;
    const device = (spfn: bigint | undefined): string => (spfn === GiB4 >> 12n ? 'pmem0' : 'pmem1');
    assert.notEqual(refused, taken, 'the second add was the other device, judged after the first was answered');
    assert.deepEqual(stateOf(controller, device(taken)), ['reported', 'reported']);
    await waitFor('the busy one retried', () => stateOf(controller, device(refused))[0] === 'rejected');
    assert.deepEqual(stateOf(controller, device(refused)), ['rejected', 'overlaps-reported']);
    assert.equal(asked.length, 2, 'the loser never reached the hypervisor again');
    assert.equal(host.xenRegions().length, 1);
  });

  test('stopped during a slow add: the add under way is answered and recorded, the rest of its batch is not sent; the next start reports them once', async () => {
    const host = await makeHost('stop-during-add', 3);
    const hold = join(host.dir, 'release-the-add');
    host.useXenInProcess({ slowSpfn: spfnOf(0), holdFile: hold });
    const real = host.openBridge();
    let addStarted = false;
    const first = rig(host, {
      ports: {
        bridge: bridgeWithReport(real, (request) => {
            if (request.spfn === spfnOf(0)) addStarted = true;
            return real.report(request);
          }),
      },
    });
    const coldplug = first.controller.start();
    await waitFor('the slow add to begin', () => addStarted);
    let stopped = false;
    const stopping = first.controller.stop().then(() => { stopped = true; });
    await waitFor('the notice of the add under way', () => first.log.entries.some((entry) => entry.fields.reason === 'stopping-during-report'));
    assert.equal(stopped, false, 'stop waits for the answer of the add under way');
    await writeFile(hold, '');
    await stopping;
    await coldplug;
    const notice = first.log.entries.find((entry) => entry.fields.reason === 'stopping-during-report');
    assert.equal(notice?.fields.device, 'pmem0');
    assert.match(notice!.message, /under way: waiting for the hypervisor's answer .* the next start confirms it/);
    assert.deepEqual(stateOf(first.controller, 'pmem0'), ['reported', 'reported']);
    const others = ['pmem1', 'pmem2'].map((device) => stateOf(first.controller, device));
    for (const state of others) assert.deepEqual(state, ['retrying', 'stopping']);
    assert.deepEqual(host.regionAdds().map((call) => call.spfn), [spfnOf(0)], 'nothing was sent after the stop');
    const onDisk = await loadPreviousRun(host.stateDir);
    assert.deepEqual(onDisk.state?.ledger.map((entry) => [entry.device, entry.status]), [['pmem0', 'reported']], 'the unsent pending lines were withdrawn');

    host.useXenInProcess();
    const second = rig(host, { previous: onDisk.state });
    await second.controller.start();
    assert.deepEqual(['pmem0', 'pmem1', 'pmem2'].map((device) => stateOf(second.controller, device)), [['reported', 'reported-earlier'], ['reported', 'reported'], ['reported', 'reported']]);
    for (const id of [0, 1, 2]) assert.deepEqual(addsFor(host, spfnOf(id)), ['OK']);
  });
});

describe('a state directory that cannot be written', { skip }, () => {
  test('ENOSPC writing the pending record: no hypercall at all; reported once the directory takes writes again', async () => {
    const host = await makeHost('enospc', 1);
    let full = true;
    const attempts: string[] = [];
    const journal = new LedgerJournal(host.stateDir);
    const { controller } = rig(host, {
      config: testConfig({ retry: { initialMs: 20, maxMs: 40 } }),
      ports: {
        recordLedger: async (steps) => {
          attempts.push(...steps.map((step) => step.op));
          if (full) throw errnoError('ENOSPC', 'no space left on device, write');
          return journal.append(steps);
        },
      },
    });
    await controller.start();
    assert.deepEqual(stateOf(controller, 'pmem0'), ['retrying', 'state-unwritable']);
    assert.equal(host.regionAdds().length, 0, 'no add without the exactly-once record on disk');
    await waitFor('a retry that tries to write the record first', () => attempts.filter((each) => each === 'pending').length >= 2);
    assert.equal(host.regionAdds().length, 0);

    full = false;
    await waitFor('pmem0 reported', () => recordOf(controller, 'pmem0').state === 'reported');
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
    const onDisk = await loadPreviousRun(host.stateDir);
    assert.deepEqual(onDisk.state?.ledger.map((entry) => entry.status), ['reported']);
  });

  test('the answer cannot be recorded: reported and logged; a restart from what is on disk confirms it without a second add', async () => {
    const host = await makeHost('answer-lost', 1);
    const journal = new LedgerJournal(host.stateDir);
    const first = rig(host, {
      ports: {
        recordLedger: async (steps) => {
          if (steps.some((step) => step.op !== 'pending')) throw errnoError('EROFS', 'read-only file system, open');
          return journal.append(steps);
        },
      },
    });
    await first.controller.start();
    assert.deepEqual(stateOf(first.controller, 'pmem0'), ['reported', 'reported'], 'Xen took it, so it is reported');
    assert.ok(first.log.entries.some((entry) => entry.level === 'error' && entry.fields.reason === 'state-unwritable'), 'the lost record is logged as an error');
    await first.controller.stop();

    const { state: previous } = await loadPreviousRun(host.stateDir);
    assert.deepEqual(previous?.ledger.map((entry) => entry.status), ['pending'], 'the journal still says pending');

    const second = rig(host, { previous, ports: { bridge: host.openBridge() } });
    await second.controller.start();
    assert.deepEqual(stateOf(second.controller, 'pmem0'), ['reported', 'reported-before-restart']);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK'], 'one add: Xen listed the pending one, so nothing was sent again');
    assert.equal(host.xenRegions().length, 1);
  });
});

interface DaemonRun { code: number | null; stdout: string; stderr: string }

/** xen-pmemd as a child process until state.json says it is ready, then SIGTERM. */
async function runDaemonUntilReady(host: DaemonHost, extraArgs: string[] = []): Promise<DaemonRun & { state: DaemonState }> {
  const child = spawn(process.execPath, [
    DAEMON, '--sys-root', host.roots.sysRoot, '--dev-root', host.roots.devRoot, '--state-dir', host.stateDir,
    '--config', join(host.dir, 'config.json'), ...extraArgs,
  ], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv() }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  let state: DaemonState | null = null;
  await waitFor('xen-pmemd to finish coldplug', async () => {
    if (child.exitCode !== null) throw new Error(`xen-pmemd exited with ${child.exitCode}: ${stderr}`);
    try {
      const parsed = parseState(await readFile(join(host.stateDir, 'state.json'), 'utf8'));
      if (parsed.kind === 'loaded' && parsed.state.ready && parsed.state.pid === child.pid) state = parsed.state;
    } catch { /* not written yet */ }
    return state !== null;
  }, 20_000);
  child.kill('SIGTERM');
  const code = await exited;
  return { code, stdout, stderr, state: state! };
}

describe('state that cannot be read at start', { skip }, () => {
  test('garbage in state.json: logged, device records start afresh, and the journal still prevents a second add', async () => {
    const host = await makeHost('corrupt-state', 1);
    const first = await runDaemonUntilReady(host);
    assert.deepEqual(first.state.devices.map((each) => [each.state, each.reason]), [['reported', 'reported']]);
    await writeFile(join(host.stateDir, 'state.json'), '{"version": 1, "devices": [tor');

    const second = await runDaemonUntilReady(host);
    assert.equal(second.code, 0);
    assert.deepEqual(stackTraceLines(second.stderr), []);
    assert.match(second.stdout, /state\.json is unreadable \(not JSON .*\); device records start afresh/);
    assert.deepEqual(second.state.devices.map((each) => [each.state, each.reason]), [['reported', 'reported-earlier']]);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK'], 'no second pmem_add');
  });

  test('a torn last journal line (a crash mid-append) is skipped silently; a damaged line in the middle is logged and skipped', async () => {
    const host = await makeHost('torn-ledger', 2);
    const first = await runDaemonUntilReady(host);
    assert.deepEqual(first.state.devices.map((each) => each.state), ['reported', 'reported']);
    const path = join(host.stateDir, 'ledger.jsonl');
    const lines = (await readFile(path, 'utf8')).split('\n');
    // Four complete lines and the empty piece after the last newline: coldplug judged both devices
    // in one turn, so the two pending lines were written together, then the two answers.
    assert.equal(lines.length, 5, lines.join('\n'));
    assert.deepEqual(lines.slice(0, 4).map((line) => /"op":"(\w+)"/.exec(line)?.[1]), ['pending', 'pending', 'reported', 'reported']);
    await writeFile(path, lines.slice(0, 4).join('\n') + '\n{"op":"pend');
    const torn = await runDaemonUntilReady(host);
    assert.doesNotMatch(torn.stdout, /ledger\.jsonl/);
    assert.deepEqual(torn.state.devices.map((each) => each.reason), ['reported-earlier', 'reported-earlier']);

    // The first run's four lines again, with the second (a pending add) damaged: the reported
    // line after it still stands for that add.
    const damagedLines = lines.slice(0, 4);
    assert.match(damagedLines[1]!, /"op":"pending"/);
    damagedLines[1] = '#' + damagedLines[1];
    await writeFile(path, damagedLines.join('\n') + '\n');
    const damaged = await runDaemonUntilReady(host);
    assert.match(damaged.stdout, /ledger\.jsonl: line 2 is not a ledger record, skipped/);
    assert.deepEqual(damaged.state.devices.map((each) => each.reason), ['reported-earlier', 'reported-earlier']);
    assert.equal(host.regionAdds().filter((call) => call.result === 'OK').length, 2, 'each region added once');
  });

  test('the journal lost entirely (deleted): Xen is asked what it holds, lists this very layout, and nothing is sent again', async () => {
    const host = await makeHost('lost-ledger', 1);
    await runDaemonUntilReady(host);
    await rm(join(host.stateDir, 'ledger.jsonl'));
    const second = await runDaemonUntilReady(host);
    assert.deepEqual(second.state.devices.map((each) => [each.state, each.reason]), [['reported', 'reported-earlier']]);
    assert.match(second.state.devices[0]!.message, /Xen already holds region 0x100000000-0x10fffffff with exactly this layout/);
    assert.deepEqual(addsFor(host, spfnOf(0)), ['OK']);
    assert.equal(host.xenRegions().length, 1);
  });
});

describe('a configuration that cannot be read', { skip }, () => {
  for (const [what, make, message] of [
    ['a directory where the file should be', async (path: string) => { await mkdir(path); }, /cannot be read \(EISDIR\)$/],
    ['a file cut off in the middle', async (path: string) => { await writeFile(path, '{"allow": {"namespaces": ["3c0d6a52-8f41'); }, /not valid JSON/],
    ['an allow list that is not a list', async (path: string) => { await writeFile(path, '{"allow": {"namespaces": "3c0d6a52-8f41-4b7e-9a1d-0e6f2b7c5a11"}}'); }, /allow\.namespaces: /],
  ] as const) {
    test(`${what}: exit 78 with one line, before any device is read or any hypercall made`, async () => {
      const host = await makeHost(`config-${what.split(' ')[1]}`, 1);
      const configPath = join(host.dir, 'config.json');
      await make(configPath);
      const result = spawnSync(process.execPath, [
        DAEMON, '--sys-root', host.roots.sysRoot, '--dev-root', host.roots.devRoot, '--state-dir', host.stateDir, '--config', configPath,
      ], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv() }, encoding: 'utf8', timeout: 20_000 });
      assert.equal(result.status, EX_CONFIG, result.stderr);
      assert.equal(result.stdout, '');
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, result.stderr);
      assert.ok(lines[0]!.startsWith(`xen-pmemd: configuration error: ${configPath}: `), lines[0]);
      assert.match(lines[0]!, message);
      assert.deepEqual(host.xenCalls(), [], 'not even the probe');
      assert.equal(existsSync(join(host.stateDir, 'state.json')), false, 'nothing decided, nothing recorded');
    });
  }
});


