// The xen-abi scenario, inside the Dom0 of the patched hypervisor: sends the table of XENPF_pmem
// requests (xen-abi-rows.ts) through Debian's libxencall to the real hypervisor and, for
// comparison, through the test hypervisor (the stand-in the unit tests use), then tries every
// route the Dom0 has to a region Xen took over. The host judges the answers, together with the
// hypervisor's console lines and the tables Xen left in the NVDIMM's image
// (test/lab/patched-xen.test.ts).
//
// Environment (lab.env): LAB_STAND_IN, the path of the test hypervisor library.
// Result: xen-abi.json, rewritten after every phase.

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, realpathSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { hex } from '../../src/core/units.js';
import { openXencall } from '../../src/native/libxencall.js';
import type { PfnRange, PmemReport } from '../../src/xen/interface.js';
import type { HypercallPort as XencallPort, HypercallResult } from '../../src/xen/ports.js';
import {
  decodeHeader,
  decodeOwner,
  decodeRegion,
  encodeAdd,
  encodeOwner,
  encodeRegion,
  encodeSubOp,
  PROBE_INDEX,
  reasonCodeOf,
  XENVER_EXTRAVERSION,
  XENVER_EXTRAVERSION_BYTES,
  XENVER_VERSION,
} from '../../src/xen/xenpf-pmem.js';
import { iomemPermission } from './libxenctrl.js';
import { mapFrames, type FrameMapping } from './privcmd-map.js';
import { log, phaseRunner, putResult, waitUntil } from './results.js';
import { checkpoint, createGuest, destroyGuest, restoreCheckpoint, saveAndRestore, startToolstack, type PvGuestStep } from './pv-guest.js';
import { hostileRequests, parseIomem } from '../hostile-requests.js';
import { abiRows, type AbiRequest } from './xen-abi-rows.js';

export const XEN_ABI_RESULT = 'xen-abi.json';
const PAGE = 4096n;
const MiB = 1024n * 1024n;
/** `domid_t` of dom_io (I/O frames) and dom_xen (what Xen shares with privileged guests). */
const DOMID_IO = 0x7ff1;
const DOMID_XEN = 0x7ff2;
/** XENPF_mem_hotadd and the offset of its fields in the platform op. */
const XENPF_MEM_HOTADD = 59;

export interface Answer {
  rc: number;
  /** The errno's name: OK, EINVAL, ENOSPC, … */
  errno: string;
  /** XENPF_pmem's answer header: abi and the reason code (null for another op, or none written). */
  abi: number | null;
  reason: string | null;
  /** What the region and owner queries said, in hex. */
  region?: { nrRegions: number; layout: Record<keyof PmemReport, string>; chunks: [number, number, number]; freeFrames: string };
  owner?: { spfn: string; epfn: string; domid: number };
}

export interface RowResult {
  name: string;
  real: Answer;
  standIn: Answer;
}

export interface NvdimmFacts {
  region: string;
  namespace: string;
  device: string;
  /** Physical range of the region, from sysfs. */
  start: string;
  size: string;
  spfn: string;
  epfn: string;
}

export interface VersionAnswer {
  major: number;
  minor: number;
  extraversion: string;
}

export interface MappingResult {
  label: string;
  frame: string;
  errno: number;
  firstBytes?: string;
}

export interface RouteResults {
  /** privcmd with DOMID_IO, each frame of nv0 that matters: what Xen answered. */
  ioFrames: MappingResult[];
  /** privcmd with DOMID_XEN: the M2P chunk (shared read-only) and the frame table's (not). */
  xenFrames: MappingResult[];
  /** /dev/mem read of the first reserved frame. */
  devMemRead: { ok: boolean; error?: string };
  /** nv0's block device after the add: the driver was unbound. */
  blockDevicePresent: boolean;
  /** XEN_DOMCTL_iomem_permission for the Dom0 itself over nv0, before any add and after. */
  iomemPermission: { before: string; after: string };
  /** Binding nv0's namespace again while the BTT seed claims it. */
  rebind: { claimed: boolean; bindError: string | null; blockDevicePresent: boolean };
}

export interface XenAbiResult {
  phase: string;
  nvdimms: Record<'nv0' | 'nv1', NvdimmFacts> | null;
  /** The ranges the rows try that are not pmem, in hex. */
  ranges: Record<'ram' | 'pciWindow' | 'hotplugHole', { spfn: string; epfn: string }> | null;
  rows: RowResult[];
  /** Frames above Xen's RAM that become valid with the add, mapped as I/O frames before and after. */
  aboveRam: { before: MappingResult[]; after: MappingResult[] } | null;
  routes: RouteResults | null;
  /** Every ACPI table read through sysfs, before the adds and after the routes. */
  acpi: { before: AcpiRead[]; after: AcpiRead[] };
  version: { real: VersionAnswer; standIn: VersionAnswer } | null;
  /** The probe and xen_version once every route was tried: Xen and the Dom0 still answer. */
  afterRoutes: { version: VersionAnswer; probe: Answer } | null;
  /**
   * A PV DomU saved and restored before the adds, after nv0's (which brings an M2P slot) and after
   * nv1's (which does not), and restored from a checkpoint taken before the adds.
   */
  /** Generated requests sent once Xen holds every pmem range: none may add anything. */
  hostile?: HostileResult;
  pvGuest?: Partial<Record<'toolstack' | 'create' | 'before' | 'checkpoint' | 'afterSlot' | 'afterNoSlot' | 'fromCheckpoint', PvGuestStep>>;
  failure?: { phase: string; message: string };
}

export interface HostileResult {
  seed: number;
  sent: number;
  ms: number;
  /** Requests per kind, and answers by errno and reason (`EINVAL not-pmem`, `OK`). */
  byKind: Record<string, number>;
  byAnswer: Record<string, number>;
  /** Adds (and sub-operations 1 and 4) Xen answered with success: each a finding. */
  accepted: Array<{ kind: string; target: string; request: string }>;
  /** Answers to XENPF_pmem requests without the ABI mark or with a reason Xen's table lacks. */
  unreadable: Array<{ kind: string; request: string; answer: string }>;
}

export interface AcpiRead {
  table: string;
  bytes: number;
  sha256: string;
  error?: string;
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 7: 'E2BIG', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 22: 'EINVAL', 28: 'ENOSPC', 38: 'ENOSYS', 95: 'EOPNOTSUPP',
};

function answer(request: AbiRequest, result: HypercallResult): Answer {
  const errno = result.rc >= 0 ? 'OK' : ERRNO_NAMES[result.errno] ?? `errno ${result.errno}`;
  const pmem = request.kind !== 'mem-hotadd' && result.after.length >= 16;
  const header = pmem ? decodeHeader(result.after) : null;
  const written = header !== null && header.abi !== 0;
  const out: Answer = { rc: result.rc, errno, abi: written ? header.abi : null, reason: written ? reasonCodeOf(header.reason) : null };
  if (request.kind === 'region' && written) {
    const region = decodeRegion(result.after);
    const layout = Object.fromEntries(Object.entries(region.layout).map(([key, value]) => [key, hex(value as bigint)])) as Record<keyof PmemReport, string>;
    out.region = { nrRegions: region.nrRegions, layout, chunks: [region.frameTableChunks, region.m2pChunks, region.compatM2pChunks], freeFrames: hex(region.freeFrames) };
  }
  if (request.kind === 'owner' && result.rc === 0) {
    const owner = decodeOwner(result.after);
    out.owner = { spfn: hex(owner.spfn), epfn: hex(owner.epfn), domid: owner.domid };
  }
  return out;
}

function encode(request: AbiRequest): Buffer {
  switch (request.kind) {
    case 'add': return encodeAdd(request.report);
    case 'probe': return encodeRegion(PROBE_INDEX);
    case 'sub-op': return encodeSubOp(request.sub);
    case 'region': return encodeRegion(request.index);
    case 'owner': return encodeOwner(request.pfn);
    case 'mem-hotadd': {
      const bytes = encodeSubOp(0);
      bytes.fill(0, 8);
      bytes.writeUInt32LE(XENPF_MEM_HOTADD, 0);
      bytes.writeBigUInt64LE(request.range.spfn, 8);
      bytes.writeBigUInt64LE(request.range.epfn, 16);
      return bytes;
    }
  }
}

async function version(port: XencallPort): Promise<VersionAnswer> {
  const number = await port.xenVersion(XENVER_VERSION, 0);
  const extra = await port.xenVersion(XENVER_EXTRAVERSION, XENVER_EXTRAVERSION_BYTES);
  const end = extra.after.indexOf(0);
  return {
    major: number.rc >>> 16,
    minor: number.rc & 0xffff,
    extraversion: extra.rc < 0 ? `(errno ${extra.errno})` : extra.after.subarray(0, end < 0 ? undefined : end).toString('latin1'),
  };
}

function readSysfs(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

const ND = '/sys/bus/nd/devices';

/** The NVDIMM regions, told apart by size (nv0 256 MiB, nv1 512 MiB), with their disks. */
function nvdimms(): Record<'nv0' | 'nv1', NvdimmFacts> {
  const found = readdirSync(ND).filter((name) => /^region\d+$/.test(name)).map((region): NvdimmFacts => {
    const namespace = `namespace${region.slice('region'.length)}.0`;
    const blockDir = join(ND, namespace, 'block');
    const device = existsSync(blockDir) ? readdirSync(blockDir)[0] ?? '' : '';
    const start = BigInt(readSysfs(join(ND, region, 'resource')));
    const size = BigInt(readSysfs(join(ND, region, 'size')));
    return { region, namespace, device, start: hex(start), size: hex(size), spfn: hex(start / PAGE), epfn: hex((start + size) / PAGE) };
  });
  const bySize = (bytes: bigint): NvdimmFacts => {
    const nvdimm = found.find((facts) => BigInt(facts.size) === bytes);
    if (!nvdimm) throw new Error(`no nd region of ${bytes} bytes (found: ${found.map((facts) => `${facts.region} ${facts.size}`).join(', ')})`);
    return nvdimm;
  };
  return { nv0: bySize(256n * MiB), nv1: bySize(512n * MiB) };
}

function pfnRange(facts: { spfn: string; epfn: string }): PfnRange {
  return { spfn: BigInt(facts.spfn), epfn: BigInt(facts.epfn) };
}

/** Unbinds a namespace's driver, as xen-pmemd does before it reports. */
function unbind(facts: NvdimmFacts): void {
  const device = join(ND, facts.namespace);
  const driver = realpathSync(join(device, 'driver'));
  writeFileSync(join(driver, 'unbind'), facts.namespace);
}

/**
 * A frame range of the PCI MMIO window, from the Dom0's /proc/iomem: 64 MiB of the first PCI Bus
 * window below 4 GiB that holds them (it starts right above the RAM).
 */
function pciWindow(): PfnRange {
  const wanted = 0x4000n;
  for (const entry of readFileSync('/proc/iomem', 'utf8').split('\n')) {
    const match = /^([0-9a-f]+)-([0-9a-f]+) : PCI Bus/.exec(entry);
    if (!match) continue;
    const start = BigInt(`0x${match[1]}`);
    const end = BigInt(`0x${match[2]}`) + 1n;
    const spfn = ((start / PAGE) + 0x1ffn) & ~0x1ffn;
    if (start >= 0x100000n && end <= 0x100000000n && spfn + wanted <= end / PAGE) return { spfn, epfn: spfn + wanted };
  }
  throw new Error('/proc/iomem shows no PCI Bus window of 64 MiB below 4 GiB');
}

function readAcpiTables(): AcpiRead[] {
  const dir = '/sys/firmware/acpi/tables';
  return readdirSync(dir).filter((name) => !['data', 'dynamic'].includes(name)).sort().map((table) => {
    try {
      const bytes = readFileSync(join(dir, table));
      return { table, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    } catch (error) {
      return { table, bytes: 0, sha256: '', error: (error as Error).message };
    }
  });
}

function command(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() };
}

/** The FACS's frame, from the Dom0 kernel's ACPI lines: firmware puts it right above the RAM. */
function facsFrame(): bigint {
  const match = /ACPI: FACS 0x([0-9A-Fa-f]+)/.exec(command(['dmesg']).output);
  if (!match) throw new Error('the kernel log names no ACPI FACS');
  return BigInt(`0x${match[1]}`) / PAGE;
}

function labelled(mappings: FrameMapping[], labels: string[]): MappingResult[] {
  return mappings.map((mapping, i) => ({
    label: labels[i]!,
    frame: hex(mapping.frame),
    errno: mapping.errno,
    ...(mapping.firstBytes === undefined ? {} : { firstBytes: mapping.firstBytes }),
  }));
}

function devMemRead(frame: bigint): { ok: boolean; error?: string } {
  let fd = -1;
  try {
    fd = openSync('/dev/mem', 'r');
    readSync(fd, Buffer.alloc(16), 0, 16, Number(frame * PAGE));
    return { ok: true };
  } catch (error) {
    return { ok: false, error: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** The BTT seed claims the namespace (as xen-pmemd does after an add), then the driver is asked to bind it. */
function rebind(facts: NvdimmFacts): RouteResults['rebind'] {
  const seed = readdirSync(ND).find((name) => name.startsWith(`btt${facts.region.slice('region'.length)}.`));
  let claimed = false;
  if (seed) {
    try {
      writeFileSync(join(ND, seed, 'namespace'), facts.namespace);
      claimed = readSysfs(join(ND, facts.namespace, 'holder')) === seed;
    } catch {
      claimed = false;
    }
  }
  let bindError: string | null = null;
  try {
    writeFileSync('/sys/bus/nd/drivers/nd_pmem/bind', facts.namespace);
  } catch (error) {
    bindError = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
  return { claimed, bindError, blockDevicePresent: existsSync(join(ND, facts.namespace, 'block')) };
}

async function main(started: XenAbiResult[]): Promise<void> {
  const standInPath = process.env.LAB_STAND_IN;
  if (!standInPath) throw new Error('LAB_STAND_IN (the test hypervisor library) is not set');
  const result: XenAbiResult = {
    phase: 'start', nvdimms: null, ranges: null, rows: [], aboveRam: null, routes: null,
    acpi: { before: [], after: [] }, version: null, afterRoutes: null,
  };
  started.push(result);
  const phase = phaseRunner(XEN_ABI_RESULT, result);
  const opened: { real?: XencallPort; standIn?: XencallPort; nv?: Record<'nv0' | 'nv1', NvdimmFacts> } = {};

  await phase('nvdimms', async () => {
    await waitUntil('two nd regions with their pmem disks', () => {
      try {
        const facts = nvdimms();
        return facts.nv0.device !== '' && facts.nv1.device !== '' && existsSync(`/dev/${facts.nv0.device}`);
      } catch {
        return false;
      }
    }, 120_000, 200);
    opened.nv = nvdimms();
    result.nvdimms = opened.nv;
    // The hot-pluggable area starts at nv0 and has room for the scenario's 8 GiB of hotplug slots:
    // 4 GiB above nv0 nothing is plugged.
    const hole = BigInt(opened.nv.nv0.spfn) + 0x100000n;
    const inHex = (range: PfnRange) => ({ spfn: hex(range.spfn), epfn: hex(range.epfn) });
    result.ranges = { ram: inHex({ spfn: 0x40000n, epfn: 0x50000n }), pciWindow: inHex(pciWindow()), hotplugHole: inHex({ spfn: hole, epfn: hole + 0x10000n }) };
  });

  await phase('ports', () => {
    const port = openXencall();
    if (port.kind !== 'opened') throw new Error(`libxencall: ${port.message}`);
    opened.real = port.port;
    process.env.TEST_XEN_MODE = 'pmem';
    process.env.TEST_XEN_LOG = '/lab/results/stand-in.log';
    const test = openXencall(standInPath);
    if (test.kind !== 'opened') throw new Error(`the stand-in at ${standInPath}: ${test.message}`);
    opened.standIn = test.port;
  });
  const { real: realPort, standIn: standInPort, nv: facts } = opened;
  if (!realPort || !standInPort || !facts || !result.ranges) return;
  const { ram, pciWindow: window, hotplugHole } = result.ranges;
  const rows = abiRows(pfnRange(facts.nv0), pfnRange(facts.nv1), pfnRange(ram), pfnRange(window), pfnRange(hotplugHole));
  const add0 = rows.find((row) => row.name === 'add-nv0')!.request as { kind: 'add'; report: PmemReport };
  const facs = facsFrame();
  // 128 page_infos share a 4 KiB page of Xen's frame table; a pdx group is 0x10000 frames.
  const aboveRamLabels = ['ACPI FACS', 'first frame of the next page of page_infos', 'last frame of the pdx group'];
  const aboveRamFrames = [facs, (facs + 127n) & ~127n, facs | 0xffffn];

  const nv0 = pfnRange(facts.nv0);
  let iomemBefore = '';
  await phase('before', () => {
    result.aboveRam = { before: labelled(mapFrames(aboveRamFrames, DOMID_IO), aboveRamLabels), after: [] };
    iomemBefore = iomemPermission(0, nv0.spfn, nv0.epfn - nv0.spfn);
    result.acpi.before = readAcpiTables();
  });

  const pv: NonNullable<XenAbiResult['pvGuest']> = {};
  result.pvGuest = pv;
  let checkpointFile = '';
  await phase('pv-guest', async () => {
    const kernel = process.env.LAB_DOMU_KERNEL;
    const ramdisk = process.env.LAB_DOMU_RAMDISK;
    if (!kernel || !ramdisk) throw new Error('LAB_DOMU_KERNEL and LAB_DOMU_RAMDISK (the PV guest) are not set');
    pv.toolstack = startToolstack();
    if (!pv.toolstack.ok) return;
    pv.create = await createGuest(kernel, ramdisk);
    if (!pv.create.ok) return;
    pv.before = await saveAndRestore('before');
    const taken = checkpoint();
    pv.checkpoint = taken.step;
    checkpointFile = taken.file;
  });
  const guestRuns = (): boolean => Boolean(pv.before?.ok && pv.checkpoint?.ok);

  const accepted: PmemReport[] = [];
  await phase('rows', async () => {
    let told = 0;
    for (const row of rows) {
      if (row.unbindFirst) {
        log(`unbinding ${facts[row.unbindFirst].namespace} (${row.unbindFirst})`);
        unbind(facts[row.unbindFirst]);
      }
      const bytes = encode(row.request);
      log(`row ${row.name}: ${row.what}`);
      const real = answer(row.request, await realPort.platformOp(Buffer.from(bytes)));
      // The stand-in is told what Xen holds so far: a state file of its own for every row.
      process.env.TEST_XEN_STATE = `/run/xen-pmem-abi.stand-in-${told++}`;
      writeFileSync(process.env.TEST_XEN_STATE, accepted.map((r) => `added ${[r.spfn, r.epfn, r.rsvSpfn, r.rsvEpfn, r.dataSpfn, r.dataEpfn].map((v) => v.toString(16)).join(' ')}\n`).join(''));
      const standIn = answer(row.request, await standInPort.platformOp(Buffer.from(bytes)));
      if (real.rc === 0 && row.request.kind === 'add') accepted.push(row.request.report);
      result.rows.push({ name: row.name, real, standIn });
      log(`row ${row.name}: real ${real.errno} ${real.reason ?? ''}, stand-in ${standIn.errno} ${standIn.reason ?? ''}`);
      if (row.name === 'add-nv0') result.aboveRam!.after = labelled(mapFrames(aboveRamFrames, DOMID_IO), aboveRamLabels);
      if (row.name === 'add-nv0' && guestRuns()) pv.afterSlot = await saveAndRestore('after-slot');
      if (row.name === 'minimum-nv1' && guestRuns()) {
        pv.afterNoSlot = await saveAndRestore('after-no-slot');
        pv.fromCheckpoint = await restoreCheckpoint(checkpointFile);
      }
    }
    if (guestRuns()) destroyGuest();
  });

  await phase('hostile', async () => {
    const seed = Number(process.env.LAB_HOSTILE_SEED ?? '1');
    const count = Number(process.env.LAB_HOSTILE_COUNT ?? '0');
    const hostile: HostileResult = { seed, sent: 0, ms: 0, byKind: {}, byAnswer: {}, accepted: [], unreadable: [] };
    result.hostile = hostile;
    const started = Date.now();
    for (const { kind, target, request } of hostileRequests(parseIomem(readFileSync('/proc/iomem', 'utf8')), seed, count)) {
      const got = answer(request, await realPort.platformOp(encode(request)));
      hostile.sent++;
      hostile.byKind[kind] = (hostile.byKind[kind] ?? 0) + 1;
      const said = got.errno === 'OK' ? 'OK' : `${got.errno} ${got.reason ?? '(no reason)'}`;
      hostile.byAnswer[said] = (hostile.byAnswer[said] ?? 0) + 1;
      const shown = (): string => JSON.stringify(request, (_, value) => (typeof value === 'bigint' ? hex(value) : value));
      const adds = request.kind === 'add' || (request.kind === 'sub-op' && (request.sub === 1 || request.sub === 4));
      if (adds && got.rc >= 0) hostile.accepted.push({ kind, target, request: shown() });
      if (got.abi !== 1 || (got.reason ?? '').startsWith('xen-reason-')) hostile.unreadable.push({ kind, request: shown(), answer: JSON.stringify(got) });
    }
    hostile.ms = Date.now() - started;
    log(`hostile: ${hostile.sent} requests (seed ${seed}) in ${hostile.ms} ms, ${hostile.accepted.length} accepted`);
  });

  await phase('routes', () => {
    const report = add0.report;
    const region = result.rows.find((row) => row.name === 'region-0')?.real.region;
    const frameTableChunks = BigInt(region?.chunks[0] ?? 1);
    const poolStart = (report.rsvSpfn + 0x1ffn) & ~0x1ffn;
    const ioLabels = ['first frame of the region', 'last frame before the reserved range', 'first reserved frame', 'last reserved frame', 'first data frame', 'last frame of the region'];
    const ioFrames = [report.spfn, report.rsvSpfn - 1n, report.rsvSpfn, report.rsvEpfn - 1n, report.dataSpfn, report.epfn - 1n];
    result.routes = {
      ioFrames: labelled(mapFrames(ioFrames, DOMID_IO), ioLabels),
      xenFrames: labelled(mapFrames([poolStart + frameTableChunks * 0x200n, poolStart], DOMID_XEN), ['first M2P chunk', 'first frame table chunk']),
      devMemRead: devMemRead(report.rsvSpfn),
      iomemPermission: { before: iomemBefore, after: iomemPermission(0, nv0.spfn, nv0.epfn - nv0.spfn) },
      blockDevicePresent: existsSync(`/dev/${facts.nv0.device}`),
      rebind: rebind(facts.nv0),
    };
    result.acpi.after = readAcpiTables();
  });

  await phase('after', async () => {
    result.version = { real: await version(realPort), standIn: await version(standInPort) };
    const probe: AbiRequest = { kind: 'probe' };
    result.afterRoutes = { version: await version(realPort), probe: answer(probe, await realPort.platformOp(encode(probe))) };
  });

  result.phase = 'done';
  putResult(XEN_ABI_RESULT, result);
  realPort.close();
  standInPort.close();
}

// The host test imports the result types and constants; only a run as a program sends rows.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const started: XenAbiResult[] = [];
  try {
    await main(started);
  } catch (error) {
    const result = started[0];
    if (result) {
      result.failure = { phase: result.phase, message: (error as Error).stack ?? String(error) };
      putResult(XEN_ABI_RESULT, result);
    }
    throw error;
  }
}


