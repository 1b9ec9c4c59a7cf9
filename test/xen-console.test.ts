// The patched hypervisor's console lines (lab/xen-console.ts) on a capture from the lab, and the
// model of its table chunks (lab/xen-tables.ts) on the sizes docs/hypervisor.md quotes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { GiB, MiB, PAGE_BYTES, TiB } from '../src/core/units.js';
import { plannedReservedBytes, xenMinimumReservedPages } from '../src/core/xen-sizing.js';
import type { PfnRange } from '../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../src/xen/interfaces/pmem-add.js';
import { describePmemAdd } from '../src/xen/platform-op.js';
import { repositoryDir } from '../lab/prepare.js';
import { parseXenPmemLines } from '../lab/xen-console.js';
import { bootView, chunkTotal, tablesNeeded, usableChunks, viewAfter } from '../lab/xen-tables.js';

/** Captured by test/lab/patched-xen.test.ts: the serial log while the Dom0 sent its table of rows. */
const CAPTURE = readFileSync(join(repositoryDir(), 'test', 'fixtures', 'captured', 'xen-pmem-console.txt'), 'utf8');

describe('parseXenPmemLines on a capture from the lab', () => {
  const lines = parseXenPmemLines(CAPTURE);

  it('finds every pmem line, also one Xen printed in the middle of a Dom0 console line', () => {
    assert.equal(lines.length, 15);
    assert.ok(CAPTURE.includes('into the NVDIMM(XEN) pmem: refused'), 'the capture has an interrupted Dom0 line');
    assert.ok(CAPTURE.includes('\r\n'), 'the capture keeps the serial console\'s line ends');
    assert.deepEqual(lines.map((line) => line.kind === 'added' ? 'added' : `${line.errno} ${line.rule ?? '-'} ${line.reason}`), [
      'EINVAL 1 empty-range',
      'EINVAL 1 empty-range',
      'EINVAL 2 outside-region',
      'EINVAL 3 reserved-data-overlap',
      'EINVAL 4 reserved-too-small',
      'EINVAL 6 region-not-2mib-aligned',
      'ENOMEM - reserved-exhausted',
      'EINVAL - beyond-frame-table',
      'EINVAL - overlaps-known-memory',
      'added',
      'EINVAL 5 overlaps-added-region',
      'EINVAL 5 overlaps-added-region',
      'added',
      'EINVAL 5 overlaps-added-region',
      'EINVAL 1 empty-range',
    ]);
  });

  it('reads the six PFNs as BigInt, in the daemon\'s spelling, and what an add used', () => {
    const added = lines.filter((line) => line.kind === 'added');
    assert.equal(added.length, 2);
    const [nv0, nv1] = added;
    assert.equal(describePmemAdd(nv0!.request), 'spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x10fe00');
    assert.equal(nv0!.request.dataEpfn, 0x10fe00n);
    assert.deepEqual([nv0!.reservedPagesUsed, nv0!.reservedPages, nv0!.chunks], [0x400n, 0x400n, { frameTable: 1, m2p: 1, compatM2p: 0 }]);
    assert.deepEqual([nv1!.reservedPagesUsed, nv1!.reservedPages, nv1!.chunks], [0x400n, 0x500n, { frameTable: 2, m2p: 0, compatM2p: 0 }]);
  });

  it('Xen\'s sentence for each of rules 1-6 is checkPmemAddLikeXen\'s, word for word', () => {
    const accepted: PfnRange[] = [];
    let compared = 0;
    for (const line of lines) {
      if (line.kind === 'added') {
        accepted.push({ spfn: line.request.spfn, epfn: line.request.epfn });
        continue;
      }
      if (line.rule === null) continue;
      const verdict = checkPmemAddLikeXen(line.request, accepted);
      assert.ok(!verdict.ok);
      assert.deepEqual([verdict.rule, verdict.reason, verdict.message], [line.rule, line.reason, line.message]);
      compared++;
    }
    assert.equal(compared, 10);
  });

  it('a line that starts like a pmem line but does not parse comes back as unparsed', () => {
    const [line] = parseXenPmemLines('(XEN) pmem: added spfn=0x1 epfn=0x2 rsv_spfn=0x1 rsv_epfn=0x2 data_spfn=0x1 data_epfn=0x2: something new\n');
    assert.equal(line?.kind === 'refused' ? line.reason : line?.kind, 'unparsed');
    assert.deepEqual(parseXenPmemLines('(XEN) pmem support: none\nunrelated\n'), []);
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

  it('the planner\'s reserve covers an aligned region without 32-bit PV, and not with it', () => {
    for (const size of [256n * MiB, 512n * MiB, 1n * GiB, 1n * TiB]) {
      const region = at(4n * GiB, size);
      const needed = BigInt(chunkTotal(tablesNeeded(lab, region)));
      assert.ok(needed <= plannerChunks(size), `${size}: needs ${needed}, the planner reserves ${plannerChunks(size)}`);
    }
    const pv32 = bootView([{ spfn: 0x100n, epfn: 0x7cfdfn }], true);
    assert.deepEqual(tablesNeeded(pv32, at(4n * GiB, 256n * MiB)), { frameTable: 1, m2p: 1, compatM2p: 1 });
    assert.ok(3n > plannerChunks(256n * MiB), 'with 32-bit PV guests enabled, 256 MiB needs 3 chunks; the planner reserves 2');
  });

  it('a region that straddles group and slot boundaries needs more than the planner reserves', () => {
    // 256 MiB starting 2 MiB before a 1 GiB boundary: two groups, two M2P slots.
    const straddling = at(5n * GiB - 2n * MiB, 256n * MiB);
    assert.deepEqual(tablesNeeded(lab, straddling), { frameTable: 2, m2p: 2, compatM2p: 0 });
    assert.equal(plannerChunks(256n * MiB), 2n);
    // 1 GiB starting 2 MiB before a slot boundary: five groups, two slots, seven chunks; the planner reserves six.
    const gib = at(5n * GiB - 2n * MiB, 1n * GiB);
    assert.deepEqual(tablesNeeded(lab, gib), { frameTable: 5, m2p: 2, compatM2p: 0 });
    assert.equal(plannerChunks(1n * GiB), 6n);
  });

  it('1 TiB: 4096 frame table chunks and 1024 M2P chunks (10 GiB), against the planner\'s 11 GiB', () => {
    const tib = at(4n * TiB, 1n * TiB);
    assert.deepEqual(tablesNeeded(lab, tib), { frameTable: 4096, m2p: 1024, compatM2p: 0 });
    assert.equal(plannerChunks(1n * TiB) * 2n * MiB, 11n * GiB);
  });

  it('usableChunks counts whole 2 MiB-aligned chunks only', () => {
    assert.equal(usableChunks(0x200n, 0x600n), 2n);
    assert.equal(usableChunks(0x201n, 0x600n), 1n);
    assert.equal(usableChunks(0x201n, 0x3ffn), 0n);
  });
});
