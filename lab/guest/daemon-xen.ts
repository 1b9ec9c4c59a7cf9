// Scenarios a–d against a real hypervisor without pmem support: Debian's own Xen (4.17 in the
// Debian 12 Dom0, 4.20 in the Debian 13 one), which takes no report. xen-pmem is installed the way docs/operations.md says, the daemon is left stopped,
// and the first hotplug must start it through the udev rule; then coldplug of the NVDIMMs present
// at boot (prepared, blank, damaged), a hotplug into the running daemon, a setup inside the Dom0,
// and a kill -9. One node process does it all: every process start is slow in a PV Dom0 under TCG.
//
// Settings (lab.env): LAB_BOOT_DISKS, the number of NVDIMMs at boot; LAB_GUEST_SETUP_BYTES, the
// size of the one that is blank at boot and gets `xen-pmem setup` here.
// Markers for the host: hotplug-stopped, hotplug-running (the host plugs an NVDIMM at each).
// Result: daemon-xen.json, rewritten after every phase, so a failure keeps what came before it.

import { readFileSync, realpathSync } from 'node:fs';
import { release } from 'node:os';

import { XEN_RESULT_FILE, type XenScenarioResult } from './daemon-results.js';
import {
  STATE_DIR, UNIT, XEN_PMEM, daemonReady, diskFacts, installProduct, ledgerLines, listJson, monotonicUs, namespaceUdevInitializedUs, pmemDisks, readStateFile, readText, run, runOk,
  statusJson, udevInitializedUs, unitJournal, unitSnapshot, waitForDeviceState, waitForDisks, waitForNewDisk, waitForUnit,
} from './daemon-dom0.js';
import { log, mark, putResult, sleep, uptimeSeconds, waitUntil, phaseRunner } from './results.js';

const BOOT_DISKS = Number(process.env.LAB_BOOT_DISKS ?? '5');
const GUEST_SETUP_BYTES = BigInt(process.env.LAB_GUEST_SETUP_BYTES ?? String(384 * 1024 * 1024));
const QUIET_SECONDS = 6;

const result: XenScenarioResult = { phase: 'start' };

const phase = phaseRunner(XEN_RESULT_FILE, result);

async function main(): Promise<void> {
  await phase('boot', async () => {
    result.environment = {
      kernelRelease: release(),
      xenCapabilities: readFileSync('/proc/xen/capabilities', 'utf8').trim(),
      uptimeAtStart: uptimeSeconds(),
    };
    await waitForDisks(Array.from({ length: BOOT_DISKS }, (_, index) => `pmem${index}`), 120_000);
    result.bootDisks = pmemDisks().map(diskFacts);
  });

  await phase('install', () => {
    const command = installProduct();
    result.install = { command, unit: unitSnapshot(), ruleInstalled: readText('/etc/udev/rules.d/69-xen-pmem.rules') !== null };
  });

  await phase('udev-start', async () => {
    const before = pmemDisks();
    mark('hotplug-stopped');
    const arrival = await waitForNewDisk(before, 90_000);
    const unitWhenDiskAppeared = unitSnapshot();
    const unitActive = await waitForUnit('active', (s) => s.properties.ActiveState === 'active', 180_000, UNIT, () => daemonReady());
    // SYSTEMD_WANTS lands on the device's main unit, the one named after its sysfs path
    // (dev-pmemN.device is an alias that shows no dependencies of its own).
    const deviceUnit = realpathSync(`/sys/class/block/${arrival.disk}`);
    const wants = run('systemctl', ['show', '-p', 'Id', '-p', 'Wants', deviceUnit]).stdout.trim();
    result.udevStart = {
      arrival, facts: diskFacts(arrival.disk), unitWhenDiskAppeared, unitActive, deviceUnit: wants, journal: unitJournal().entries,
    };
  });

  await phase('coldplug', async () => {
    await waitUntil('the daemon to finish coldplug', () => readStateFile()?.ready === true, 60_000);
    const { status, exitCode } = statusJson();
    result.coldplug = {
      status, statusExit: exitCode, list: listJson(),
      journal: unitJournal().entries, errJournal: unitJournal(['-p', 'err']).entries, unit: unitSnapshot(),
    };
  });

  await phase('quiet', async () => {
    const look = () => ({ journalEntries: unitJournal().entries.length, stateUpdatedAt: readStateFile()?.updatedAt ?? null, unit: unitSnapshot() });
    const before = look();
    await sleep(QUIET_SECONDS * 1000);
    const after = look();
    result.quiet = { seconds: QUIET_SECONDS, before, after, stateAfter: readStateFile() };
  });

  await phase('hotplug-running', async () => {
    const unitBefore = unitSnapshot();
    const before = pmemDisks();
    const requestedMonotonicUs = monotonicUs().toString();
    mark('hotplug-running');
    const arrival = await waitForNewDisk(before, 90_000);
    await waitForDeviceState(arrival.disk, ['absent', 'rejected', 'reported', 'unsupported', 'failed'], 60_000);
    const facts = diskFacts(arrival.disk);
    result.hotplugRunning = {
      arrival,
      facts,
      requestedMonotonicUs,
      udevInitializedUs: udevInitializedUs(arrival.disk),
      namespaceUdevInitializedUs: namespaceUdevInitializedUs(facts.namespace),
      unitBefore,
      unitAfter: unitSnapshot(),
      journal: unitJournal([`PMEM_DEVICE=${arrival.disk}`]).entries,
    };
  });

  await phase('guest-setup', async () => {
    const disk = pmemDisks().find((name) => BigInt(diskFacts(name).sectors) * 512n === GUEST_SETUP_BYTES);
    if (!disk) throw new Error(`no pmem disk of ${GUEST_SETUP_BYTES} bytes (have ${pmemDisks().map((name) => `${name} ${BigInt(diskFacts(name).sectors) * 512n}`).join(', ')})`);
    const stateBefore = readStateFile()?.devices.find((entry) => entry.device === disk);
    const setup = run(XEN_PMEM, ['setup', `/dev/${disk}`]);
    if (setup.status !== 0) throw new Error(`xen-pmem setup /dev/${disk} failed (${setup.status}): ${setup.stderr.trim()}`);
    await waitForDeviceState(disk, ['unsupported', 'reported', 'rejected', 'failed'], 60_000);
    const inspect = run(XEN_PMEM, ['inspect', `/dev/${disk}`, '--json']);
    result.guestSetup = {
      disk,
      facts: diskFacts(disk),
      stateBefore: stateBefore ? `${stateBefore.state}/${stateBefore.reason}` : null,
      setup,
      inspect: JSON.parse(inspect.stdout),
      journal: unitJournal([`PMEM_DEVICE=${disk}`]).entries,
      status: statusJson().status,
    };
  });

  await phase('kill', async () => {
    const before = unitSnapshot();
    const kill = runOk('systemctl', ['kill', '-s', 'KILL', UNIT]);
    // RestartSec=5s, then a node start: tens of seconds here.
    const after = await waitForUnit('restarted', (s) => s.properties.ActiveState === 'active'
      && s.properties.MainPID !== before.properties.MainPID && s.properties.MainPID !== '0', 120_000, UNIT, () => daemonReady(before.properties.MainPID));
    await waitUntil('the restarted daemon to finish coldplug', () => {
      const state = readStateFile();
      return state?.ready === true && String(state.pid) === after.properties.MainPID;
    }, 60_000);
    const { status, exitCode } = statusJson();
    result.kill = { before, kill, after, status, statusExit: exitCode, ledger: ledgerLines(), journal: unitJournal().entries };
  });

  await phase('hardening', () => {
    const unit = unitSnapshot();
    // The daemon's own view of /proc: its private /proc must still show xenfs (BindReadOnlyPaths=/proc/xen).
    const capabilitiesSeenByDaemon = readText(`/proc/${unit.properties.MainPID}/root/proc/xen/capabilities`);
    result.hardening = {
      unit, capabilitiesSeenByDaemon, stateDirListing: run('ls', ['-la', STATE_DIR]).stdout,
      ledger: ledgerLines(), state: readStateFile(), journal: unitJournal().entries,
    };
  });
  result.phase = 'done';
  putResult(XEN_RESULT_FILE, result);
}

main().catch((error: Error) => {
  result.failure = { phase: result.phase, message: error.message };
  putResult(XEN_RESULT_FILE, result);
  log(`daemon-xen failed in phase ${result.phase}: ${error.message}`);
  process.exitCode = 1;
});
