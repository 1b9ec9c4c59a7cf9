// Every way the project writes its objects out, in one place (ndctl's util_*_to_json is the
// model): address ranges, super block verdicts, layouts, namespace models, device records and
// the daemon's state, each as JSON for machines and as text for people, for `inspect`, `setup`,
// `list`, `status`, the journal and state.json. Pure: no I/O.
//
// A range has four forms, each for its reader:
//   text            0x100000000-0x10fffffff              sentences, the journal's messages, tables
//   JSON            {"start":"0x100000000","size":268435456}     status and list; --human: "256.00 MiB"
//   stored          {"start":"0x100000000","size":"0x10000000"}  state.json: every 64-bit value exact
//   journal fields  PMEM_REGION_START=0x100000000 PMEM_REGION_SIZE=0x10000000
// Addresses and PFNs are hex everywhere; sizes are byte counts unless a person reads them.

import type { LayoutPlan } from '../core/planner.js';
import { SUPERBLOCK_BYTES } from '../core/superblock.js';
import { hex, hexRange, humanSize, PAGE_BYTES, toSafeNumber } from '../core/units.js';
import type { Verdict } from '../core/validate.js';
import type { PmemNamespaceModel } from '../sysfs/types.js';
import { deviceKey } from '../sysfs/types.js';
import type { PmemReport } from '../xen/interface.js';
import { interfaceFor, interfaceNamed } from '../xen/interfaces/index.js';
import { DEVICE_STATES, type ByteRange, type DaemonState, type DeviceRecord, type PhysicalLayout } from './records.js';
import { pfnText, type Comparison, type DeviceBesideXen, type XenView } from './xen-view.js';

export interface JsonOptions {
  /** Sizes as "256.00 MiB", offsets as hex, times as ISO text: `--human`. */
  human?: boolean;
}

// ---- values --------------------------------------------------------------------------------

/** A size: a JSON number, a decimal string when a number would lose precision, or human text. */
export type JsonSize = number | string;

function jsonSize(bytes: bigint, human: boolean): JsonSize {
  if (human) return humanSize(bytes);
  return bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : bytes.toString();
}

function fitsJsonNumber(value: bigint): boolean {
  return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER);
}

/** ECMAScript's largest valid time value. */
const MAX_DATE_MS = 8.64e15;

/** ISO time when the seconds fit a JavaScript Date, the raw count otherwise. */
function describeTime(secondsSinceEpoch: bigint): string {
  const milliseconds = Number(secondsSinceEpoch) * 1000;
  if (!Number.isFinite(milliseconds) || milliseconds > MAX_DATE_MS) return `${secondsSinceEpoch} s after the epoch`;
  return new Date(milliseconds).toISOString();
}

/** JSON where every BigInt (an address, a PFN, a 64-bit size) is a hex string: state.json, the ledger. */
export function storedJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, (_key, each: unknown) => (typeof each === 'bigint' ? hex(each) : each), indent);
}

// ---- ranges and layouts --------------------------------------------------------------------

export interface RangeJson {
  start: string;
  size: JsonSize;
}

/** `{ start: "0x100000000", size: 268435456 }` (size "256.00 MiB" with `human`). */
export function rangeToJson(range: ByteRange, options: JsonOptions = {}): RangeJson {
  return { start: hex(range.start), size: options.human ? humanSize(range.size) : toSafeNumber(range.size) };
}

/** The six PFNs as hex strings, keyed as the report names them. */
function pfnsToJson(report: PmemReport): Record<string, string> {
  return Object.fromEntries(Object.entries(report).map(([key, value]) => [key, hex(value as bigint)]));
}

export interface LayoutJson {
  uuid: string;
  region: RangeJson;
  reserved: RangeJson;
  data: RangeJson;
  pfns: Record<string, string>;
}

export function layoutToJson(layout: PhysicalLayout, options: JsonOptions = {}): LayoutJson {
  return {
    uuid: layout.uuid,
    region: rangeToJson(layout.region, options),
    reserved: rangeToJson(layout.reserved, options),
    data: rangeToJson(layout.data, options),
    pfns: pfnsToJson(layout.request),
  };
}

/** `region 0x…-0x… (reserved 0x…-0x…, data 0x…-0x…)`: a layout in a sentence. */
export function layoutText(layout: PhysicalLayout): string {
  const { region, reserved, data } = layout;
  return `region ${hexRange(region.start, region.size)} (reserved ${hexRange(reserved.start, reserved.size)}, data ${hexRange(data.start, data.size)})`;
}

/** The journal fields of a layout (PMEM_REGION_START, PMEM_RSV_SPFN, …); the logger prints BigInts in hex. */
export function layoutToFields(layout: PhysicalLayout): Record<string, string | bigint> {
  const r = layout.request;
  return {
    uuid: layout.uuid,
    regionStart: layout.region.start, regionSize: layout.region.size,
    reservedStart: layout.reserved.start, reservedSize: layout.reserved.size,
    dataStart: layout.data.start, dataSize: layout.data.size,
    spfn: r.spfn, epfn: r.epfn, rsvSpfn: r.rsvSpfn, rsvEpfn: r.rsvEpfn, dataSpfn: r.dataSpfn, dataEpfn: r.dataEpfn,
  };
}

// ---- verdicts and plans ----------------------------------------------------------------------

export interface VerdictJson {
  status: Verdict['status'];
  reason?: string;
  message?: string;
  source?: 'primary' | 'backup';
  notes?: string[];
  superblock?: {
    version: string;
    uuid: string;
    namespaceUuid: string | null;
    reservedOffset: number;
    reservedSize: number;
    dataOffset: number;
    dataSize: number;
    writer: string;
    createdAt: number;
  };
  partitions: { number: number; start: number; size: number }[];
}

/** The same with `--human`: offsets in hex, sizes in binary units, the time as ISO text. */
export type HumanVerdictJson = Omit<VerdictJson, 'superblock' | 'partitions'> & {
  superblock?: {
    version: string;
    uuid: string;
    namespaceUuid: string | null;
    reservedOffset: string;
    reservedSize: string;
    dataOffset: string;
    dataSize: string;
    writer: string;
    createdAt: string;
  };
  partitions: { number: number; start: string; size: string }[];
};

/** The verdict JSON that `inspect` prints and `list` embeds. */
export function verdictToJson(verdict: Verdict): VerdictJson;
export function verdictToJson(verdict: Verdict, options: JsonOptions): VerdictJson | HumanVerdictJson;
export function verdictToJson(verdict: Verdict, options: JsonOptions = {}): VerdictJson | HumanVerdictJson {
  const human = options.human === true;
  // Keys in the order inspect has always printed them.
  const json: VerdictJson | HumanVerdictJson = { status: verdict.status, partitions: [] };
  if (verdict.status === 'invalid') json.reason = verdict.reason;
  if (verdict.status !== 'valid') json.message = verdict.message;
  if (verdict.status === 'valid') {
    json.source = verdict.source;
    json.notes = verdict.notes;
  }
  const sb = verdict.status === 'absent' ? undefined : verdict.superblock;
  // A damaged-but-checksummed block can carry any 64-bit value; JSON numbers hold 53 bits. Such a
  // block is described by the message (which names its numbers) rather than failing the report.
  if (sb && [sb.reservedOffset, sb.reservedSize, sb.dataOffset, sb.dataSize, sb.createdAt].every(fitsJsonNumber)) {
    const common = { version: `${sb.majorVersion}.${sb.minorVersion}`, uuid: sb.uuid, namespaceUuid: sb.namespaceUuid };
    json.superblock = human
      ? {
        ...common,
        reservedOffset: hex(sb.reservedOffset), reservedSize: humanSize(sb.reservedSize),
        dataOffset: hex(sb.dataOffset), dataSize: humanSize(sb.dataSize),
        writer: sb.writer, createdAt: describeTime(sb.createdAt),
      }
      : {
        ...common,
        reservedOffset: toSafeNumber(sb.reservedOffset), reservedSize: toSafeNumber(sb.reservedSize),
        dataOffset: toSafeNumber(sb.dataOffset), dataSize: toSafeNumber(sb.dataSize),
        writer: sb.writer, createdAt: toSafeNumber(sb.createdAt),
      };
  }
  json.partitions = human
    ? verdict.partitions.map((p) => ({ number: p.number, start: hex(p.start), size: humanSize(p.size) }))
    : verdict.partitions.map((p) => ({ number: p.number, start: toSafeNumber(p.start), size: toSafeNumber(p.size) }));
  return json;
}

/** Range columns line up for people; hex ranges are inclusive, like /proc/iomem. */
function row(label: string, start: bigint, size: bigint, extra = ''): string {
  return `  ${label.padEnd(22)}${hexRange(start, size).padEnd(28)}${humanSize(size).padStart(12)}${extra ? '  ' + extra : ''}`;
}

export function describePlan(device: string, plan: LayoutPlan): string {
  const sb = BigInt(SUPERBLOCK_BYTES);
  const costs = plan.costs;
  const lines = [
    `Layout for ${device}: ${humanSize(plan.deviceSize)} (${hex(plan.deviceSize)} bytes, ${plan.deviceSize / PAGE_BYTES} pages), ${plan.sectorSize}-byte sectors`,
    row('primary super block', plan.primaryOffset, sb),
    row('reserved for Xen', plan.reservedOffset, plan.reservedSize,
      `Xen's minimum ${humanSize(plan.xenMinimumBytes)}; sized at ${costs.pageInfoBytes}+${costs.m2pBytes}+${costs.compatM2pBytes} bytes/page`),
    row('data area', plan.dataOffset, plan.dataSize),
    ...plan.partitions.map((p) => row(`  partition ${p.number}`, p.start, p.size)),
    row('backup super block', plan.backupOffset, sb),
  ];
  return lines.join('\n');
}

export function describeVerdict(device: string, size: bigint, verdict: Verdict): string {
  if (verdict.status === 'absent') return `${device}: no xen-pmem super block (${verdict.message})`;
  if (verdict.status === 'invalid') return `${device}: invalid [${verdict.reason}]: ${verdict.message}`;
  const sb = verdict.superblock;
  const lines = [
    `${device}: valid xen-pmem layout, format ${sb.majorVersion}.${sb.minorVersion}, read from the ${verdict.source} copy`,
    `  device size           ${humanSize(size)} (${hex(size)} bytes)`,
    `  reservation           ${sb.uuid}${sb.namespaceUuid ? `, bound to namespace ${sb.namespaceUuid}` : ''}`,
    `  written by            ${sb.writer} at ${describeTime(sb.createdAt)}`,
    row('reserved for Xen', sb.reservedOffset, sb.reservedSize),
    row('data area', sb.dataOffset, sb.dataSize),
    ...verdict.partitions.map((p) => row(`  partition ${p.number}`, p.start, p.size, p.name)),
    ...verdict.notes.map((note) => `  note: ${note}`),
  ];
  return lines.join('\n');
}

/** What `inspect --json` prints: the device, its size and the verdict. */
export function inspectionToJson(device: string, size: bigint, verdict: Verdict, options: JsonOptions = {}): Record<string, unknown> {
  return { device, size: options.human ? humanSize(size) : toSafeNumber(size), ...verdictToJson(verdict, options) };
}

// ---- namespace models ------------------------------------------------------------------------

export interface NamespaceJson {
  dev: string;
  mode: string;
  /** Bytes the block device exposes (ndctl's "size" for raw and fsdax). */
  size?: JsonSize;
  uuid?: string;
  blockdev?: string;
  sector_size?: number;
  /** Physical address of block byte 0. */
  phys_start?: string;
  region: { dev: string; resource?: string; size?: JsonSize; numa_node?: number };
  supported: boolean;
  unsupported?: { code: string; message: string };
}

/**
 * A namespace model in the style of `ndctl list`: key names follow ndctl where the meaning is the
 * same (dev, mode, size, uuid, blockdev, sector_size, numa_node), in ndctl's order.
 */
export function namespaceToJson(model: PmemNamespaceModel, options: JsonOptions = {}): NamespaceJson {
  const human = options.human === true;
  const region: NamespaceJson['region'] = { dev: model.region.name };
  if (model.region.start !== null) region.resource = hex(model.region.start);
  if (model.region.size !== null) region.size = jsonSize(model.region.size, human);
  if (model.region.numaNode !== null) region.numa_node = model.region.numaNode;

  const json = { dev: model.namespace, mode: model.mode } as NamespaceJson;
  if (model.block !== null) json.size = jsonSize(model.block.size, human);
  if (model.namespaceUuid !== null) json.uuid = model.namespaceUuid;
  if (model.block !== null) {
    json.blockdev = model.block.name;
    json.sector_size = model.block.logicalBlockSize;
    if (model.block.physStart !== null) json.phys_start = hex(model.block.physStart);
  }
  json.region = region;
  json.supported = model.unsupported === null;
  if (model.unsupported !== null) json.unsupported = { ...model.unsupported };
  return json;
}

/** What `list` shows of one namespace: the model, the verdict on its super block, the daemon's record. */
export interface ListedNamespace {
  model: PmemNamespaceModel;
  superblock?: VerdictJson | HumanVerdictJson | { status: 'unreadable'; message: string };
  daemon?: { state: string; reason: string; since: string };
}

export function listedToJson(listed: ListedNamespace, options: JsonOptions = {}): Record<string, unknown> {
  return {
    ...namespaceToJson(listed.model, options),
    ...(listed.superblock ? { superblock: listed.superblock } : {}),
    ...(listed.daemon ? { daemon: listed.daemon } : {}),
  };
}

export function describeListed(listed: ListedNamespace): string {
  const m = listed.model;
  const lines = [`${deviceKey(m)}  ${m.namespace}  mode ${m.mode}${m.namespaceUuid ? `  uuid ${m.namespaceUuid}` : ''}`];
  if (m.block?.physStart != null) lines.push(`  physical   ${hexRange(m.block.physStart, m.block.size)}`);
  if (m.region.start !== null && m.region.size !== null) {
    lines.push(`  ${m.region.name.padEnd(9)}  ${hexRange(m.region.start, m.region.size)}${m.region.numaNode !== null ? `  NUMA node ${m.region.numaNode}` : ''}`);
  }
  if (m.unsupported) lines.push(`  not usable: [${m.unsupported.code}] ${m.unsupported.message}`);
  const sb = listed.superblock;
  if (sb) {
    const detail = sb.status === 'valid' ? `reservation ${'superblock' in sb ? sb.superblock?.uuid : undefined}` : ('reason' in sb && sb.reason ? `[${sb.reason}] ${sb.message}` : sb.message ?? '');
    lines.push(`  super block ${sb.status}${detail ? ': ' + detail : ''}`);
  }
  if (listed.daemon) lines.push(`  xen-pmemd  ${listed.daemon.state} (${listed.daemon.reason}) since ${listed.daemon.since}`);
  return lines.join('\n');
}

// ---- device records and the daemon's state ------------------------------------------------------

/** A device record as `status --json` prints it: addresses as hex strings, sizes in bytes. */
export function recordToJson(record: DeviceRecord, options: JsonOptions = {}, beside?: DeviceBesideXen): Record<string, unknown> {
  const json: Record<string, unknown> = {
    device: record.device, devPath: record.devPath, namespace: record.namespace, mode: record.mode,
    region: record.region, state: record.state, reason: record.reason, message: record.message, since: record.since,
  };
  if (record.nextAttempt) json.nextAttempt = record.nextAttempt;
  if (record.notes) json.notes = record.notes;
  if (record.layout) json.layout = layoutToJson(record.layout, options);
  if (record.interface) json.interface = record.interface;
  if (record.unbound) json.unbound = { ...record.unbound };
  if (beside) json.xen = { holds: beside.held !== null, ...(beside.held ? { region: heldToJson(beside.held) } : {}), differences: beside.differences };
  return json;
}

/** A region Xen holds, as `status --json` shows it: PFNs in hex, counts as numbers. */
function heldToJson(held: NonNullable<DeviceBesideXen['held']>): Record<string, unknown> {
  return {
    pfns: pfnsToJson(held.layout),
    frameTableChunks: held.frameTableChunks, m2pChunks: held.m2pChunks, compatM2pChunks: held.compatM2pChunks,
    freeFrames: hex(held.freeFrames),
    owners: held.owners.map((run) => ({ spfn: hex(run.spfn), epfn: hex(run.epfn), domid: run.domid })),
  };
}

/** Xen's part of `status --json`: what it holds, or why it could not be asked. */
export function xenViewToJson(view: XenView, comparison: Comparison | null): Record<string, unknown> {
  if (!view.available) return { available: false, reason: view.reason, message: view.message };
  return {
    available: true, xenVersion: view.xenVersion,
    regions: view.regions.map(heldToJson),
    unexplained: (comparison?.unexplained ?? []).map((each) => each.message),
  };
}

/** Xen's part of `xen-pmem status` for people, beside one device. */
function describeBeside(beside: DeviceBesideXen): string[] {
  const lines: string[] = [];
  if (beside.held) {
    const h = beside.held;
    lines.push(`  Xen holds ${pfnText(h.layout)}`);
    lines.push(`           tables in ${h.frameTableChunks} + ${h.m2pChunks} + ${h.compatM2pChunks} chunks of 2 MiB; ${hex(h.freeFrames)} data frames free${h.owners.length > 0 ? `; held: ${h.owners.map((run) => `[${hex(run.spfn)}, ${hex(run.epfn)}) by domain ${run.domid}`).join(', ')}` : ''}`);
  } else {
    lines.push('  Xen holds no region of this device');
  }
  for (const difference of beside.differences) lines.push(`  DIFFERENCE: ${difference}`);
  return lines;
}

/** The daemon's part of `status --json`. */
export function daemonToJson(state: DaemonState, running: boolean): Record<string, unknown> {
  return { running, pid: state.pid, startedAt: state.startedAt, updatedAt: state.updatedAt, ready: state.ready, capability: state.capability };
}

/** What the hypervisor implements, in a line for people. */
function describeCapability(capability: NonNullable<DaemonState['capability']>): string {
  return capability.kind !== 'unsupported'
    ? `Xen ${capability.xenVersion ?? ''} accepts ${interfaceNamed(capability.kind)?.title ?? capability.kind}`
    : `Xen does not accept ${interfaceFor(null).title}: ${capability.message ?? capability.reason}`;
}

/** A device record for people: the state line, the ranges, the sentence, notes and the next attempt. */
function describeRecord(record: DeviceRecord): string[] {
  const lines = [`${record.device.padEnd(8)} ${record.state.toUpperCase().padEnd(12)} ${record.reason}   since ${record.since}`];
  if (record.layout) {
    const l = record.layout;
    lines.push(`  region   ${hexRange(l.region.start, l.region.size)}   reserved ${hexRange(l.reserved.start, l.reserved.size)}   data ${hexRange(l.data.start, l.data.size)}`);
  }
  lines.push(`  ${record.message}`);
  for (const note of record.notes ?? []) lines.push(`  note: ${note}`);
  if (record.nextAttempt) lines.push(`  next attempt at ${record.nextAttempt}`);
  return lines;
}

/**
 * `xen-pmem status` for people: the daemon's state (null when it left none) and, when given,
 * Xen's own view beside it.
 */
export function describeState(state: DaemonState | null, running: boolean, xen?: { view: XenView; comparison: Comparison | null }): string {
  const lines = [
    state === null
      ? 'xen-pmemd is NOT running, and left no state (start it with "systemctl start xen-pmemd")'
      : running
        ? `xen-pmemd is running (pid ${state.pid}, since ${state.startedAt}${state.ready ? '' : ', still in coldplug'})`
        : `xen-pmemd is NOT running; last state written by pid ${state.pid} at ${state.updatedAt}:`,
  ];
  if (state?.capability) lines.push(describeCapability(state.capability));
  if (xen) {
    lines.push(xen.view.available
      ? `Xen ${xen.view.xenVersion} holds ${xen.view.regions.length} pmem region${xen.view.regions.length === 1 ? '' : 's'}`
      : `Xen's view is unavailable: ${xen.view.message}`);
  }
  const devices = state?.devices ?? [];
  if (devices.length === 0) lines.push('No pmem devices.');
  for (const record of devices) {
    lines.push('');
    lines.push(...describeRecord(record));
    const beside = xen?.comparison?.devices.get(record.device);
    if (beside) lines.push(...describeBeside(beside));
  }
  for (const each of xen?.comparison?.unexplained ?? []) {
    lines.push('');
    lines.push(`DIFFERENCE: ${each.message}`);
  }
  return lines.join('\n');
}

/** state.json: every BigInt a hex string, two-space indented, one trailing newline. */
export function stateToText(state: DaemonState): string {
  return storedJson(state, 2) + '\n';
}

// ---- metrics ----------------------------------------------------------------------------------

/** What the metrics file says beside the daemon's state. */
export interface MetricsView {
  /** False only in the file written as the daemon stops. */
  up: boolean;
  /** When a device was last decided; null before the first decision. */
  lastDecisionAt: Date | null;
  version: string;
}



/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labels(pairs: Readonly<Record<string, string>>): string {
  const items = Object.entries(pairs).map(([name, value]) => `${name}="${labelValue(value)}"`);
  return items.length === 0 ? '' : `{${items.join(',')}}`;
}

function seconds(date: Date): string {
  return String(date.getTime() / 1000);
}

/**
 * The daemon's state in Prometheus' text format, for node_exporter's textfile collector: a
 * `# HELP` and `# TYPE` line for every metric, no timestamps (the collector refuses files with
 * them; it adds node_textfile_mtime_seconds itself), one trailing newline. Every state is always
 * listed, with 0 where no device is in it, so a series does not vanish when its last device leaves.
 */
export function metricsToText(state: DaemonState, view: MetricsView): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, samples: readonly [Readonly<Record<string, string>>, string][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [pairs, value] of samples) lines.push(`${name}${labels(pairs)} ${value}`);
  };
  metric('xen_pmem_up', 'gauge', 'Whether xen-pmemd runs: 1 while it does, 0 in the file it writes as it stops.', [[{}, view.up ? '1' : '0']]);
  metric('xen_pmem_build_info', 'gauge', 'The version of xen-pmemd that writes this file; always 1.', [[{ version: view.version }, '1']]);
  metric('xen_pmem_ready', 'gauge', 'Whether the daemon has decided every device present at its start and told systemd it is ready.', [[{}, state.ready ? '1' : '0']]);
  if (state.startedAt !== '') {
    metric('xen_pmem_start_time_seconds', 'gauge', 'When this run of xen-pmemd started, in seconds since the epoch.', [[{}, seconds(new Date(state.startedAt))]]);
  }
  const byState = new Map<string, number>(DEVICE_STATES.map((each) => [each, 0]));
  const rejected = new Map<string, number>();
  for (const record of state.devices) {
    byState.set(record.state, (byState.get(record.state) ?? 0) + 1);
    if (record.state === 'rejected') rejected.set(record.reason, (rejected.get(record.reason) ?? 0) + 1);
  }
  metric('xen_pmem_devices', 'gauge', 'pmem devices by the state the daemon decided for them.', [...byState].map(([each, count]) => [{ state: each }, String(count)]));
  metric('xen_pmem_rejected_devices', 'gauge', 'pmem devices rejected, by reason code (as xen-pmem status shows it); only reasons some device has.',
    [...rejected].sort(([a], [b]) => a.localeCompare(b)).map(([reason, count]) => [{ reason }, String(count)]));
  const reported = state.ledger.filter((entry) => entry.status === 'reported');
  metric('xen_pmem_reports_total', 'counter', 'Reports of a pmem region the hypervisor accepted since the host booted, by this daemon and its earlier runs (its ledger).', [[{}, String(reported.length)]]);
  const bytes = reported.reduce((sum, entry) => sum + (entry.request.epfn - entry.request.spfn) * PAGE_BYTES, 0n);
  metric('xen_pmem_reported_bytes', 'gauge', 'Bytes of pmem in the regions reported to the hypervisor since the host booted.', [[{}, bytes.toString()]]);
  const capability = state.capability;
  if (capability) {
    metric('xen_pmem_hypervisor_accepts_reports', 'gauge', 'Whether the hypervisor implements a way to report pmem: 1 yes, 0 no.', [[{}, capability.kind === 'unsupported' ? '0' : '1']]);
  }
  const info: Record<string, string> = capability === null
    ? { capability: 'unknown' }
    : capability.kind === 'unsupported'
      ? { capability: 'unsupported', reason: capability.reason ?? '' }
      : { capability: capability.kind, xen_version: capability.xenVersion ?? '' };
  metric('xen_pmem_hypervisor_info', 'gauge', 'What the hypervisor was found to implement (unknown before the first question and in a dry run); always 1.', [[info, '1']]);
  if (view.lastDecisionAt) {
    metric('xen_pmem_last_decision_timestamp_seconds', 'gauge', 'When the daemon last decided a device, in seconds since the epoch.', [[{}, seconds(view.lastDecisionAt)]]);
  }
  return lines.join('\n') + '\n';
}
