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
import type { ByteRange, DaemonState, DeviceRecord, PhysicalLayout } from './records.js';

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
export function recordToJson(record: DeviceRecord, options: JsonOptions = {}): Record<string, unknown> {
  const json: Record<string, unknown> = {
    device: record.device, devPath: record.devPath, namespace: record.namespace, mode: record.mode,
    region: record.region, state: record.state, reason: record.reason, message: record.message, since: record.since,
  };
  if (record.nextAttempt) json.nextAttempt = record.nextAttempt;
  if (record.notes) json.notes = record.notes;
  if (record.layout) json.layout = layoutToJson(record.layout, options);
  if (record.interface) json.interface = record.interface;
  return json;
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

/** `xen-pmem status` for people. */
export function describeState(state: DaemonState, running: boolean): string {
  const lines = [
    running
      ? `xen-pmemd is running (pid ${state.pid}, since ${state.startedAt}${state.ready ? '' : ', still in coldplug'})`
      : `xen-pmemd is NOT running; last state written by pid ${state.pid} at ${state.updatedAt}:`,
  ];
  if (state.capability) lines.push(describeCapability(state.capability));
  if (state.devices.length === 0) lines.push('No pmem devices.');
  for (const record of state.devices) {
    lines.push('');
    lines.push(...describeRecord(record));
  }
  return lines.join('\n');
}

/** state.json: every BigInt a hex string, two-space indented, one trailing newline. */
export function stateToText(state: DaemonState): string {
  return storedJson(state, 2) + '\n';
}
