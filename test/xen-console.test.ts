// The patched hypervisor's console lines (lab/xen-console.ts) on a capture from the lab, and the
// model of its table chunks (lab/xen-tables.ts) on the sizes docs/hypervisor.md quotes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { GiB, MiB, PAGE_BYTES, TiB } from '../src/core/units.js';
import { plannedReservedBytes, xenMinimumReservedPages } from '../src/core/xen-sizing.js';
import type { PfnRange, PmemReport } from '../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../src/xen/interfaces/xenpf-pmem.js';
import { describeLayout } from '../src/xen/xenpf-pmem.js';
import { repositoryDir } from '../lab/prepare.js';
import { parseXenFirmwareRanges, parseXenGifts, parseXenPmemLines, type TableChunks } from '../lab/xen-console.js';
import { bootView, chunkTotal, tablesNeeded, usableChunks, viewAfter, type XenTablesView } from '../lab/xen-tables.js';

/**
 * Captured by test/lab/patched-xen.test.ts on Xen 4.20 with a Debian 13 Dom0: the serial log from
 * Xen's firmware lines at boot to the end of the xen-abi scenario.
 */
const CAPTURE = readFileSync(join(repositoryDir(), 'test', 'fixtures', 'captured', 'xen-pmem-console.txt'), 'utf8');

describe('parseXenPmemLines on a capture from the lab', () => {
  const lines = parseXenPmemLines(CAPTURE);

  it('finds every pmem line, also one Xen printed in the middle of a Dom0 console line', () => {
    assert.ok(/[a-z]\(XEN\) pmem: (refused|added)/.test(CAPTURE), 'the capture has an interrupted Dom0 line');
    assert.ok(CAPTURE.includes('\r\n'), 'the capture keeps the serial console\'s line ends');
    assert.deepEqual(lines.map((line) => line.kind === 'added' ? 'added' : `${line.errno} ${line.rule ?? '-'} ${line.reason}`), [
      'EINVAL 1 empty-range',
      'EINVAL 2 outside-region',
      'EINVAL 3 reserved-data-overlap',
      'ENOSPC 4 reserved-too-small',
      'EINVAL 6 region-not-2mib-aligned',
      'EINVAL - beyond-frame-table',
      'EINVAL - not-pmem',
      'EINVAL - not-pmem',
      'EINVAL - not-pmem',
      'EBUSY - mapped',
      'ENOSPC - reserved-exhausted',
      'added',
      'EEXIST 5 already-added',
      'EINVAL 5 overlaps-added-region',
      'EBUSY - mapped',
      'added',
      'EINVAL 5 overlaps-added-region',
    ]);
  });

  it('reads the six PFNs as BigInt, in the daemon\'s spelling, and what an add used and took', () => {
    const added = lines.filter((line) => line.kind === 'added');
    assert.equal(added.length, 2);
    const [nv0, nv1] = added;
    assert.equal(describeLayout(nv0!.request), 'spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100e00 data_spfn=0x100e00 data_epfn=0x10fe00');
    assert.equal(nv0!.request.dataEpfn, 0x10fe00n);
    assert.deepEqual([nv0!.reservedPagesUsed, nv0!.reservedPages, nv0!.chunks, nv0!.dataFrames], [0x400n, 0xc00n, { frameTable: 1, m2p: 1, compatM2p: 0 }, 0xf000n]);
    assert.deepEqual([nv1!.reservedPagesUsed, nv1!.reservedPages, nv1!.chunks, nv1!.dataFrames], [0x400n, 0x500n, { frameTable: 2, m2p: 0, compatM2p: 0 }, 0x1ee00n]);
    for (const line of added) assert.ok(line.ms >= 0 && line.continuations >= 1, line.line);
  });

  it('Xen\'s sentence for each of rules 1-6 is checkPmemAddLikeXen\'s, word for word', () => {
    const accepted: PmemReport[] = [];
    let compared = 0;
    for (const line of lines) {
      if (line.kind === 'added') {
        accepted.push(line.request);
        continue;
      }
      if (line.rule === null) continue;
      const verdict = checkPmemAddLikeXen(line.request, accepted);
      assert.ok(!verdict.ok);
      assert.deepEqual([verdict.rule, verdict.reason, verdict.message], [line.rule, line.reason, line.message]);
      compared++;
    }
    assert.equal(compared, 8);
  });

  it('the firmware ranges Xen recorded at boot: one NFIT range per NVDIMM, one hot-pluggable SRAT range over QEMU\'s device memory', () => {
    assert.deepEqual(parseXenFirmwareRanges(CAPTURE), [
      { kind: 'nfit', start: 0x100000000n, end: 0x110000000n },
      { kind: 'nfit', start: 0x110000000n, end: 0x130000000n },
      { kind: 'srat-hotplug', start: 0x100000000n, end: 0x4c3000000n },
    ]);
  });

  it('a line that starts like a pmem line but does not parse comes back as unparsed', () => {
    const [line] = parseXenPmemLines('(XEN) pmem: added spfn=0x1 epfn=0x2 rsv_spfn=0x1 rsv_epfn=0x2 data_spfn=0x1 data_epfn=0x2: something new\n');
    assert.equal(line?.kind === 'refused' ? line.reason : line?.kind, 'unparsed');
    const [unknownReason] = parseXenPmemLines('(XEN) pmem: refused spfn=0x1 epfn=0x2 rsv_spfn=0x1 rsv_epfn=0x2 data_spfn=0x1 data_epfn=0x2: -EINVAL no-such-code: why\n');
    assert.equal(unknownReason?.kind === 'refused' ? unknownReason.reason : unknownReason?.kind, 'unparsed');
    assert.deepEqual(parseXenPmemLines('(XEN) pmem support: none\nunrelated\n'), []);
  });

  it('a gift of data frames to a guest', () => {
    assert.deepEqual(parseXenGifts('(XEN) pmem: gave d3 frames [0x101e00, 0x141e00) at GFN 0x100000\r\n'), [
      { domid: 3, mfn: 0x101e00n, end: 0x141e00n, gfn: 0x100000n },
    ]);
    assert.deepEqual(parseXenGifts(CAPTURE), []);
  });
});

describe('the hypervisor\'s table chunks, modelled', () => {
  const pages = (bytes: bigint): bigint => bytes / PAGE_BYTES;
  /** The lab's Xen: 2000 MiB of RAM, NVDIMMs from 4 GiB up. */
  const lab = bootView([{ spfn: 0n, epfn: 0x9fn }, { spfn: 0x100n, epfn: 0x7cfdfn }]);
  const at = (start: bigint, size: bigint): PfnRange => ({ spfn: pages(start), epfn: pages(start + size) });
  const plannerChunks = (size: bigint): bigint => plannedReservedBytes(pages(size)) / (2n * MiB);

  it('256 MiB at 4 GiB, then 512 MiB after it: what the lab measured', () => {
    const nv0 = at(4n * GiB, 256n * MiB);
    const nv1 = at(4n * GiB + 256n * MiB, 512n * MiB);
    assert.deepEqual(tablesNeeded(lab, nv0), { frameTable: 1, m2p: 1, compatM2p: 0 });
    assert.deepEqual(tablesNeeded(viewAfter(lab, nv0), nv1), { frameTable: 2, m2p: 0, compatM2p: 0 });
    // nv1 on its own would need the M2P slot too.
    assert.deepEqual(tablesNeeded(lab, nv1), { frameTable: 2, m2p: 1, compatM2p: 0 });
  });

  it('the rule-4 minimum of a fresh 256 MiB region holds one chunk where the tables need two', () => {
    const nv0 = at(4n * GiB, 256n * MiB);
    const minimum = xenMinimumReservedPages(nv0.epfn - nv0.spfn);
    assert.equal(minimum, 0x280n);
    assert.equal(usableChunks(nv0.spfn + 0x200n, nv0.spfn + 0x200n + minimum), 1n);
    assert.equal(chunkTotal(tablesNeeded(lab, nv0)), 2);
  });

  /** The lab's Xen built with 32-bit PV guests: it keeps a compat M2P below 1 TiB too. */
  const pv32 = bootView([{ spfn: 0x100n, epfn: 0x7cfdfn }], true);
  /** What the planner reserves, as the hypervisor sees it: whole chunks from 2 MiB into the region. */
  const plannerUsable = (region: PfnRange): bigint =>
    usableChunks(region.spfn + 0x200n, region.spfn + 0x200n + plannedReservedBytes(region.epfn - region.spfn) / PAGE_BYTES);

  it('the planner reserves (⌈N / 65,536⌉ + 1) + (⌈N / 262,144⌉ + 1) + (⌈N / 524,288⌉ + 1) chunks', () => {
    // 256 MiB = 65,536 pages: (1 + 1) + (1 + 1) + (1 + 1) = 6 chunks = 12 MiB.
    assert.equal(plannerChunks(256n * MiB), 6n);
    // 512 MiB = 131,072 pages: (2 + 1) + (1 + 1) + (1 + 1) = 7 chunks = 14 MiB.
    assert.equal(plannerChunks(512n * MiB), 7n);
    // 1 GiB = 262,144 pages: (4 + 1) + (1 + 1) + (1 + 1) = 9 chunks = 18 MiB.
    assert.equal(plannerChunks(1n * GiB), 9n);
    // 4 GiB = 1,048,576 pages: (16 + 1) + (4 + 1) + (2 + 1) = 25 chunks = 50 MiB.
    assert.equal(plannerChunks(4n * GiB), 25n);
    // 1 TiB = 2^28 pages: (4,096 + 1) + (1,024 + 1) + (512 + 1) = 5,635 chunks = 11,270 MiB.
    assert.equal(plannerChunks(1n * TiB), 5635n);
    assert.equal(plannerChunks(1n * TiB) * 2n * MiB, 11_270n * MiB);
  });

  // docs/hypervisor.md's table, row by row: what Xen needs where the region lies, and that the
  // planner's reserved area (2 MiB into the region, so every chunk of it is whole and aligned)
  // holds it. "Straddling" starts 2 MiB before a 1 GiB boundary, which is also a group boundary.
  const rows: [string, XenTablesView, bigint, bigint, TableChunks, bigint][] = [
    ['256 MiB, aligned', lab, 4n * GiB, 256n * MiB, { frameTable: 1, m2p: 1, compatM2p: 0 }, 6n],
    ['256 MiB starting 16 MiB into a group (an fsdax namespace, say)', lab, 4n * GiB + 16n * MiB, 256n * MiB, { frameTable: 2, m2p: 1, compatM2p: 0 }, 6n],
    ['256 MiB straddling', lab, 5n * GiB - 2n * MiB, 256n * MiB, { frameTable: 2, m2p: 2, compatM2p: 0 }, 6n],
    ['512 MiB, aligned', lab, 4n * GiB, 512n * MiB, { frameTable: 2, m2p: 1, compatM2p: 0 }, 7n],
    ['1 GiB, aligned', lab, 4n * GiB, 1n * GiB, { frameTable: 4, m2p: 1, compatM2p: 0 }, 9n],
    ['1 GiB straddling', lab, 5n * GiB - 2n * MiB, 1n * GiB, { frameTable: 5, m2p: 2, compatM2p: 0 }, 9n],
    ['4 GiB straddling', lab, 5n * GiB - 2n * MiB, 4n * GiB, { frameTable: 17, m2p: 5, compatM2p: 0 }, 25n],
    ['1 TiB, aligned', lab, 4n * TiB, 1n * TiB, { frameTable: 4096, m2p: 1024, compatM2p: 0 }, 5635n],
    ['1 TiB straddling', lab, 5n * TiB - 2n * MiB, 1n * TiB, { frameTable: 4097, m2p: 1025, compatM2p: 0 }, 5635n],
    ['with 32-bit PV guests: 256 MiB aligned', pv32, 4n * GiB, 256n * MiB, { frameTable: 1, m2p: 1, compatM2p: 1 }, 6n],
    ['with 32-bit PV guests: 512 MiB aligned', pv32, 4n * GiB, 512n * MiB, { frameTable: 2, m2p: 1, compatM2p: 1 }, 7n],
    // Starting 2 MiB before a 2 GiB boundary crosses a group, an M2P slot and a compat slot at
    // once: the worst placement there is, and exactly what the planner reserves.
    ['with 32-bit PV guests: 256 MiB straddling 6 GiB', pv32, 6n * GiB - 2n * MiB, 256n * MiB, { frameTable: 2, m2p: 2, compatM2p: 2 }, 6n],
    ['with 32-bit PV guests: 1 GiB straddling 6 GiB', pv32, 6n * GiB - 2n * MiB, 1n * GiB, { frameTable: 5, m2p: 2, compatM2p: 2 }, 9n],
    ['with 32-bit PV guests: 4 GiB straddling 6 GiB', pv32, 6n * GiB - 2n * MiB, 4n * GiB, { frameTable: 17, m2p: 5, compatM2p: 3 }, 25n],
    // The compat M2P ends at 1 TiB: a 1 TiB region from 4 GiB - 2 MiB has 511 compat slots below it.
    ['with 32-bit PV guests: 1 TiB from 4 GiB - 2 MiB', pv32, 4n * GiB - 2n * MiB, 1n * TiB, { frameTable: 4097, m2p: 1025, compatM2p: 511 }, 5635n],
  ];
  for (const [name, view, start, size, chunks, planner] of rows) {
    it(`the planner covers ${name}: ${chunkTotal(chunks)} chunks needed, ${planner} reserved`, () => {
      const region = at(start, size);
      assert.deepEqual(tablesNeeded(view, region), chunks);
      assert.equal(plannerChunks(size), planner);
      assert.equal(plannerUsable(region), planner, 'every chunk of the planner\'s reserved area is whole and aligned');
      assert.ok(BigInt(chunkTotal(chunks)) <= planner, `${name}: needs ${chunkTotal(chunks)}, the planner reserves ${planner}`);
    });
  }

  it('usableChunks counts whole 2 MiB-aligned chunks only', () => {
    assert.equal(usableChunks(0x200n, 0x600n), 2n);
    assert.equal(usableChunks(0x201n, 0x600n), 1n);
    assert.equal(usableChunks(0x201n, 0x3ffn), 0n);
  });
});
