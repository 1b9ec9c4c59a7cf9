// Inside the Dom0: installing xen-pmem as a user does, and watching xen-pmemd through what an
// operator has — systemctl, journalctl, `xen-pmem status`, the files in /run/xen-pmem, sysfs and
// udev's database. Shared by the daemon scenarios and the demo. Every command is one process
// start (0.3–1.5 s here), so the helpers read files directly wherever an operator could too.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import {
  describeCommand, parseJournal, type CommandRecord, type DiskArrival, type DiskFacts, type JournalEntry, type StatusJson, type UnitSnapshot,
} from './daemon-results.js';
import { log, sleep, waitUntil } from './results.js';

export const REPO = process.env.LAB_REPO ?? '/work/main';
export const UNIT = 'xen-pmemd.service';
/** Where `xen-pmem install` puts the commands by default (--prefix /usr/local). */
export const XEN_PMEM = '/usr/local/sbin/xen-pmem';
export const STATE_DIR = '/run/xen-pmem';

/** Runs a command to its end; never throws for a non-zero exit (the record says how it ended). */
export function run(command: string, args: string[], timeoutMs = 120_000): CommandRecord {
  const started = Date.now();
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs });
  const record: CommandRecord = {
    command: [command, ...args].join(' '),
    status: result.status,
    ms: Date.now() - started,
    stdout: result.stdout ?? '',
    stderr: (result.stderr ?? '') + (result.error ? `\n${result.error.message}` : ''),
  };
  log(describeCommand({ ...record, stdout: '', stderr: record.status === 0 ? '' : record.stderr }));
  return record;
}

/** Runs a command that must succeed; a failure names the command and what it printed. */
export function runOk(command: string, args: string[], timeoutMs?: number): CommandRecord {
  const record = run(command, args, timeoutMs);
  if (record.status !== 0) throw new Error(`${describeCommand(record)}`);
  return record;
}

/** CLOCK_MONOTONIC in microseconds: the clock of the journal's __MONOTONIC_TIMESTAMP and udev's USEC_INITIALIZED. */
export function monotonicUs(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** Installing from the built checkout, as the README tells the operator of a Dom0 without the package. */
export function installProduct(): CommandRecord {
  return runOk('/usr/bin/node', [join(REPO, 'dist', 'packaging', 'install.js'), 'install'], 300_000);
}

/** The properties of a unit that the scenarios follow, from one `systemctl show`. */
export function unitSnapshot(unit = UNIT, extra: string[] = []): UnitSnapshot {
  const names = [
    'LoadState', 'ActiveState', 'SubState', 'UnitFileState', 'MainPID', 'NRestarts', 'StatusText', 'Result',
    'ExecMainStartTimestampMonotonic', 'ActiveEnterTimestampMonotonic', 'ExecCondition', ...extra,
  ];
  const atMonotonicUs = monotonicUs();
  const shown = run('systemctl', ['show', unit, ...names.flatMap((name) => ['-p', name])]);
  const properties: Record<string, string> = {};
  for (const line of shown.stdout.split('\n')) {
    const equals = line.indexOf('=');
    if (equals > 0) properties[line.slice(0, equals)] = line.slice(equals + 1);
  }
  return { properties, atMonotonicUs: atMonotonicUs.toString() };
}

/**
 * Polls the unit until `ready` holds. `systemctl show` is a process start, which on the Dom0's
 * one emulated CPU slows down what it waits for; `gate` (a file read) must hold first.
 */
export async function waitForUnit(what: string, ready: (snapshot: UnitSnapshot) => boolean, timeoutMs: number, unit = UNIT, gate: () => boolean = () => true): Promise<UnitSnapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gate()) {
      const snapshot = unitSnapshot(unit);
      if (ready(snapshot)) return snapshot;
      if (Date.now() > deadline) {
        throw new Error(`gave up waiting for ${unit} to be ${what} after ${timeoutMs} ms (last: ${JSON.stringify(snapshot.properties)})`);
      }
      await sleep(500);
    } else {
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${unit} to be ${what} after ${timeoutMs} ms (its daemon never finished coldplug)`);
      await sleep(100);
    }
  }
}

/** The processes in the unit's cgroup, read from cgroupfs. */
export function unitPids(unit = UNIT): string[] {
  return (readText(`/sys/fs/cgroup/system.slice/${unit}/cgroup.procs`) ?? '').split('\n').filter((pid) => pid !== '');
}

/**
 * The daemon in the unit's cgroup has finished its coldplug, by its state file (it sends READY=1
 * right after writing it). `notPid`: a daemon that was killed and whose state file is still there.
 */
export function daemonReady(notPid?: string): boolean {
  const state = readStateFile();
  return state?.ready === true && String(state.pid) !== notPid && unitPids().includes(String(state.pid));
}

/** `journalctl -u xen-pmemd -o json` with extra arguments (matches such as PMEM_DEVICE=pmem0, -p err). */
export function unitJournal(extra: string[] = []): { entries: JournalEntry[]; command: string } {
  const record = run('journalctl', ['--no-pager', '-b', '-o', 'json', '-u', UNIT, ...extra]);
  // journalctl exits 1 when a filter matches nothing; that is an empty answer, not a failure.
  return { entries: record.status === 0 || record.stdout.trim() === '' ? parseJournal(record.stdout) : [], command: record.command };
}

/** `xen-pmem status --json` through the installed command (`command`: another installation's). */
export function statusJson(command = XEN_PMEM): { status: StatusJson; exitCode: number | null } {
  const record = run(command, ['status', '--json']);
  return { status: JSON.parse(record.stdout) as StatusJson, exitCode: record.status };
}

/** `xen-pmem list --json` through the installed command. */
export function listJson(): unknown {
  const record = run(XEN_PMEM, ['list', '--json']);
  try {
    return JSON.parse(record.stdout);
  } catch {
    return { status: record.status, stdout: record.stdout, stderr: record.stderr };
  }
}

/** The daemon's state file as it is now (what `xen-pmem status` reads), or null. */
export function readStateFile(): { pid: number; ready: boolean; updatedAt: string; devices: Array<{ device: string; state: string; reason: string; since: string }> } | null {
  try {
    return JSON.parse(readFileSync(join(STATE_DIR, 'state.json'), 'utf8'));
  } catch {
    return null;
  }
}

/**
 * Waits until the daemon's state file says `device` is in `state` (and, if given, for `reason`).
 * Like every wait in the guest programs, `timeoutMs` (60 s and more) is a hang-catcher, so that a
 * stuck run ends with the phase it was in: no test asserts how fast anything happened.
 */
export async function waitForDeviceState(device: string, states: string[], timeoutMs: number, since?: string): Promise<{ state: string; reason: string; since: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = readStateFile()?.devices.find((entry) => entry.device === device);
    if (record && states.includes(record.state) && (since === undefined || record.since > since)) return record;
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${device} to be ${states.join(' or ')} after ${timeoutMs} ms (state file says ${JSON.stringify(record ?? null)})`);
    }
    await sleep(100);
  }
}

export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function attribute(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

/** The pmem disks that exist now (whole disks, not partitions). */
export function pmemDisks(): string[] {
  const dir = '/sys/class/block';
  return existsSync(dir) ? readdirSync(dir).filter((name) => /^pmem\d+$/.test(name)).sort((a, b) => Number(a.slice(4)) - Number(b.slice(4))) : [];
}

/** Where a pmem disk lies, read from sysfs: the nd device under it, its namespace and region. */
export function diskFacts(disk: string): DiskFacts {
  const block = `/sys/class/block/${disk}`;
  // …/ndbus0/region2/namespace2.0 for a raw disk, …/ndbus0/region2/pfn2.0 in fsdax mode.
  const parentPath = realpathSync(`${block}/device`);
  const parent = basename(parentPath);
  const region = basename(dirname(parentPath));
  const isPfn = parent.startsWith('pfn');
  const namespace = isPfn ? attribute(`/sys/bus/nd/devices/${parent}/namespace`) : parent;
  const namespaceDir = `/sys/bus/nd/devices/${namespace}`;
  const regionDir = `/sys/bus/nd/devices/${region}`;
  return {
    disk,
    dev: attribute(`${block}/dev`),
    parent,
    namespace,
    region,
    regionResource: attribute(`${regionDir}/resource`),
    regionSize: attribute(`${regionDir}/size`),
    namespaceResource: attribute(`${namespaceDir}/resource`),
    namespaceSize: attribute(`${namespaceDir}/size`),
    pfnResource: isPfn ? attribute(`/sys/bus/nd/devices/${parent}/resource`) : null,
    pfnSize: isPfn ? attribute(`/sys/bus/nd/devices/${parent}/size`) : null,
    sectors: attribute(`${block}/size`),
  };
}

/** When udev first finished the device (USEC_INITIALIZED, CLOCK_MONOTONIC µs), from its database. */
export function udevInitializedUs(disk: string): string | null {
  try {
    return udevDatabaseInitializedUs(`b${attribute(`/sys/class/block/${disk}/dev`)}`);
  } catch {
    return null;
  }
}

/**
 * A new disk's USEC_INITIALIZED, waited for: udev writes it before the daemon hears of the disk,
 * and it goes with the disk when the daemon unbinds the namespace for Xen, so it is read at once.
 * Null (and a log line) when udev wrote none in time.
 */
export async function udevInitializedBeforeUnbind(disk: string): Promise<string | null> {
  let initializedUs: string | null = null;
  await waitUntil(`udev's record of ${disk}`, () => (initializedUs = udevInitializedUs(disk)) !== null, 30_000, 10)
    .catch((error: Error) => log(error.message));
  return initializedUs;
}

/**
 * The same for the disk's nd namespace (`+nd:namespace2.0` in udev's database), whose events reach
 * the daemon too; null when udev keeps no record of it.
 */
export function namespaceUdevInitializedUs(namespace: string): string | null {
  return udevDatabaseInitializedUs(`+nd:${namespace}`);
}

function udevDatabaseInitializedUs(name: string): string | null {
  try {
    const line = readFileSync(`/run/udev/data/${name}`, 'utf8').split('\n').find((entry) => entry.startsWith('I:'));
    return line ? line.slice(2).trim() : null;
  } catch {
    return null;
  }
}

/** Waits for a pmem disk that is not in `before`, polling its device node closely. */
export async function waitForNewDisk(before: string[], timeoutMs: number): Promise<DiskArrival> {
  const known = new Set(before);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const disk = pmemDisks().find((name) => !known.has(name) && existsSync(`/dev/${name}`));
    if (disk) {
      return { disk, nodeSeenRealtimeUs: String(BigInt(Date.now()) * 1000n), nodeSeenMonotonicUs: monotonicUs().toString() };
    }
    if (Date.now() > deadline) throw new Error(`no new pmem disk appeared within ${timeoutMs} ms (have: ${pmemDisks().join(' ') || 'none'})`);
    await sleep(25);
  }
}

/** Waits until every named disk has its device node. */
export async function waitForDisks(disks: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!disks.every((disk) => existsSync(`/dev/${disk}`))) {
    if (Date.now() > deadline) throw new Error(`${disks.join(' ')} did not all appear within ${timeoutMs} ms (have: ${pmemDisks().join(' ') || 'none'})`);
    await sleep(100);
  }
}

/**
 * The test hypervisor as test equipment, never part of the product: the library copied out of
 * the repository (the unit hides /root and /home, so nothing it loads may live there), the
 * daemon's config pointing at it, and a drop-in giving it a state file and a log under
 * /run/xen-pmem, the only place the sandbox lets the daemon write.
 */
export const TEST_HYPERVISOR = {
  library: '/usr/local/lib/xen-pmem-test/libtest-xencall.so',
  dropIn: '/etc/systemd/system/xen-pmemd.service.d/test-hypervisor.conf',
  config: '/etc/xen-pmem/config.json',
  state: join(STATE_DIR, 'test-xen-state'),
  log: join(STATE_DIR, 'test-xen.log'),
};

/**
 * `via: 'config'` names the library in /etc/xen-pmem/config.json; `via: 'environment'` leaves that
 * file alone (the Debian package owns it as a conffile) and sets XEN_PMEM_LIBXENCALL in the drop-in.
 */
export function installTestHypervisor(mode = 'pmem', via: 'config' | 'environment' = 'config'): void {
  mkdirSync(dirname(TEST_HYPERVISOR.library), { recursive: true });
  copyFileSync(join(REPO, 'dist', 'test', 'hypervisor', 'libtest-xencall.so'), TEST_HYPERVISOR.library);
  if (via === 'config') {
    mkdirSync(dirname(TEST_HYPERVISOR.config), { recursive: true });
    writeFileSync(TEST_HYPERVISOR.config, JSON.stringify({ xencallLibrary: TEST_HYPERVISOR.library }, null, 2) + '\n');
  }
  mkdirSync(dirname(TEST_HYPERVISOR.dropIn), { recursive: true });
  writeFileSync(TEST_HYPERVISOR.dropIn, [
    '# Test equipment: the daemon talks to the test hypervisor (a libxencall stand-in), not to Xen.',
    '[Service]',
    ...(via === 'environment' ? [`Environment=XEN_PMEM_LIBXENCALL=${TEST_HYPERVISOR.library}`] : []),
    `Environment=TEST_XEN_MODE=${mode}`,
    `Environment=TEST_XEN_STATE=${TEST_HYPERVISOR.state}`,
    `Environment=TEST_XEN_LOG=${TEST_HYPERVISOR.log}`,
    '',
  ].join('\n'));
  log(`test hypervisor (${mode}) in place: ${TEST_HYPERVISOR.library}, ${via === 'config' ? TEST_HYPERVISOR.config : 'XEN_PMEM_LIBXENCALL'}, ${TEST_HYPERVISOR.dropIn}`);
}

/** Lines the test hypervisor wrote, one per hypercall. */
export function testHypervisorLog(): string[] {
  return (readText(TEST_HYPERVISOR.log) ?? '').split('\n').filter((line) => line.trim() !== '');
}

/** The exactly-once ledger as the daemon wrote it. */
export function ledgerLines(): string[] {
  return (readText(join(STATE_DIR, 'ledger.jsonl')) ?? '').split('\n').filter((line) => line.trim() !== '');
}

/** Waits until the daemon whose pid is `mainPid` has finished its coldplug (state.json says ready). */
export async function waitForColdplug(mainPid: string): Promise<void> {
  await waitUntil('the daemon to finish coldplug', () => {
    const state = readStateFile();
    return state?.ready === true && String(state.pid) === mainPid;
  }, 60_000);
}
