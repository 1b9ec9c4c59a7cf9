// Scenarios e, f and the exactly-once half of d, with the test hypervisor standing in for Xen's
// pmem support (upstream Xen has none): the daemon reports, under real systemd, udev and journald.
// The test equipment (library, config, drop-in) goes in first, then xen-pmem is installed and
// `systemctl enable --now xen-pmemd` run, as docs/operations.md tells an operator. Then: the
// success path at coldplug, a kill -9 after the report, and an fsdax namespace on a hotplugged
// labelled NVDIMM, set up here and reported through its pfn device.
//
// Settings (lab.env): LAB_BOOT_DISKS, the number of NVDIMMs at boot.
// Marker for the host: hotplug-fsdax (the host plugs an NVDIMM with a label area).
// Result: daemon-test-xen.json, rewritten after every phase.

import { existsSync, readdirSync, readFileSync } from 'node:fs';

import { TEST_XEN_RESULT_FILE, type CommandRecord, type Observation, type TestXenScenarioResult } from './daemon-results.js';
import {
  UNIT, XEN_PMEM, daemonReady, diskFacts, installProduct, installTestHypervisor, ledgerLines, listJson, pmemDisks, run, waitForColdplug, runOk,
  statusJson, testHypervisorLog, unitJournal, unitSnapshot, waitForDeviceState, waitForDisks, waitForNewDisk, waitForUnit,
} from './daemon-dom0.js';
import { log, mark, putResult, waitUntil, phaseRunner } from './results.js';

const BOOT_DISKS = Number(process.env.LAB_BOOT_DISKS ?? '2');
/** ndctl refuses namespace sizes that are not a multiple of the region's alignment. */
const FALLBACK_REGION_ALIGN_BYTES = 16n * 1024n * 1024n;

const result: TestXenScenarioResult = { phase: 'start' };

const phase = phaseRunner(TEST_XEN_RESULT_FILE, result);

function observe(): Observation {
  const { status, exitCode } = statusJson();
  return {
    unit: unitSnapshot(),
    status,
    statusExit: exitCode,
    journal: unitJournal().entries,
    hypervisorLog: testHypervisorLog(),
    ledger: ledgerLines(),
  };
}


async function main(): Promise<void> {
  await phase('boot', async () => {
    await waitForDisks(Array.from({ length: BOOT_DISKS }, (_, index) => `pmem${index}`), 120_000);
    result.bootDisks = pmemDisks().map(diskFacts);
  });

  await phase('install', () => {
    // Before install, so the daemon-reload install does already sees the drop-in.
    installTestHypervisor('rfc');
    const command = installProduct();
    // For a Type=notify unit this returns once the daemon sent READY=1 (or failed).
    const enable = runOk('systemctl', ['enable', '--now', UNIT], 180_000);
    result.install = { command, enable, unitAfterEnable: unitSnapshot() };
  });

  await phase('success', async () => {
    await waitForColdplug(result.install!.unitAfterEnable.properties.MainPID ?? '');
    const perDevice: Record<string, ReturnType<typeof unitJournal>['entries']> = {};
    for (const facts of result.bootDisks ?? []) perDevice[facts.disk] = unitJournal([`PMEM_DEVICE=${facts.disk}`]).entries;
    result.success = { ...observe(), perDevice, list: listJson() };
  });

  await phase('kill', async () => {
    const before = unitSnapshot();
    const kill = runOk('systemctl', ['kill', '-s', 'KILL', UNIT]);
    const after = await waitForUnit('restarted', (s) => s.properties.ActiveState === 'active'
      && s.properties.MainPID !== before.properties.MainPID && s.properties.MainPID !== '0', 120_000, UNIT, () => daemonReady(before.properties.MainPID));
    await waitForColdplug(after.properties.MainPID ?? '');
    result.kill = { before, kill, after: observe() };
  });

  await phase('fsdax', async () => {
    const regionsBefore = ndRegions();
    const disksBefore = pmemDisks();
    mark('hotplug-fsdax');
    // A label area that was never written leaves the region label-less: one raw pmem disk over it all.
    const raw = await waitForNewDisk(disksBefore, 90_000);
    const region = ndRegions().find((name) => !regionsBefore.includes(name));
    if (!region) throw new Error(`the hotplugged NVDIMM brought no new nd region (have ${ndRegions().join(' ')})`);
    await waitForDeviceState(raw.disk, ['absent'], 60_000);
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
    const size = available - available % align;
    // --map=mem: with the memmap on the device (--map=dev) the probe fails in a PV Dom0 (no PSE).
    step(['create-namespace', '--mode=fsdax', '--map=mem', `--region=${region}`, `--size=${size}`]);
    const disk = await waitForFsdaxDisk(region, 60_000);
    // The disk keeps its name through disable-region and create-namespace: only a decision made
    // after the setup counts.
    const setupAt = new Date().toISOString();
    const setup = run(XEN_PMEM, ['setup', `/dev/${disk}`]);
    if (setup.status !== 0) throw new Error(`xen-pmem setup /dev/${disk} failed (${setup.status}): ${setup.stderr.trim()}`);
    await waitForDeviceState(disk, ['reported', 'rejected', 'unsupported', 'failed'], 60_000, setupAt);
    const inspect = run(XEN_PMEM, ['inspect', `/dev/${disk}`, '--json']);
    result.fsdax = { ...observe(), disk, facts: diskFacts(disk), ndctl, setup, inspect: JSON.parse(inspect.stdout) };
  });
  result.phase = 'done';
  putResult(TEST_XEN_RESULT_FILE, result);
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
  putResult(TEST_XEN_RESULT_FILE, result);
  log(`daemon-test-xen failed in phase ${result.phase}: ${error.message}`);
  process.exitCode = 1;
});
