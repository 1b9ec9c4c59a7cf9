// What the daemon scenarios bring back from the Dom0, and the pure reading of it that the tests
// and the demo share: journal entries as journalctl -o json prints them, the daemon's status as
// `xen-pmem status --json` prints it, and the physical ranges a device must have, computed from
// what sysfs and the super block say (never from what the daemon said).

import { PAGE_SHIFT, hex } from '../../src/core/units.js';

/** One entry of `journalctl -o json`: every value a string (journalctl prints numbers as strings too). */
export type JournalEntry = Record<string, string | number[] | null | undefined>;

/** A pmem disk as sysfs describes it: enough to know where its byte 0 lies in physical memory. */
export interface DiskFacts {
  disk: string;
  /** `259:3` */
  dev: string;
  /** The nd device the disk sits on: `namespace0.0`, or `pfn2.0` in fsdax mode. */
  parent: string;
  namespace: string;
  region: string;
  /** Hex strings exactly as sysfs prints them, decimal sizes as strings. */
  regionResource: string;
  regionSize: string;
  namespaceResource: string;
  namespaceSize: string;
  pfnResource: string | null;
  pfnSize: string | null;
  /** 512-byte sectors. */
  sectors: string;
}

export interface UnitSnapshot {
  /** `systemctl show` properties, as printed. */
  properties: Record<string, string>;
  /** When it was taken, CLOCK_MONOTONIC in microseconds (the journal's __MONOTONIC_TIMESTAMP clock). */
  atMonotonicUs: string;
}

/** A command the scenario ran in the Dom0, for the record and for failure messages. */
export interface CommandRecord {
  command: string;
  status: number | null;
  ms: number;
  stdout: string;
  stderr: string;
}

/** `xen-pmem status --json`, as far as the scenarios read it. */
export interface StatusJson {
  daemon: { running: boolean; pid?: number; ready?: boolean; capability?: { kind: string; reason?: string; message?: string; xenVersion?: string } | null; message?: string };
  devices: StatusDevice[];
  /** Xen's own view (the region query), when the command could ask it. */
  xen?: { available: boolean; xenVersion?: string; regions?: Array<{ layout: Record<string, string> }>; unexplained?: string[]; message?: string };
}

export interface StatusDevice {
  device: string;
  devPath: string | null;
  namespace: string | null;
  mode: string | null;
  region: string | null;
  state: string;
  reason: string;
  message: string;
  since: string;
  notes?: string[];
  /** Xen's view beside the device: whether it holds the device's region, and how they differ. */
  xen?: { holds: boolean; differences: string[] };
  layout?: {
    uuid: string;
    region: { start: string; size: number };
    reserved: { start: string; size: number };
    data: { start: string; size: number };
    pfns: Record<string, string>;
  };
}

/** The super block's offsets, as `xen-pmem inspect --json` reports them (bytes from the device start). */
export interface SuperblockOffsets {
  uuid: string;
  reservedOffset: number;
  reservedSize: number;
  dataOffset: number;
  dataSize: number;
}

/** The ranges a prepared device must be reported with, all hex, PFNs end-exclusive. */
export interface ExpectedLayout {
  regionStart: string;
  regionSize: string;
  reservedStart: string;
  reservedSize: string;
  dataStart: string;
  dataSize: string;
  spfn: string;
  epfn: string;
  rsvSpfn: string;
  rsvEpfn: string;
  dataSpfn: string;
  dataEpfn: string;
}

/**
 * Where a device's ranges lie: its byte 0 is the pfn device's start in fsdax mode, the namespace's
 * start otherwise; the reserved and data areas sit at the super block's offsets from there.
 */
export function expectedLayout(facts: DiskFacts, superblock: SuperblockOffsets): ExpectedLayout {
  const start = BigInt(facts.pfnResource ?? facts.namespaceResource);
  const size = BigInt(facts.sectors) * 512n;
  const reservedStart = start + BigInt(superblock.reservedOffset);
  const reservedSize = BigInt(superblock.reservedSize);
  const dataStart = start + BigInt(superblock.dataOffset);
  const dataSize = BigInt(superblock.dataSize);
  const pfn = (address: bigint): string => hex(address >> PAGE_SHIFT);
  return {
    regionStart: hex(start),
    regionSize: hex(size),
    reservedStart: hex(reservedStart),
    reservedSize: hex(reservedSize),
    dataStart: hex(dataStart),
    dataSize: hex(dataSize),
    spfn: pfn(start),
    epfn: pfn(start + size),
    rsvSpfn: pfn(reservedStart),
    rsvEpfn: pfn(reservedStart + reservedSize),
    dataSpfn: pfn(dataStart),
    dataEpfn: pfn(dataStart + dataSize),
  };
}

/** The same ranges as the daemon's journal fields name them (PMEM_REGION_START …). */
export function journalFieldsOf(expected: ExpectedLayout): Record<string, string> {
  return {
    PMEM_REGION_START: expected.regionStart,
    PMEM_REGION_SIZE: expected.regionSize,
    PMEM_RESERVED_START: expected.reservedStart,
    PMEM_RESERVED_SIZE: expected.reservedSize,
    PMEM_DATA_START: expected.dataStart,
    PMEM_DATA_SIZE: expected.dataSize,
    PMEM_SPFN: expected.spfn,
    PMEM_EPFN: expected.epfn,
    PMEM_RSV_SPFN: expected.rsvSpfn,
    PMEM_RSV_EPFN: expected.rsvEpfn,
    PMEM_DATA_SPFN: expected.dataSpfn,
    PMEM_DATA_EPFN: expected.dataEpfn,
  };
}

/** Parses `journalctl -o json` output: one object per line. */
export function parseJournal(text: string): JournalEntry[] {
  return text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as JournalEntry);
}

/** A field as text; journalctl prints non-UTF-8 values as byte arrays. */
export function field(entry: JournalEntry, name: string): string | undefined {
  const value = entry[name];
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return Buffer.from(value).toString('utf8');
  return String(value);
}

/** The daemon's own entries (not systemd's lines about the unit), optionally for one device. */
export function daemonEntries(entries: JournalEntry[], device?: string): JournalEntry[] {
  return entries.filter((entry) => field(entry, 'SYSLOG_IDENTIFIER') === 'xen-pmemd'
    && (device === undefined || field(entry, 'PMEM_DEVICE') === device));
}

/** The entry that recorded a device's outcome in a given state (the one with PMEM_STATE). */
export function outcomeEntries(entries: JournalEntry[], device: string, state?: string): JournalEntry[] {
  return daemonEntries(entries, device).filter((entry) => field(entry, 'PMEM_STATE') !== undefined
    && (state === undefined || field(entry, 'PMEM_STATE') === state));
}

export const PRIORITY_NAMES: Readonly<Record<string, string>> = {
  0: 'emerg', 1: 'alert', 2: 'crit', 3: 'err', 4: 'warning', 5: 'notice', 6: 'info', 7: 'debug',
};

/** `12.345` seconds of the journal's monotonic clock, for readable timelines. */
export function monotonicSeconds(entry: JournalEntry): number {
  return Number(field(entry, '__MONOTONIC_TIMESTAMP') ?? Number.NaN) / 1e6;
}

/** A journal line as a person reads it: time since boot, priority, the message. */
export function renderEntry(entry: JournalEntry): string {
  const priority = PRIORITY_NAMES[field(entry, 'PRIORITY') ?? ''] ?? '?';
  const who = field(entry, 'SYSLOG_IDENTIFIER') === 'xen-pmemd' ? 'xen-pmemd' : 'systemd';
  return `${monotonicSeconds(entry).toFixed(3).padStart(8)}s ${priority.padEnd(7)} ${who.padEnd(9)} ${field(entry, 'MESSAGE') ?? ''}`;
}

/** One line per command: what it was, how it ended and how long it took. */
export function describeCommand(record: CommandRecord): string {
  const tail = (record.stderr.trim() || record.stdout.trim()).split('\n').slice(-3).join(' | ');
  return `${record.command} → ${record.status} in ${record.ms} ms${tail ? `: ${tail}` : ''}`;
}

export interface DiskArrival {
  disk: string;
  /** When the scenario first saw /dev/<disk>, in the journal's two clocks (µs). */
  nodeSeenRealtimeUs: string;
  nodeSeenMonotonicUs: string;
}

/** What lab/guest/daemon-xen.ts leaves in the share. */
export const XEN_RESULT_FILE = 'daemon-xen.json';

export interface HotplugRecord {
  arrival: DiskArrival;
  facts: DiskFacts;
  /** CLOCK_MONOTONIC µs just before the guest asked the host for the hotplug: nothing of it can come earlier. */
  requestedMonotonicUs?: string;
  /** udev's USEC_INITIALIZED for the disk (CLOCK_MONOTONIC µs). */
  udevInitializedUs: string | null;
  /** udev's USEC_INITIALIZED for the disk's namespace, when udev keeps a record of it. */
  namespaceUdevInitializedUs?: string | null;
  unitBefore: UnitSnapshot;
  unitAfter: UnitSnapshot;
  journal: JournalEntry[];
}

export interface XenScenarioResult {
  phase: string;
  failure?: { phase: string; message: string };
  environment?: { kernelRelease: string; xenCapabilities: string; uptimeAtStart: number };
  bootDisks?: DiskFacts[];
  install?: { command: CommandRecord; unit: UnitSnapshot; ruleInstalled: boolean };
  /** Daemon installed, not started; an NVDIMM hotplugged: the udev rule must start it. */
  udevStart?: {
    arrival: DiskArrival;
    facts: DiskFacts;
    unitWhenDiskAppeared: UnitSnapshot;
    unitActive: UnitSnapshot;
    /** `systemctl show -p Id -p Wants` of the disk's device unit. */
    deviceUnit: string;
    journal: JournalEntry[];
  };
  coldplug?: {
    status: StatusJson;
    statusExit: number | null;
    list: unknown;
    journal: JournalEntry[];
    errJournal: JournalEntry[];
    unit: UnitSnapshot;
  };
  /** The same observations some seconds apart: nothing may move while nothing happens. */
  quiet?: {
    seconds: number;
    before: { journalEntries: number; stateUpdatedAt: string | null; unit: UnitSnapshot };
    after: { journalEntries: number; stateUpdatedAt: string | null; unit: UnitSnapshot };
    stateAfter: unknown;
  };
  hotplugRunning?: HotplugRecord;
  guestSetup?: {
    disk: string;
    facts: DiskFacts;
    stateBefore: string | null;
    setup: CommandRecord;
    inspect: unknown;
    journal: JournalEntry[];
    status: StatusJson;
  };
  kill?: {
    before: UnitSnapshot;
    kill: CommandRecord;
    after: UnitSnapshot;
    status: StatusJson;
    statusExit: number | null;
    ledger: string[];
    journal: JournalEntry[];
  };
  hardening?: {
    unit: UnitSnapshot;
    capabilitiesSeenByDaemon: string | null;
    stateDirListing: string | null;
    /** At the end of the boot: the ledger, the state file and the daemon's whole journal. */
    ledger?: string[];
    state?: unknown;
    journal?: JournalEntry[];
  };
}

/** What lab/guest/daemon-patched-xen.ts leaves in the share. */
export const PATCHED_XEN_RESULT_FILE = 'daemon-patched-xen.json';

/** What the ledger and the daemon's status say at one moment (Xen's own word is on the console). */
export interface Observation {
  unit: UnitSnapshot;
  status: StatusJson;
  statusExit: number | null;
  /** `journalctl -u xen-pmemd -o json` for this boot. */
  journal: JournalEntry[];
  ledger: string[];
}

/** A hotplugged disk and what the daemon made of it. */
export interface PlugRecord {
  arrival: DiskArrival;
  facts: DiskFacts;
  /** CLOCK_MONOTONIC µs just before the guest asked the host for the hotplug. */
  requestedMonotonicUs?: string;
  /** udev's USEC_INITIALIZED for the disk (CLOCK_MONOTONIC µs). */
  udevInitializedUs: string | null;
  /** udev's USEC_INITIALIZED for the disk's namespace, when udev keeps a record of it. */
  namespaceUdevInitializedUs?: string | null;
  /** The state file's record once the daemon decided. */
  decided: { state: string; reason: string; since: string };
}

export interface PatchedXenScenarioResult {
  phase: string;
  failure?: { phase: string; message: string };
  bootDisks?: DiskFacts[];
  install?: { command: CommandRecord; enable: CommandRecord; unitAfterEnable: UnitSnapshot };
  coldplug?: Observation & {
    /** `journalctl -u xen-pmemd PMEM_DEVICE=<disk> -o json` for every disk present at boot. */
    perDevice: Record<string, JournalEntry[]>;
  };
  /** The file system on the prepared NVDIMM's data partition, mounted read-only before the daemon starts. */
  filesystem?: { disk: string; partition: string; mount: CommandRecord; files: Record<string, string>; unmount: CommandRecord };
  hotplug?: PlugRecord & { journal: JournalEntry[]; unitBefore: UnitSnapshot; unitAfter: UnitSnapshot };
  /** An older planner's layout, then this planner's, each straddling a pdx group and an M2P slot. */
  straddling?: { older: PlugRecord; current: PlugRecord; observation: Observation };
  /** kill -9 after the adds, the ledger deleted: the restarted daemon has only Xen's word. */
  restart?: {
    before: Observation;
    kill: CommandRecord;
    after: Observation;
  };
  /** An fsdax namespace set up in this PV Dom0: rejected, and its pfn device left bound. */
  fsdax?: Observation & {
    disk: string;
    facts: DiskFacts;
    /** The ndctl steps: init-labels on the hotplugged DIMM, then create-namespace. */
    ndctl: CommandRecord[];
    setup: CommandRecord;
    decided: { state: string; reason: string; since: string };
    /** The pfn device still has its driver and the disk its node, after the decision. */
    stillBound: boolean;
  };
}

/** What lab/guest/demo-dom0.ts leaves in the share. */
export const DEMO_RESULT_FILE = 'demo.json';

/** One hypervisor's answer in the demo: what an operator would look at. */
export interface DemoPart {
  unit: UnitSnapshot;
  status: StatusJson;
  /** `xen-pmem status`, as printed. */
  statusText: string;
  list: unknown;
  /** The daemon's journal for this boot (`journalctl -u xen-pmemd -o json`). */
  journal: JournalEntry[];
}

/** What the Dom0 says it is: the demo names it. */
export interface Dom0System {
  /** PRETTY_NAME of /etc/os-release, e.g. `Debian GNU/Linux 13 (trixie)`. */
  os: string;
  /** /etc/debian_version, e.g. `13.2`. */
  debianVersion: string;
  kernelRelease: string;
  /** process.version of the node the guest programs and the daemon run on. */
  node: string;
  /** The first line of `systemctl --version`, e.g. `systemd 257 (257.13-1~deb13u1)`. */
  systemd: string;
  /** The hypervisor's version from /sys/hypervisor, e.g. `4.17.5-pmem`; null where the Dom0 kernel has no such directory. */
  xen: string | null;
}

export interface DemoResult {
  phase: string;
  failure?: { phase: string; message: string };
  kernelRelease?: string;
  system?: Dom0System;
  bootDisks?: DiskFacts[];
  install?: { command: CommandRecord; enable: CommandRecord };
  /** Coldplug and a hotplug, answered by the patched hypervisor. */
  patchedXen?: DemoPart & { hotplug: DiskArrival & { facts: DiskFacts; udevInitializedUs: string | null } };
}

/** Test hypervisor log lines for a XENPF_pmem add with this start PFN. */
export function addsFor(hypervisorLog: string[], spfn: string): string[] {
  return hypervisorLog.filter((line) => line.startsWith('platform_op cmd=67 sub=add ') && line.includes(` spfn=${spfn} `));
}

/**
 * Where a hotplug's decision stands, in CLOCK_MONOTONIC µs: the guest's request for the hotplug,
 * which must come first, and the decision. `udevFirst` (the earlier of the namespace's and the
 * disk's USEC_INITIALIZED as read afterwards) and `sinceDiskUs` are figures for diagnostics, never
 * an order: udev restamps a device it keeps no database for at each of its events.
 */
export function hotplugOrder(record: { requestedMonotonicUs?: string; udevInitializedUs: string | null; namespaceUdevInitializedUs?: string | null }, decisionMonotonicUs: string | number): {
  requested: bigint | null;
  udevFirst: bigint | null;
  decided: bigint;
  /** The decision after udev finished the disk (positive) or before (negative: the namespace's event led to it). */
  sinceDiskUs: number | null;
} {
  const known = [record.namespaceUdevInitializedUs, record.udevInitializedUs].filter((value): value is string => typeof value === 'string' && value !== '').map(BigInt);
  return {
    requested: record.requestedMonotonicUs ? BigInt(record.requestedMonotonicUs) : null,
    udevFirst: known.length > 0 ? known.reduce((a, b) => (a < b ? a : b)) : null,
    decided: BigInt(decisionMonotonicUs),
    sinceDiskUs: record.udevInitializedUs ? Number(BigInt(decisionMonotonicUs) - BigInt(record.udevInitializedUs)) : null,
  };
}
