// The patched hypervisor (hypervisor/, built by lab/hypervisor.ts) in the lab, once per base: 4.20
// with a Debian 13 Dom0 and 4.17 with a Debian 12 Dom0. One boot with two NVDIMMs the Dom0's pmem
// driver binds (nv0 256 MiB, nv1 512 MiB) and no daemon. Inside the Dom0 the guest program
// (lab/guest/xen-abi.ts) sends the table of XENPF_pmem requests (lab/guest/xen-abi-rows.ts)
// through Debian's libxencall to the real hypervisor and the same table through the test
// hypervisor, the stand-in the unit tests and benchmarks use, then tries every route the Dom0 has
// to a region Xen took. Here each row's two answers are judged against the table, Xen's console
// line for each add against the row, and the bytes Xen left in nv0's reserved area against what
// its tables must hold.
//
// The 4.20 base needs Debian 13's Xen source (or a tree XEN_PMEM_XEN_SOURCE names); where neither
// can be had its run is skipped with the reason, and the 4.17 run, the same series ported, stands.
//
// The VM has 2000 MiB of RAM, not the lab's usual 2048: Xen's frame table then ends inside a page
// for the frames above its max_page (ACPI tables live there), and an add must leave those frames
// as they were.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';

import { MiB } from '../../src/core/units.js';
import type { PfnRange, PmemReport } from '../../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../../src/xen/interfaces/xenpf-pmem.js';
import { describeLayout, XENPF_PMEM_ABI } from '../../src/xen/xenpf-pmem.js';
import { LabUnavailableError } from '../../lab/errors.js';
import { abiRows, type AbiRow } from '../../lab/guest/xen-abi-rows.js';
import { XEN_ABI_RESULT, type Answer, type XenAbiResult } from '../../lab/guest/xen-abi.js';
import { prepareDomU } from '../../lab/domu.js';
import { dom0ForBase, preparePatchedXen, XEN_BASES, XEN_VENDOR_VERSION, type PatchedXen, type XenBase } from '../../lab/hypervisor.js';
import { readImageBytes } from '../../lab/nvdimm-images.js';
import { stderrProgress } from '../../lab/progress.js';
import { readRun, type ScenarioRun } from '../../lab/scenario-run.js';
import { withLab } from '../../lab/vm.js';
import { parseXenFirmwareRanges, parseXenPmemLines } from '../../lab/xen-console.js';
import { CHUNK_PAGES, chunkTotal, regionPageInfoProblems } from '../../lab/xen-tables.js';
import { buildTestHypervisor } from '../hypervisor/build.js';
import { labAvailability } from './lab-available.js';
import { guestFailure } from './scenario-asserts.js';
import { TEST_SEED, withSeed } from '../helpers/seed.js';
import { HOSTILE_KINDS } from '../../lab/hostile-requests.js';

/** Generated requests sent once Xen holds every pmem range; XEN_PMEM_HOSTILE_COUNT for more. */
const HOSTILE_COUNT = Number(process.env.XEN_PMEM_HOSTILE_COUNT ?? '10000');

const EBUSY = 16;
const CHUNK_BYTES = Number(CHUNK_PAGES) * 4096;

interface Collected extends ScenarioRun<XenAbiResult> {
  serial: string;
  /** nv0's reserved area from its image file once QEMU stopped: Xen's chunks, in the order it took them. */
  nv0Chunks: Buffer;
}

/** The part of an answer a row's expectation speaks of. */
function verdict(got: Answer): { errno: string; reason: string | null } {
  return { errno: got.errno, reason: got.reason === 'none' ? null : got.reason };
}

function report(facts: { spfn: string; epfn: string }): PfnRange {
  return { spfn: BigInt(facts.spfn), epfn: BigInt(facts.epfn) };
}

async function patchedXen(t: TestContext, base: XenBase): Promise<PatchedXen | null> {
  try {
    const xen = await preparePatchedXen({ base, log: stderrProgress(`patched-xen ${base}`) });
    if (xen.variant !== 'debian') t.diagnostic(`Xen built with the matrix's ${xen.variant} configuration: ${xen.xenImage}`);
    return xen;
  } catch (error) {
    if (error instanceof LabUnavailableError && error.reason === 'source-unavailable') {
      t.skip(error.message);
      return null;
    }
    throw error;
  }
}

for (const base of XEN_BASES) {
  test(`patched Xen ${base}: XENPF_pmem row by row against the stand-in, Xen's console, and every route the Dom0 has to a region Xen took`, { timeout: 1_800_000 }, async (t) => {
    const availability = await labAvailability();
    if ('skip' in availability) {
      t.skip(availability.skip);
      return;
    }
    const xen = await patchedXen(t, base);
    if (xen === null) return;
    const log = stderrProgress(`patched-xen ${base}`);
    t.diagnostic(`hypervisor ${xen.xenImage} (xen ${xen.sourceVersion}, series ${xen.seriesHash.slice(0, 12)}, ${xen.cached ? 'cached' : `built in ${xen.buildSeconds} s`})`);

    const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
    const nv0Image = join(images, 'nv0.img');
    const startedAt = Date.now();
    let collected: Collected;
    try {
      const domU = prepareDomU(availability.artifacts.releases[dom0ForBase(base)]);
      const run = await withLab({
        artifacts: availability.artifacts,
        dom0: dom0ForBase(base),
        xenImage: xen.xenImage,
        nvdimms: [
          { id: 'nv0', imagePath: nv0Image, sizeBytes: 256n * MiB },
          { id: 'nv1', imagePath: join(images, 'nv1.img'), sizeBytes: 512n * MiB },
        ],
        scenario: 'xen-abi',
        memoryMiB: 2000,
        xenArgs: [...xen.bootArgs],
        env: {
          LAB_STAND_IN: buildTestHypervisor(), LAB_DOMU_KERNEL: domU.kernel, LAB_DOMU_RAMDISK: domU.ramdisk,
          LAB_HOSTILE_SEED: String(TEST_SEED), LAB_HOSTILE_COUNT: String(HOSTILE_COUNT),
        },
        timeoutMs: 600_000,
        log,
      }, async (lab) => {
        await lab.waitForFile('done');
        return { ...(await readRun<XenAbiResult>(lab, XEN_ABI_RESULT)), serial: await readFile(lab.serialLogPath, 'utf8') };
      });
      // What Xen wrote into nv0's reserved area went through QEMU's file-backed NVDIMM (a shared
      // mapping of the image file); withLab has stopped QEMU by now. The planner puts the
      // reserved area 2 MiB in, on a chunk boundary: Xen's pool starts there.
      collected = { ...run, nv0Chunks: readImageBytes(nv0Image, 2n * MiB, 4 * CHUNK_BYTES) };
    } finally {
      await rm(images, { recursive: true, force: true });
    }
    t.diagnostic(`whole run ${((Date.now() - startedAt) / 1000).toFixed(1)} s; guest phase: ${collected.result?.phase ?? 'none'}; ${collected.phases}`);
    const got = collected.result;

    await t.test('the guest scenario ran to its end', () => {
      assert.equal(collected.exitStatus, '0', guestFailure(collected));
      assert.equal(got?.phase, 'done', guestFailure(collected));
    });
    if (got === null || got.phase !== 'done' || got.nvdimms === null || got.ranges === null) return;

    const { ram, pciWindow, hotplugHole } = got.ranges;
    const rows = abiRows(report(got.nvdimms.nv0), report(got.nvdimms.nv1), report(ram), report(pciWindow), report(hotplugHole));
    const lines = parseXenPmemLines(collected.serial);
    const addRows = rows.filter((row): row is AbiRow & { request: { kind: 'add'; report: PmemReport } } => row.request.kind === 'add');

    await t.test('Xen found both NVDIMMs in the firmware\'s NFIT at boot', () => {
      const nfit = parseXenFirmwareRanges(collected.serial).filter((range) => range.kind === 'nfit');
      for (const facts of [got.nvdimms!.nv0, got.nvdimms!.nv1]) {
        const start = BigInt(facts.start);
        assert.ok(nfit.some((range) => range.start <= start && start + BigInt(facts.size) <= range.end), `${facts.region} at ${facts.start}: ${JSON.stringify(nfit, (_, v) => typeof v === 'bigint' ? `0x${v.toString(16)}` : v)}`);
      }
    });

    await t.test('every row was sent, in the table\'s order', () => {
      assert.deepEqual(got.rows.map((row) => row.name), rows.map((row) => row.name));
    });

    const accepted: PmemReport[] = [];
    for (const [index, row] of rows.entries()) {
      const answers = got.rows[index];
      const standInExpected = row.standIn ?? row.real;
      const title = `row ${row.name}: ${row.what}: ${row.real.errno}${row.real.reason ? ` ${row.real.reason}` : ''}${row.standIn ? ` (the stand-in: ${row.standIn.errno}, ${row.standIn.why})` : ''}`;
      await t.test(title, () => {
        assert.ok(answers, 'no answer recorded');
        assert.deepEqual(verdict(answers.real), row.real, 'the hypervisor');
        assert.deepEqual(verdict(answers.standIn), { errno: standInExpected.errno, reason: standInExpected.reason }, 'the stand-in');
        // Every answer to a XENPF_pmem sub-operation carries the ABI version; the stand-in's too.
        if (row.request.kind !== 'mem-hotadd') assert.equal(answers.real.abi, XENPF_PMEM_ABI);
        if (row.request.kind === 'add') {
          // The shared rules (what the daemon checks before it sends) agree with both.
          const shared = checkPmemAddLikeXen(row.request.report, accepted);
          if (!shared.ok) assert.equal(answers.real.reason, shared.reason, shared.message);
        }
      });
      if (row.request.kind === 'add' && answers?.real.errno === 'OK') accepted.push(row.request.report);
    }

    await t.test('Xen printed one console line per add, with the six PFNs sent, its verdict and its reason; the rules\' sentences are the daemon\'s', () => {
      // The rows' adds come first; the generated requests' follow (the hostile subtest).
      const rowLines = lines.slice(0, addRows.length);
      assert.equal(rowLines.length, addRows.length, lines.map((line) => line.line).join('\n'));
      const added: PmemReport[] = [];
      addRows.forEach((row, index) => {
        const line = rowLines[index]!;
        assert.equal(describeLayout(line.request), describeLayout(row.request.report), `row ${row.name}: ${line.line}`);
        if (row.real.errno === 'OK') {
          assert.equal(line.kind, 'added', line.line);
          added.push(row.request.report);
          return;
        }
        assert.equal(line.kind, 'refused', line.line);
        if (line.kind !== 'refused') return;
        assert.deepEqual([line.errno, line.reason], [row.real.errno, row.real.reason], line.line);
        const shared = checkPmemAddLikeXen(row.request.report, added);
        if (!shared.ok) {
          assert.deepEqual([line.rule, line.message], [shared.rule, shared.message], `row ${row.name}`);
        }
      });
    });

    const add0 = addRows.find((row) => row.name === 'add-nv0')!.request.report;
    const added0 = lines.find((line) => line.kind === 'added' && line.request.spfn === add0.spfn);
    const region0 = got.rows.find((row) => row.name === 'region-0')?.real.region;

    await t.test('the region query tells the layout nv0 was added with and the chunks its console line names', () => {
      assert.ok(added0?.kind === 'added' && region0);
      assert.deepEqual(region0.layout, Object.fromEntries(Object.entries(add0).map(([key, value]) => [key, `0x${value.toString(16)}`])));
      assert.deepEqual(region0.chunks, [added0.chunks.frameTable, added0.chunks.m2p, added0.chunks.compatM2p]);
      assert.equal(BigInt(region0.freeFrames), added0.dataFrames, 'no frame was given away yet');
      assert.equal(added0.reservedPagesUsed, BigInt(chunkTotal(added0.chunks)) * CHUNK_PAGES);
      assert.equal(added0.reservedPages, add0.rsvEpfn - add0.rsvSpfn);
      const owner = got.rows.find((row) => row.name === 'owner-nv0')?.real.owner;
      assert.equal(owner?.domid, 0x7ff4, 'no domain holds nv0\'s data frames (DOMID_INVALID)');
    });

    await t.test('frames above Xen\'s RAM in a group it described at boot still map as I/O frames after the add, with the same bytes', () => {
      const above = got.aboveRam;
      assert.ok(above);
      for (const [when, mappings] of [['before', above.before], ['after', above.after]] as const) {
        assert.deepEqual(mappings.map((mapping) => mapping.errno), [0, 0, 0], `${when} the add: ${JSON.stringify(mappings)}`);
        assert.equal(Buffer.from(mappings[0]!.firstBytes ?? '', 'hex').subarray(0, 4).toString('latin1'), 'FACS', `${when} the add`);
      }
      assert.deepEqual(above.after.map((mapping) => mapping.firstBytes), above.before.map((mapping) => mapping.firstBytes));
    });

    const routes = got.routes;
    await t.test('route: privcmd mapping any frame of the region as an I/O frame (DOMID_IO) is refused (EBUSY)', () => {
      assert.ok(routes);
      assert.deepEqual(routes.ioFrames.map((mapping) => [mapping.label, mapping.errno]), routes.ioFrames.map((mapping) => [mapping.label, EBUSY]));
    });

    await t.test('route: through DOMID_XEN the Dom0 maps the M2P chunk read-only (all entries invalid) and not the frame table\'s', () => {
      assert.ok(routes);
      const [m2p, frameTable] = routes.xenFrames;
      assert.equal(m2p?.errno, 0, JSON.stringify(m2p));
      assert.match(m2p?.firstBytes ?? '', /^(ff)+$/);
      assert.notEqual(frameTable?.errno, 0, JSON.stringify(frameTable));
    });

    await t.test('route: XEN_DOMCTL_iomem_permission over the region, allowed before the add, is refused after it (EPERM)', () => {
      assert.deepEqual(routes?.iomemPermission, { before: 'OK', after: 'EPERM' });
    });

    await t.test('route: /dev/mem refuses to read the reserved range', () => {
      assert.equal(routes?.devMemRead.ok, false);
      assert.equal(routes?.devMemRead.error, 'EFAULT');
    });

    await t.test('route: the pmem driver was unbound before the add and cannot bind the namespace again while the BTT seed claims it', () => {
      assert.equal(routes?.blockDevicePresent, false, 'nv0\'s block device is still there');
      // The probe fails on the claim: Linux 6.12 answers EIO, 6.1 ENXIO.
      assert.equal(routes?.rebind.claimed, true);
      assert.ok(['EIO', 'ENXIO'].includes(routes.rebind.bindError ?? ''), `the bind answered ${routes.rebind.bindError ?? 'success'}`);
      assert.equal(routes.rebind.blockDevicePresent, false);
    });

    await t.test('after every route Xen and the Dom0 still answer; the Dom0\'s ACPI tables read the same; no panic, BUG or assertion', () => {
      assert.deepEqual(got.afterRoutes?.version, got.version?.real);
      assert.deepEqual(verdict(got.afterRoutes!.probe), { errno: 'ENOENT', reason: 'no-such-region' });
      assert.ok(got.acpi.before.length >= 5, JSON.stringify(got.acpi.before));
      assert.deepEqual(got.acpi.after, got.acpi.before);
      const trouble = collected.serial.split('\n').filter((line) => /Panic|FATAL|Xen BUG|Assertion|WARN_ON|Oops|BUG:/.test(line));
      assert.deepEqual(trouble, []);
    });

    await t.test('a PV DomU is saved and restored before the adds, after the add that brought an M2P slot and after one that did not, and restored from a checkpoint taken before them', () => {
      const pv = got.pvGuest ?? {};
      for (const name of ['toolstack', 'create', 'before', 'checkpoint', 'afterSlot', 'afterNoSlot', 'fromCheckpoint'] as const) {
        const step = pv[name];
        assert.ok(step, `no ${name} step (the guest program stopped in phase ${got.phase})`);
        assert.equal(step.ok, true, `${name}: ${step.detail}\n${step.commands.map((record) => `${record.command} → ${record.status}\n${record.stderr}`).join('\n')}`);
      }
      const addNv1 = addRows.find((row) => row.name === 'minimum-nv1')!.request.report;
      const added1 = lines.find((line) => line.kind === 'added' && line.request.spfn === addNv1.spfn);
      assert.ok(added0?.kind === 'added' && added0.chunks.m2p >= 1, `nv0's add brought an M2P slot: ${added0?.line}`);
      assert.ok(added1?.kind === 'added' && added1.chunks.m2p === 0, `nv1's add brought none: ${added1?.line}`);
      const ms = (name: 'before' | 'afterSlot' | 'afterNoSlot'): string => pv[name]!.commands.map((record) => `${record.command.split(' ')[1]} ${(record.ms / 1000).toFixed(1)} s`).join(', ');
      t.diagnostic(`PV DomU on ${base}: before the adds ${ms('before')}; after nv0 (M2P slot) ${ms('afterSlot')}; after nv1 (no slot) ${ms('afterNoSlot')}`);
    });

    await t.test(`${HOSTILE_COUNT} generated requests once Xen holds every pmem range (planner layouts over the whole memory map, each rule broken, random and edge values, queries): Xen adds nothing, and every answer carries its reason`, () => {
      const hostile = got.hostile;
      assert.ok(hostile, `no hostile result (guest stopped in phase ${got.phase})`);
      assert.equal(hostile.sent, HOSTILE_COUNT, withSeed('every request was sent'));
      assert.deepEqual(hostile.accepted, [], withSeed('Xen added a region it should have refused'));
      assert.deepEqual(hostile.unreadable, [], withSeed('an answer without the ABI mark or with an unknown reason'));
      assert.deepEqual(Object.keys(hostile.byKind).sort(), [...HOSTILE_KINDS].sort(), withSeed('every kind was sent'));
      // Xen's own account: every console line after the rows' is a refusal.
      const after = lines.slice(addRows.length);
      assert.ok(after.length > 0, 'Xen printed a line for the generated adds');
      assert.deepEqual(after.filter((line) => line.kind !== 'refused').map((line) => line.line), [], withSeed('Xen\'s console says it added a generated region'));
      const answers = Object.entries(hostile.byAnswer).sort(([, a], [, b]) => b - a).map(([said, n]) => `${said} ${n}`).join(', ');
      t.diagnostic(`hostile on ${base}: ${hostile.sent} requests (seed ${hostile.seed}) in ${(hostile.ms / 1000).toFixed(1)} s: ${answers}`);
    });

    await t.test(`xen_version: ${base} with the series' extraversion`, () => {
      const version = got.version!.real;
      assert.equal(`${version.major}.${version.minor}`, base);
      assert.ok(version.extraversion.endsWith(XEN_VENDOR_VERSION), version.extraversion);
    });

    await t.test('nv0\'s reserved area holds Xen\'s tables: page_infos of region frames that no one owns but the M2P chunks\' (Xen\'s, shared read-only), then the M2P chunk of invalid entries (host, image file)', () => {
      assert.ok(added0?.kind === 'added');
      const { frameTable, m2p, compatM2p } = added0.chunks;
      assert.ok(frameTable >= 1 && m2p >= 1, added0.line);
      // The region's frames are in the frame-table chunks in PFN order from the start of their
      // pdx group (no pdx compression in the lab); the region starts on a group boundary here.
      const regionFrames = Number(add0.epfn - add0.spfn);
      assert.equal(add0.spfn % 0x10000n, 0n, 'nv0 starts on a pdx group boundary');
      const m2pFirst = Number(add0.rsvSpfn - add0.spfn) + frameTable * Number(CHUNK_PAGES);
      // The compat M2P's chunks (CONFIG_PV32) follow the M2P's, shared the same way.
      assert.deepEqual(regionPageInfoProblems(collected.nv0Chunks, regionFrames, { first: m2pFirst, end: m2pFirst + (m2p + compatM2p) * Number(CHUNK_PAGES) }), []);
      const m2pChunk = collected.nv0Chunks.subarray(frameTable * CHUNK_BYTES, (frameTable + 1) * CHUNK_BYTES);
      assert.ok(m2pChunk.every((byte) => byte === 0xff), 'the M2P chunk is not all INVALID_M2P_ENTRY');
    });
  });
}
