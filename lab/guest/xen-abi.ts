// The xen-abi scenario, inside the Dom0 of the patched hypervisor: sends the table of
// XENPF_pmem_add requests (xen-abi-rows.ts) through Debian's libxencall to the real hypervisor
// and, for comparison, through the test hypervisor (the stand-in the unit tests use), and looks
// at what the Dom0 can still do with an added region. The host judges the answers, together with
// the hypervisor's console lines (test/lab/patched-xen.test.ts).
//
// Environment (lab.env): LAB_STAND_IN, the path of the test hypervisor library.
// Result: xen-abi.json, rewritten after every phase.

import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { hex } from '../../src/core/units.js';
import { openXencall } from '../../src/native/libxencall.js';
import type { PfnRange } from '../../src/xen/interface.js';
import type { HypercallPort as XencallPort, HypercallResult } from '../../src/xen/ports.js';
import {
  encodePmemAdd,
  pmemAddProbe,
  XENVER_EXTRAVERSION,
  XENVER_EXTRAVERSION_BYTES,
  XENVER_VERSION,
  type PmemAddRequest,
} from '../../src/xen/platform-op.js';
import { mapIoFrames, type FrameMapping } from './privcmd-map.js';
import { log, phaseRunner, putResult, waitUntil } from './results.js';
import { abiRows } from './xen-abi-rows.js';

export const XEN_ABI_RESULT = 'xen-abi.json';
/** Written at the start of nv0's data range before the add, read back after it. */
export const DATA_MARKER = 'xen-pmem data ok';
const PAGE = 4096n;
const MiB = 1024n * 1024n;

export interface Answer {
  rc: number;
  errno: number;
  /** All 136 bytes as sent: the hypervisor wrote nothing back. */
  unchanged: boolean;
}

export interface RowResult {
  name: string;
  what: string;
  /** The six PFNs in hex (null for the probe, whose PFNs are all zero). */
  request: Record<keyof PmemAddRequest, string> | null;
  real: Answer;
  standIn: Answer;
  /** Regions the stand-in was told were added (those the real hypervisor accepted so far). */
  standInState: PfnRange[];
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

export interface XenAbiResult {
  phase: string;
  nvdimms: Record<'nv0' | 'nv1', NvdimmFacts> | null;
  ram: { spfn: string; epfn: string } | null;
  rows: RowResult[];
  version: { real: VersionAnswer; standIn: VersionAnswer } | null;
  /** nv0's frames around its reserved range, mapped as I/O frames before and after the add. */
  mappings: { before: MappingResult[]; after: MappingResult[] };
  /**
   * Frames above Xen's RAM that become valid with the add (max_page grows past them), mapped
   * afresh before and after it: the ACPI FACS, the first frame of the next page of page_infos
   * and the last frame of the RAM's last pdx group.
   */
  aboveRam: { before: MappingResult[]; after: MappingResult[] } | null;
  /** The marker read back through /dev/pmemN after the add. */
  dataAfterAdd: string | null;
  /** Every ACPI table read through sysfs: its firmware frames are above Xen's max_page. */
  acpi: { beforeAdd: AcpiRead[]; afterAdd: AcpiRead[]; afterDisable: AcpiRead[] };
  disable: { namespace: CommandResult; region: CommandResult } | null;
  /** Hypercalls after the region was disabled in the Dom0. */
  afterDisable: { version: VersionAnswer; probe: Answer } | null;
  failure?: { phase: string; message: string };
}

export interface MappingResult {
  label: string;
  frame: string;
  errno: number;
  firstBytes?: string;
}

export interface AcpiRead {
  table: string;
  bytes: number;
  sha256: string;
  error?: string;
}

export interface CommandResult {
  status: number | null;
  output: string;
}

function toHexRequest(req: PmemAddRequest): Record<keyof PmemAddRequest, string> {
  return {
    spfn: hex(req.spfn),
    epfn: hex(req.epfn),
    rsvSpfn: hex(req.rsvSpfn),
    rsvEpfn: hex(req.rsvEpfn),
    dataSpfn: hex(req.dataSpfn),
    dataEpfn: hex(req.dataEpfn),
  };
}

function answer(sent: Buffer, result: HypercallResult): Answer {
  return { rc: result.rc, errno: result.rc < 0 ? result.errno : 0, unchanged: result.after.equals(sent) };
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

/** The NVDIMM regions, told apart by size (nv0 256 MiB, nv1 512 MiB), with their disks. */
function nvdimms(): Record<'nv0' | 'nv1', NvdimmFacts> {
  const base = '/sys/bus/nd/devices';
  const found = readdirSync(base).filter((name) => /^region\d+$/.test(name)).map((region): NvdimmFacts => {
    const namespace = `namespace${region.slice('region'.length)}.0`;
    const blockDir = join(base, namespace, 'block');
    const device = existsSync(blockDir) ? readdirSync(blockDir)[0] ?? '' : '';
    const start = BigInt(readSysfs(join(base, region, 'resource')));
    const size = BigInt(readSysfs(join(base, region, 'size')));
    return { region, namespace, device, start: hex(start), size: hex(size), spfn: hex(start / PAGE), epfn: hex((start + size) / PAGE) };
  });
  const bySize = (bytes: bigint): NvdimmFacts => {
    const nvdimm = found.find((facts) => BigInt(facts.size) === bytes);
    if (!nvdimm) throw new Error(`no nd region of ${bytes} bytes (found: ${found.map((facts) => `${facts.region} ${facts.size}`).join(', ')})`);
    return nvdimm;
  };
  return { nv0: bySize(256n * MiB), nv1: bySize(512n * MiB) };
}

function pfnRange(facts: NvdimmFacts): PfnRange {
  return { spfn: BigInt(facts.spfn), epfn: BigInt(facts.epfn) };
}

/** The stand-in keeps the regions it accepted in TEST_XEN_STATE; it is told Xen's instead. */
function writeStandInState(path: string, regions: PfnRange[]): void {
  writeFileSync(path, regions.map((region) => `added ${region.spfn.toString(16)} ${region.epfn.toString(16)}\n`).join(''));
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

function pwriteMarker(device: string, offset: bigint): void {
  const fd = openSync(device, 'r+');
  try {
    const page = Buffer.alloc(4096);
    page.write(DATA_MARKER, 'latin1');
    writeSync(fd, page, 0, page.length, Number(offset));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function preadMarker(device: string, offset: bigint): string {
  const fd = openSync(device, 'r');
  try {
    const bytes = Buffer.alloc(DATA_MARKER.length);
    readSync(fd, bytes, 0, bytes.length, Number(offset));
    return bytes.toString('latin1');
  } finally {
    closeSync(fd);
  }
}

function command(args: string[]): CommandResult {
  const result = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() };
}

/** The FACS's frame, from the Dom0 kernel's ACPI lines: firmware puts it right above the RAM. */
function facsFrame(): bigint {
  const dmesg = command(['dmesg']).output;
  const match = /ACPI: FACS 0x([0-9A-Fa-f]+)/.exec(dmesg);
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

async function main(started: XenAbiResult[]): Promise<void> {
  const standInPath = process.env.LAB_STAND_IN;
  if (!standInPath) throw new Error('LAB_STAND_IN (the test hypervisor library) is not set');
  const result: XenAbiResult = {
    phase: 'start',
    nvdimms: null,
    ram: null,
    rows: [],
    version: null,
    mappings: { before: [], after: [] },
    aboveRam: null,
    dataAfterAdd: null,
    acpi: { beforeAdd: [], afterAdd: [], afterDisable: [] },
    disable: null,
    afterDisable: null,
  };
  started.push(result);
  const phase = phaseRunner(XEN_ABI_RESULT, result);

  const opened: { real?: XencallPort; standIn?: XencallPort; nv?: Record<'nv0' | 'nv1', NvdimmFacts> } = {};
  const statePath = '/run/xen-pmem-abi.standin-state';

  await phase('nvdimms', async () => {
    await waitUntil('two nd regions with their pmem disks', () => {
      try {
        const facts = nvdimms();
        return facts.nv0.device !== '' && facts.nv1.device !== '' && existsSync(`/dev/${facts.nv0.device}`);
      } catch {
        return false;
      }
    }, 60_000, 200);
    opened.nv = nvdimms();
    result.nvdimms = opened.nv;
    // 1 GiB into the RAM: Dom0's or Xen's heap, in any case memory Xen manages.
    result.ram = { spfn: hex(0x40000n), epfn: hex(0x50000n) };
  });

  await phase('ports', () => {
    const port = openXencall();
    if ('error' in port) throw new Error(`libxencall: ${port.message}`);
    opened.real = port;
    process.env.TEST_XEN_MODE = 'rfc';
    process.env.TEST_XEN_STATE = statePath;
    process.env.TEST_XEN_LOG = '/lab/results/stand-in.log';
    writeStandInState(statePath, []);
    const test = openXencall(standInPath);
    if ('error' in test) throw new Error(`the stand-in at ${standInPath}: ${test.message}`);
    opened.standIn = test;
  });
  const { real: realPort, standIn: standInPort, nv: facts } = opened;
  if (!realPort || !standInPort || !facts) return;
  const nv0 = pfnRange(facts.nv0);
  const rows = abiRows(nv0, pfnRange(facts.nv1), { spfn: 0x40000n, epfn: 0x50000n });
  const add0 = rows.find((row) => row.name === 'add-nv0')!.request!;
  const frameLabels = ['frame before the reserved range', 'first reserved frame', 'last reserved frame', 'first frame after the reserved range'];
  const frames = [add0.rsvSpfn - 1n, add0.rsvSpfn, add0.rsvEpfn - 1n, add0.rsvEpfn];
  const dataOffset = (add0.dataSpfn - add0.spfn) * PAGE;
  const facs = facsFrame();
  // 128 page_infos share a 4 KiB page of Xen's frame table; a pdx group is 0x10000 frames.
  const aboveRamLabels = ['ACPI FACS', 'first frame of the next page of page_infos', 'last frame of the pdx group'];
  const aboveRamFrames = [facs, (facs + 127n) & ~127n, facs | 0xffffn];

  await phase('before-add', () => {
    pwriteMarker(`/dev/${facts.nv0.device}`, dataOffset);
    result.mappings.before = labelled(mapIoFrames(frames), frameLabels);
    result.aboveRam = { before: labelled(mapIoFrames(aboveRamFrames), aboveRamLabels), after: [] };
    result.acpi.beforeAdd = readAcpiTables();
  });

  const accepted: PfnRange[] = [];
  await phase('rows', async () => {
    for (const row of rows) {
      const bytes = row.request === null ? pmemAddProbe() : encodePmemAdd(row.request);
      log(`row ${row.name}: ${row.what}`);
      const realAnswer = answer(bytes, await realPort.platformOp(bytes));
      const told = [...accepted];
      writeStandInState(statePath, told);
      const standInAnswer = answer(bytes, await standInPort.platformOp(bytes));
      if (realAnswer.rc === 0 && row.request !== null) accepted.push({ spfn: row.request.spfn, epfn: row.request.epfn });
      result.rows.push({
        name: row.name,
        what: row.what,
        request: row.request === null ? null : toHexRequest(row.request),
        real: realAnswer,
        standIn: standInAnswer,
        standInState: told,
      });
      log(`row ${row.name}: real rc ${realAnswer.rc} errno ${realAnswer.errno}, stand-in rc ${standInAnswer.rc} errno ${standInAnswer.errno}`);
      if (row.name === 'add-nv0') {
        result.mappings.after = labelled(mapIoFrames(frames), frameLabels);
        result.aboveRam!.after = labelled(mapIoFrames(aboveRamFrames), aboveRamLabels);
        result.dataAfterAdd = preadMarker(`/dev/${facts.nv0.device}`, dataOffset);
        result.acpi.afterAdd = readAcpiTables();
      }
    }
  });

  await phase('version', async () => {
    result.version = { real: await version(realPort), standIn: await version(standInPort) };
  });

  await phase('disable', async () => {
    result.disable = {
      namespace: command(['ndctl', 'disable-namespace', facts.nv0.namespace]),
      region: command(['ndctl', 'disable-region', facts.nv0.region]),
    };
    const probe = pmemAddProbe();
    result.afterDisable = { version: await version(realPort), probe: answer(probe, await realPort.platformOp(probe)) };
    result.acpi.afterDisable = readAcpiTables();
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
