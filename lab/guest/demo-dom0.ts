// The demo, inside the Dom0 of the patched hypervisor: install xen-pmem as the README says, let
// the daemon decide the NVDIMMs present at boot, take one hotplugged by the host, and record what
// an operator would look at. lab/demo.ts prints it beside what Xen said on its console.
//
// Settings (lab.env): LAB_BOOT_DISKS. Marker for the host: hotplug (the host plugs a prepared
// NVDIMM). Result: demo.json.

import { release } from 'node:os';

import { DEMO_RESULT_FILE, type DemoPart, type DemoResult, type Dom0System } from './daemon-results.js';
import {
  UNIT, XEN_PMEM, diskFacts, installProduct, listJson, pmemDisks, readText, run, waitForColdplug, runOk,
  statusJson, udevInitializedBeforeUnbind, unitJournal, unitSnapshot, waitForDeviceState, waitForDisks, waitForNewDisk,
} from './daemon-dom0.js';
import { log, mark, putResult, uptimeSeconds } from './results.js';

const BOOT_DISKS = Number(process.env.LAB_BOOT_DISKS ?? '2');
const result: DemoResult = { phase: 'start' };

async function step(name: string, says: string, work: () => Promise<void> | void): Promise<void> {
  result.phase = name;
  // The phase line is what lab/timeline.ts reads; the sentence is what the demo's progress shows.
  log(`phase ${name} (uptime ${uptimeSeconds().toFixed(1)} s)`);
  log(says);
  try {
    await work();
  } finally {
    putResult(DEMO_RESULT_FILE, result);
  }
}

function look(): DemoPart {
  return {
    unit: unitSnapshot(),
    status: statusJson().status,
    statusText: run(XEN_PMEM, ['status']).stdout,
    list: listJson(),
    journal: unitJournal().entries,
  };
}

/** Which Debian, kernel, node, systemd and Xen this Dom0 runs, from files (and one systemctl). */
function dom0System(): Dom0System {
  const osRelease = readText('/etc/os-release') ?? '';
  const xenPart = (name: string): string => (readText(`/sys/hypervisor/version/${name}`) ?? '').trim();
  const xen = xenPart('major') === '' ? null : `${xenPart('major')}.${xenPart('minor')}${xenPart('extra')}`;
  return {
    os: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'unknown',
    debianVersion: (readText('/etc/debian_version') ?? '?').trim(),
    kernelRelease: release(),
    node: process.version,
    systemd: run('systemctl', ['--version']).stdout.split('\n')[0] ?? '?',
    xen,
  };
}

async function main(): Promise<void> {
  await step('boot', 'Dom0 up: waiting for the NVDIMMs present at boot', async () => {
    result.kernelRelease = release();
    result.system = dom0System();
    await waitForDisks(Array.from({ length: BOOT_DISKS }, (_, index) => `pmem${index}`), 120_000);
    result.bootDisks = pmemDisks().map(diskFacts);
  });

  await step('install', 'installing: node dist/packaging/install.js install, then systemctl enable --now xen-pmemd', () => {
    const command = installProduct();
    const enable = runOk('systemctl', ['enable', '--now', UNIT], 180_000);
    result.install = { command, enable };
  });

  await step('hotplug', 'the daemon decided the boot NVDIMMs; asking the host to hotplug one', async () => {
    await waitForColdplug(unitSnapshot().properties.MainPID ?? '');
    const before = pmemDisks();
    mark('hotplug');
    const arrival = await waitForNewDisk(before, 90_000);
    // Read before the daemon unbinds the namespace for Xen, which takes the disk away.
    const hotplug = { ...arrival, facts: diskFacts(arrival.disk), udevInitializedUs: await udevInitializedBeforeUnbind(arrival.disk) };
    await waitForDeviceState(arrival.disk, ['absent', 'rejected', 'reported', 'unsupported', 'failed', 'retrying'], 60_000);
    result.patchedXen = { ...look(), hotplug };
  });
  result.phase = 'done';
  putResult(DEMO_RESULT_FILE, result);
  log('demo done: powering off');
}

main().catch((error: Error) => {
  result.failure = { phase: result.phase, message: error.message };
  putResult(DEMO_RESULT_FILE, result);
  log(`demo failed while "${result.phase}": ${error.message}`);
  process.exitCode = 1;
});
