// The patched hypervisor (hypervisor/, built by lab/hypervisor.ts) in the lab: one boot with two
// blank NVDIMMs (nv0 256 MiB, nv1 512 MiB) and no daemon. Inside the Dom0 the guest program
// (lab/guest/xen-abi.ts) sends a table of XENPF_pmem_add requests through Debian's libxencall to
// the real hypervisor and the same table through the test hypervisor, the stand-in the unit tests
// and benchmarks use. Here each row's two answers are compared, and each row's console line from
// Xen (serial log) is compared with what checkPmemAddLikeXen says about the request.
//
// Where the two must differ, the row says so and the real answer is asserted on its own:
//   - reserved-exhausted: the tables need more 2 MiB chunks than the reserved range holds
//     (ENOMEM); the stand-in does not model Xen's tables;
//   - beyond-frame-table, overlaps-known-memory: checks only the hypervisor can make;
//   - xen_version: the stand-in calls itself 4.8-pmem-rfc.
//
// The VM has 2000 MiB of RAM, not the lab's usual 2048: Xen's frame table then ends inside a
// page for the frames above its max_page (ACPI tables live there), so the add exercises both
// ways Xen makes those frames valid (page_infos it had mapped, and pages it must map).

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { hex, MiB, PAGE_BYTES } from '../../src/core/units.js';
import { plannedReservedBytes, xenMinimumReservedPages } from '../../src/core/xen-sizing.js';
import type { PfnRange } from '../../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../../src/xen/interfaces/pmem-add.js';
import { describePmemAdd, type PmemAddRequest } from '../../src/xen/platform-op.js';
import { DATA_MARKER, XEN_ABI_RESULT, type RowResult, type XenAbiResult } from '../../lab/guest/xen-abi.js';
import { preparePatchedXen, XEN_VENDOR_VERSION } from '../../lab/hypervisor.js';
import { stderrProgress } from '../../lab/progress.js';
import { readRun, type ScenarioRun } from '../../lab/scenario-run.js';
import { readImageBytes } from '../../lab/nvdimm-images.js';
import { withLab } from '../../lab/vm.js';
import { parseXenPmemLines, type XenPmemLine } from '../../lab/xen-console.js';
import { bootView, chunkTotal, CHUNK_PAGES, tablesNeeded, usableChunks, viewAfter, type XenTablesView } from '../../lab/xen-tables.js';
import { buildTestHypervisor } from '../hypervisor/build.js';
import { labAvailability } from './lab-available.js';
import { guestFailure } from './scenario-asserts.js';

const EINVAL = 22;
const ENOMEM = 12;
const EPERM = 1;
/** Rows whose real answer is expected to differ from the stand-in's, and why. */
const EXPECTED_DIFFERENCES: Record<string, string> = {
  'beyond-frame-table': 'only Xen knows the size of its frame table',
  'overlaps-known-memory': 'only Xen knows which frames are RAM',
};
const RESERVED_EXHAUSTED = 'the stand-in does not model Xen\'s tables: real Xen ran out of 2 MiB chunks (ENOMEM)';

interface Collected extends ScenarioRun<XenAbiResult> {
  serial: string;
}

function request(row: RowResult): PmemAddRequest {
  const hexRequest = row.request;
  if (hexRequest === null) return { spfn: 0n, epfn: 0n, rsvSpfn: 0n, rsvEpfn: 0n, dataSpfn: 0n, dataEpfn: 0n };
  return {
    spfn: BigInt(hexRequest.spfn),
    epfn: BigInt(hexRequest.epfn),
    rsvSpfn: BigInt(hexRequest.rsvSpfn),
    rsvEpfn: BigInt(hexRequest.rsvEpfn),
    dataSpfn: BigInt(hexRequest.dataSpfn),
    dataEpfn: BigInt(hexRequest.dataEpfn),
  };
}

/** Xen's usable RAM at boot, from its `Xen-e820 RAM map` lines. */
function ramFromSerial(serial: string): PfnRange[] {
  const ranges: PfnRange[] = [];
  for (const match of serial.matchAll(/\(XEN\)\s+\[([0-9a-f]{16}), ([0-9a-f]{16})\] \(usable\)/g)) {
    ranges.push({ spfn: BigInt(`0x${match[1]}`) / PAGE_BYTES, epfn: (BigInt(`0x${match[2]}`) + 1n) / PAGE_BYTES });
  }
  return ranges;
}

type Expected =
  | { kind: 'added'; chunks: ReturnType<typeof tablesNeeded> }
  | { kind: 'refused'; errno: number; rule: number | null; reason: string; message?: string };

test('patched Xen: XENPF_pmem_add row by row against the stand-in, and the Dom0 after an add', { timeout: 900_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const log = stderrProgress('patched-xen');
  const standIn = buildTestHypervisor();
  const xen = await preparePatchedXen({ log });
  t.diagnostic(`hypervisor ${xen.xenImage} (xen ${xen.sourceVersion}, series ${xen.seriesHash.slice(0, 12)}, ${xen.cached ? 'cached' : `built in ${xen.buildSeconds} s`})`);

  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
  const image = (id: string) => join(images, `${id}.img`);
  const startedAt = Date.now();
  let collected: Collected;
  let imageBytes: { nv0Tables: Buffer; nv1Tables: Buffer } | null = null;
  try {
    collected = await withLab({
      artifacts: availability.artifacts,
      xenImage: xen.xenImage,
      nvdimms: [
        { id: 'nv0', imagePath: image('nv0'), sizeBytes: 256n * MiB },
        { id: 'nv1', imagePath: image('nv1'), sizeBytes: 512n * MiB },
      ],
      scenario: 'xen-abi',
      memoryMiB: 2000,
      xenArgs: ['loglvl=all', 'guest_loglvl=all'],
      env: { LAB_STAND_IN: standIn },
      timeoutMs: 300_000,
      log,
    }, async (lab) => {
      await lab.waitForFile('done');
      return { ...(await readRun<XenAbiResult>(lab, XEN_ABI_RESULT)), serial: await readFile(lab.serialLogPath, 'utf8') };
    });
    // What Xen wrote into the reserved areas went through QEMU's file-backed NVDIMMs (shared
    // mappings of the image files); withLab has stopped QEMU by now.
    imageBytes = {
      nv0Tables: readImageBytes(image('nv0'), 2n * MiB, Number(4n * MiB)),
      nv1Tables: readImageBytes(image('nv1'), 2n * MiB, Number(4n * MiB)),
    };
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  t.diagnostic(`whole run ${((Date.now() - startedAt) / 1000).toFixed(1)} s; guest phase: ${collected.result?.phase ?? 'none'}; ${collected.phases}`);
  const got = collected.result;
  const lines = parseXenPmemLines(collected.serial);

  await t.test('the guest scenario ran to its end', () => {
    assert.equal(collected.exitStatus, '0', guestFailure(collected));
    assert.equal(got?.phase, 'done', guestFailure(collected));
  });
  if (got === null || got.phase !== 'done') return;

  await t.test('Xen printed one pmem console line per pmem_add, with the PFNs that were sent', () => {
    // Every row, then the probe after the region was disabled in the Dom0.
    assert.equal(lines.length, got.rows.length + 1, lines.map((line) => line.line).join('\n'));
    got.rows.forEach((row, index) => {
      assert.equal(describePmemAdd(lines[index]!.request), describePmemAdd(request(row)), `row ${row.name}: ${lines[index]!.line}`);
    });
    assert.ok(!lines.some((line) => line.kind === 'refused' && line.reason === 'unparsed'), 'a pmem line did not parse');
  });

  // The expected answer of every row: the shared rules first (what the stand-in implements),
  // then the hypervisor's own checks, then its table accounting on a model of its frame table.
  let view: XenTablesView = bootView(ramFromSerial(collected.serial));
  const accepted: PfnRange[] = [];
  const consumption: string[] = [];
  for (const [index, row] of got.rows.entries()) {
    const req = request(row);
    const shared = checkPmemAddLikeXen(req, accepted);
    let expected: Expected;
    let difference: string | null = null;
    if (!shared.ok) {
      expected = { kind: 'refused', errno: EINVAL, rule: shared.rule, reason: shared.reason, message: shared.message };
    } else if (row.name in EXPECTED_DIFFERENCES) {
      expected = { kind: 'refused', errno: EINVAL, rule: null, reason: row.name };
      difference = EXPECTED_DIFFERENCES[row.name]!;
    } else {
      const chunks = tablesNeeded(view, req);
      if (BigInt(chunkTotal(chunks)) > usableChunks(req.rsvSpfn, req.rsvEpfn)) {
        expected = { kind: 'refused', errno: ENOMEM, rule: null, reason: 'reserved-exhausted' };
        difference = RESERVED_EXHAUSTED;
      } else {
        expected = { kind: 'added', chunks };
      }
    }
    const line = lines[index];

    await t.test(`row ${row.name}: ${row.what}${difference ? ` (differs on purpose: ${difference})` : ''}`, () => {
      assert.ok(line, 'no console line');
      // The stand-in answers by the shared rules alone.
      assert.deepEqual(
        [row.standIn.rc, row.standIn.errno, row.standIn.unchanged],
        shared.ok ? [0, 0, true] : [-1, EINVAL, true],
        'the stand-in did not answer by checkPmemAddLikeXen',
      );
      assert.equal(row.real.unchanged, true, 'the hypervisor wrote into the request');
      if (expected.kind === 'added') {
        assert.deepEqual([row.real.rc, row.real.errno], [0, 0], line.line);
        assert.deepEqual([row.real.rc, row.real.errno], [row.standIn.rc, row.standIn.errno]);
        assert.equal(line.kind, 'added', line.line);
        if (line.kind !== 'added') return;
        assert.deepEqual(line.chunks, expected.chunks, 'the chunks Xen took differ from its own accounting as modelled');
        assert.equal(line.reservedPagesUsed, BigInt(chunkTotal(expected.chunks)) * CHUNK_PAGES);
        assert.equal(line.reservedPages, req.rsvEpfn - req.rsvSpfn);
      } else {
        assert.deepEqual([row.real.rc, row.real.errno], [-1, expected.errno], line.line);
        assert.equal(line.kind, 'refused', line.line);
        if (line.kind !== 'refused') return;
        assert.equal(line.errno, expected.errno === ENOMEM ? 'ENOMEM' : 'EINVAL');
        assert.equal(line.rule, expected.rule, line.line);
        assert.equal(line.reason, expected.reason, line.line);
        if (expected.message !== undefined) assert.equal(line.message, expected.message, 'Xen\'s sentence differs from checkPmemAddLikeXen\'s');
        if (difference === null) assert.deepEqual([row.real.rc, row.real.errno], [row.standIn.rc, row.standIn.errno]);
        else assert.notDeepEqual([row.real.rc, row.real.errno], [row.standIn.rc, row.standIn.errno], 'expected the stand-in to differ here');
      }
    });

    if (line?.kind === 'added') {
      const total = req.epfn - req.spfn;
      consumption.push(`${row.name}: ${hex(total)} pages, reserved ${hex(req.rsvEpfn - req.rsvSpfn)}, Xen used ${hex(line.reservedPagesUsed)} (frame table ${line.chunks.frameTable}, M2P ${line.chunks.m2p}, compat ${line.chunks.compatM2p}); planner ${hex(plannedReservedBytes(total) / PAGE_BYTES)}, rule-4 minimum ${hex(xenMinimumReservedPages(total))}`);
    } else if (line?.kind === 'refused' && line.reason === 'reserved-exhausted') {
      consumption.push(`${row.name}: ${line.message}`);
    }
    if (row.real.rc === 0) {
      accepted.push({ spfn: req.spfn, epfn: req.epfn });
      view = viewAfter(view, req);
    }
  }
  t.diagnostic(`reserved pages: ${consumption.join(' | ')}`);

  await t.test('xen_version: the pmem build says so in its extraversion (the stand-in calls itself 4.8-pmem-rfc)', () => {
    const version = got.version!;
    assert.deepEqual([version.real.major, version.real.minor], [4, 17]);
    assert.ok(version.real.extraversion.endsWith(XEN_VENDOR_VERSION), version.real.extraversion);
    assert.equal(version.standIn.extraversion, '-pmem-rfc');
  });

  const add0 = request(got.rows.find((row) => row.name === 'add-nv0')!);

  await t.test('after the add, Dom0 may map the region but not its reserved range (iomem_deny_access, inclusive end)', () => {
    const errnos = (mappings: XenAbiResult['mappings']['after']) => Object.fromEntries(mappings.map((mapping) => [mapping.label, mapping.errno]));
    assert.deepEqual(errnos(got.mappings.before), {
      'frame before the reserved range': 0, 'first reserved frame': 0, 'last reserved frame': 0, 'first frame after the reserved range': 0,
    }, 'before the add every frame of the region is Dom0\'s to map');
    assert.deepEqual(errnos(got.mappings.after), {
      'frame before the reserved range': 0, 'first reserved frame': EPERM, 'last reserved frame': EPERM, 'first frame after the reserved range': 0,
    });
    const first = got.mappings.after.find((mapping) => mapping.label === 'first frame after the reserved range');
    assert.equal(Buffer.from(first?.firstBytes ?? '', 'hex').toString('latin1'), DATA_MARKER);
  });

  await t.test('frames above Xen\'s RAM that the add makes valid map and unmap as I/O frames (privcmd, fresh mappings)', () => {
    const above = got.aboveRam;
    assert.ok(above);
    for (const [when, mappings] of [['before', above.before], ['after', above.after]] as const) {
      assert.deepEqual(mappings.map((mapping) => mapping.errno), [0, 0, 0], `${when} the add: ${JSON.stringify(mappings)}`);
      assert.equal(Buffer.from(mappings[0]!.firstBytes ?? '', 'hex').subarray(0, 4).toString('latin1'), 'FACS', `${when} the add`);
    }
    assert.deepEqual(above.after.map((mapping) => mapping.firstBytes), above.before.map((mapping) => mapping.firstBytes));
  });

  await t.test('after the add, Dom0 still reads the data area through its pmem disk', () => {
    assert.equal(got.dataAfterAdd, DATA_MARKER);
  });

  await t.test('Dom0\'s ACPI tables (mapped since boot, in frames the add makes valid) read the same before, after the add and after the disable', () => {
    assert.ok(got.acpi.beforeAdd.length >= 5, JSON.stringify(got.acpi.beforeAdd));
    assert.deepEqual(got.acpi.afterAdd, got.acpi.beforeAdd);
    assert.deepEqual(got.acpi.afterDisable, got.acpi.beforeAdd);
  });

  await t.test('ndctl disable-namespace and disable-region of the added region: Xen survives and still answers', () => {
    assert.equal(got.disable?.namespace.status, 0, got.disable?.namespace.output);
    assert.equal(got.disable?.region.status, 0, got.disable?.region.output);
    const after = got.afterDisable!;
    assert.deepEqual([after.version.major, after.version.minor, after.version.extraversion], [got.version!.real.major, got.version!.real.minor, got.version!.real.extraversion]);
    assert.deepEqual(after.probe, { rc: -1, errno: EINVAL, unchanged: true });
    const last = lines.at(-1);
    assert.equal(last?.kind === 'refused' ? last.reason : last?.kind, 'empty-range');
    const trouble = collected.serial.split('\n').filter((line) => /Panic|FATAL|Xen BUG|Assertion|pmem: the tables took/.test(line));
    assert.deepEqual(trouble, []);
  });

  await t.test('the reserved areas hold Xen\'s tables: I/O page_infos, then M2P entries all invalid (host, image files)', () => {
    assert.ok(imageBytes);
    assert.equal(add0.rsvSpfn - add0.spfn, 0x200n, 'the planner puts the reserved area 2 MiB in');
    const pageInfos = (bytes: Buffer, count: number) => {
      const owners = new Set<number>();
      for (let i = 0; i < count; i++) {
        const entry = bytes.subarray(i * 32, i * 32 + 32);
        assert.equal(entry.readBigUInt64LE(8), (1n << 63n) | 1n, `page_info ${i}: count_info is not PGC_allocated | 1`);
        assert.equal(entry.readBigUInt64LE(16), (7n << 61n) | (1n << 58n) | 1n, `page_info ${i}: type_info is not PGT_writable_page | PGT_validated | 1`);
        owners.add(entry.readUInt32LE(24));
      }
      return owners;
    };
    // nv0: chunk 0 is the frame table of its pdx group (65,536 page_infos), chunk 1 its M2P slot.
    const owners = pageInfos(imageBytes.nv0Tables.subarray(0, Number(2n * MiB)), 65536);
    assert.equal(owners.size, 1, 'every frame has the same owner (dom_io)');
    assert.ok(!owners.has(0));
    assert.ok(imageBytes.nv0Tables.subarray(Number(2n * MiB)).every((byte) => byte === 0xff), 'the M2P chunk is not all INVALID_M2P_ENTRY');
    const nv1Added = lines.find((line) => line.kind === 'added' && line.request.spfn !== add0.spfn);
    assert.ok(nv1Added?.kind === 'added');
    // nv1 shares nv0's M2P slot: its chunks are frame table only.
    assert.equal(nv1Added.chunks.m2p, 0);
    const nv1Owners = pageInfos(imageBytes.nv1Tables, nv1Added.chunks.frameTable * 65536);
    assert.deepEqual([...nv1Owners], [...owners]);
  });
});
