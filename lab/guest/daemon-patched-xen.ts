// Scenarios a–e on the patched hypervisor (hypervisor/, docs/hypervisor.md), which implements
// XENPF_pmem (platform op 67): the file system on a prepared NVDIMM read before the daemon runs,
// xen-pmem installed the way the README says and `systemctl enable --now xen-pmemd`, then
// coldplug, a hotplug, the layouts of two planners at a placement that straddles Xen's table
// boundaries, kill -9 with the ledger deleted (the restarted daemon has only Xen's list), and an
// fsdax namespace set up here while the daemon is stopped. The daemon unbinds each namespace
// before its add, so a reported disk goes away: its facts are read the moment it appears. Xen's
// own account of each report is on its console, which the host reads from the serial log; this
// side records what an operator sees.
//
// Settings (lab.env): LAB_BOOT_DISKS, the number of NVDIMMs at boot; LAB_FS_FILES, the names of
// the files the host put on the prepared NVDIMM's file system (comma-separated).
// Markers for the host, each asking for an NVDIMM: hotplug, hotplug-older, hotplug-current,
// hotplug-fsdax.
// Result: daemon-patched-xen.json, rewritten after every phase.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { PATCHED_XEN_RESULT_FILE, type CommandRecord, type Observation, type PatchedXenScenarioResult, type PlugRecord } from './daemon-results.js';
import {
  STATE_DIR, UNIT, XEN_PMEM, daemonReady, diskFacts, installProduct, ledgerLines, monotonicUs, namespaceUdevInitializedUs, pmemDisks, run, runOk, statusJson, udevInitializedBeforeUnbind,
  unitJournal, unitSnapshot, waitForColdplug, waitForDeviceState, waitForDisks, waitForNewDisk, waitForUnit,
} from './daemon-dom0.js';
import { log, mark, phaseRunner, putResult, waitUntil } from './results.js';

const BOOT_DISKS = Number(process.env.LAB_BOOT_DISKS ?? '3');
/** ndctl refuses namespace sizes that are not a multiple of the region's alignment. */
const FALLBACK_REGION_ALIGN_BYTES = 16n * 1024n * 1024n;
const FS_FILES = (process.env.LAB_FS_FILES ?? '').split(',').filter((name) => name !== '');
const DECIDED = ['reported', 'rejected', 'unsupported', 'failed', 'retrying', 'absent'];

const result: PatchedXenScenarioResult = { phase: 'start' };
const phase = phaseRunner(PATCHED_XEN_RESULT_FILE, result);

function observe(): Observation {
  const { status, exitCode } = statusJson();
  return { unit: unitSnapshot(), status, statusExit: exitCode, journal: unitJournal().entries, ledger: ledgerLines() };
}

/** Asks the host for an NVDIMM (marker `name`) and waits until the daemon decided its disk. */
async function plug(name: string, states = DECIDED): Promise<PlugRecord> {
  const before = pmemDisks();
  const requestedMonotonicUs = monotonicUs().toString();
  mark(name);
  const arrival = await waitForNewDisk(before, 90_000);
  // Before the daemon unbinds the namespace, which takes the disk away.
  const facts = diskFacts(arrival.disk);
  const diskInitializedUs = await udevInitializedBeforeUnbind(arrival.disk);
  const decided = await waitForDeviceState(arrival.disk, states, 90_000);
  return {
    arrival, facts, requestedMonotonicUs, udevInitializedUs: diskInitializedUs, namespaceUdevInitializedUs: namespaceUdevInitializedUs(facts.namespace), decided,
  };
}

async function main(): Promise<void> {
  await phase('boot', async () => {
    await waitForDisks(Array.from({ length: BOOT_DISKS }, (_, index) => `pmem${index}`), 120_000);
    result.bootDisks = pmemDisks().map(diskFacts);
  });

  await phase('filesystem', () => {
    // The one boot disk whose first partition holds a file system: the host made it. Read before
    // the daemon starts: once Xen holds the region the Dom0 has no route to it.
    const disk = (result.bootDisks ?? []).map((facts) => facts.disk)
      .find((name) => run('blkid', ['-o', 'value', '-s', 'TYPE', `/dev/${name}p1`]).stdout.trim() === 'ext4');
    if (!disk) throw new Error('no boot disk has an ext4 file system on its first partition');
    const partition = `/dev/${disk}p1`;
    const target = '/mnt/xen-pmem-lab';
    mkdirSync(target, { recursive: true });
    // noload: a read-only mount that does not replay the journal writes nothing at all.
    const mount = runOk('mount', ['-o', 'ro,noload', partition, target]);
    const files: Record<string, string> = {};
    for (const name of FS_FILES) files[name] = createHash('sha256').update(readFileSync(join(target, name))).digest('hex');
    const unmount = runOk('umount', [target]);
    result.filesystem = { disk, partition, mount, files, unmount };
  });

  await phase('install', () => {
    const command = installProduct();
    // For a Type=notify unit this returns once the daemon sent READY=1 (or failed).
    const enable = runOk('systemctl', ['enable', '--now', UNIT], 180_000);
    result.install = { command, enable, unitAfterEnable: unitSnapshot() };
  });

  await phase('coldplug', async () => {
    await waitForColdplug(result.install!.unitAfterEnable.properties.MainPID ?? '');
    const perDevice: Record<string, ReturnType<typeof unitJournal>['entries']> = {};
    for (const facts of result.bootDisks ?? []) perDevice[facts.disk] = unitJournal([`PMEM_DEVICE=${facts.disk}`]).entries;
    result.coldplug = { ...observe(), perDevice };
  });

  await phase('hotplug', async () => {
    const unitBefore = unitSnapshot();
    const plugged = await plug('hotplug', ['reported', 'rejected', 'unsupported', 'failed']);
    result.hotplug = { ...plugged, journal: unitJournal([`PMEM_DEVICE=${plugged.arrival.disk}`]).entries, unitBefore, unitAfter: unitSnapshot() };
  });

  await phase('straddling', async () => {
    // The older planner's layout: Xen's answer is ENOSPC reserved_exhausted, a rejection.
    const older = await plug('hotplug-older', ['retrying', 'reported', 'rejected', 'failed']);
    const current = await plug('hotplug-current', ['reported', 'retrying', 'rejected', 'failed']);
    result.straddling = { older, current, observation: observe() };
  });

  await phase('restart', async () => {
    const before = observe();
    const kill = runOk('systemctl', ['kill', '-s', 'KILL', UNIT]);
    // The ledger gone as well: the restarted daemon can only ask Xen what it holds.
    rmSync(join(STATE_DIR, 'ledger.jsonl'), { force: true });
    // RestartSec=5s, then a node start and coldplug.
    const restarted = await waitForUnit('restarted', (s) => s.properties.ActiveState === 'active'
      && s.properties.MainPID !== before.unit.properties.MainPID && s.properties.MainPID !== '0', 180_000, UNIT, () => daemonReady(before.unit.properties.MainPID));
    await waitForColdplug(restarted.properties.MainPID ?? '');
    result.restart = { before, kill, after: observe() };
  });

  await phase('fsdax', async () => {
    const regionsBefore = ndRegions();
    const disksBefore = pmemDisks();
    mark('hotplug-fsdax');
    // A label area that was never written leaves the region label-less: one raw pmem disk over it all.
    await waitForNewDisk(disksBefore, 90_000);
    const region = ndRegions().find((name) => !regionsBefore.includes(name));
    if (!region) throw new Error(`the hotplugged NVDIMM brought no new nd region (have ${ndRegions().join(' ')})`);
    const ndctl: CommandRecord[] = [];
    const step = (args: string[]): CommandRecord => {
      const record = run('ndctl', args);
      ndctl.push(record);
      if (record.status !== 0) throw new Error(`ndctl ${args.join(' ')} failed (${record.status}): ${record.stderr.trim()}`);
      return record;
    };
    // Empty labels (written with the region disabled, as ndctl requires) make it take sized namespaces.
    const regionDir = `/sys/bus/nd/devices/${region}`;
    const dimm = readFileSync(`${regionDir}/mapping0`, 'utf8').split(',')[0]!.trim();
    step(['disable-region', region]);
    step(['init-labels', dimm]);
    step(['enable-region', region]);
    const available = BigInt(readFileSync(`${regionDir}/available_size`, 'utf8').trim());
    const alignText = existsSync(`${regionDir}/align`) ? readFileSync(`${regionDir}/align`, 'utf8').trim() : '';
    const align = /^(0x[0-9a-f]+|\d+)$/i.test(alignText) && BigInt(alignText) > 0n ? BigInt(alignText) : FALLBACK_REGION_ALIGN_BYTES;
    // --map=mem: with the memmap on the device (--map=dev) the probe fails in a PV Dom0 (no PSE).
    step(['create-namespace', '--mode=fsdax', '--map=mem', `--region=${region}`, `--size=${available - available % align}`]);
    const disk = await waitForFsdaxDisk(region, 60_000);
    const setup = run(XEN_PMEM, ['setup', `/dev/${disk}`]);
    if (setup.status !== 0) throw new Error(`xen-pmem setup /dev/${disk} failed (${setup.status}): ${setup.stderr.trim()}`);
    run('udevadm', ['settle']);
    const decided = await waitForDeviceState(disk, ['reported', 'rejected', 'unsupported', 'failed', 'retrying'], 60_000);
    const facts = diskFacts(disk);
    result.fsdax = {
      ...observe(), disk, facts, ndctl, setup, decided,
      stillBound: existsSync(`/sys/bus/nd/devices/${facts.parent}/driver`) && existsSync(`/dev/${disk}`),
    };
  });
  result.phase = 'done';
  putResult(PATCHED_XEN_RESULT_FILE, result);
}

function ndRegions(): string[] {
  const dir = '/sys/bus/nd/devices';
  return existsSync(dir) ? readdirSync(dir).filter((name) => /^region\d+$/.test(name)) : [];
}

/** The pmem disk that sits on a pfn device of `region`, once its node exists. */
async function waitForFsdaxDisk(region: string, timeoutMs: number): Promise<string> {
  let found: string | undefined;
  await waitUntil(`an fsdax disk on ${region}`, () => {
    found = pmemDisks().find((disk) => {
      try {
        const facts = diskFacts(disk);
        return facts.region === region && facts.pfnResource !== null && existsSync(`/dev/${disk}`);
      } catch {
        return false;
      }
    });
    return found !== undefined;
  }, timeoutMs);
  return found!;
}

main().catch((error: Error) => {
  result.failure = { phase: result.phase, message: error.message };
  putResult(PATCHED_XEN_RESULT_FILE, result);
  log(`daemon-patched-xen failed in phase ${result.phase}: ${error.message}`);
  process.exitCode = 1;
});
