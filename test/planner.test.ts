import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';

import fc from 'fast-check';

import {
  LINUX_DATA_TYPE_GUID, planLayout, RESERVED_OFFSET_BYTES, sfdiskScript, type LayoutPlan, type PartitionRequest, type PlanResult,
} from '../src/core/planner.js';
import { judge } from '../src/core/validate.js';
import { GiB, HUGE_PAGE_BYTES, KiB, MiB, PAGE_BYTES, TiB } from '../src/core/units.js';
import { plannedReservedBytes, xenMinimumReservedPages, XEN_X86_64_COSTS } from '../src/core/xen-sizing.js';
import { freshDevice } from './helpers/fixtures.js';
import { hasCommand, makeScratchDir, makeSparseImage, sfdiskJson, writeTable } from '../fixtures/images.js';
import { show } from './helpers/show.js';

function planned(result: PlanResult): LayoutPlan {
  assert.equal(result.ok, true, show(result));
  return (result as Extract<PlanResult, { ok: true }>).plan;
}

function refused(result: PlanResult): Extract<PlanResult, { ok: false }> {
  assert.equal(result.ok, false, show(result));
  return result as Extract<PlanResult, { ok: false }>;
}

describe("Xen's reserved-area sizes", () => {
  it('rule 4 is (32 * pages) >> 12 + (8 * pages) >> 12, rounding each term down', () => {
    assert.equal(xenMinimumReservedPages(65_536n), 512n + 128n);
    // 100 pages: 3200 >> 12 = 0 and 800 >> 12 = 0: Xen demands nothing for a tiny region.
    assert.equal(xenMinimumReservedPages(100n), 0n);
    // 200 pages: 6400 >> 12 = 1, 1600 >> 12 = 0.
    assert.equal(xenMinimumReservedPages(200n), 1n);
  });

  it('the planner reserves 44 bytes a page rounded up to 2 MiB, never less than rule 4', () => {
    assert.deepEqual(XEN_X86_64_COSTS, { pageSize: 4096, pageInfoBytes: 32, m2pBytes: 8, compatM2pBytes: 4 });
    assert.equal(plannedReservedBytes(65_536n), 4n * MiB);
    // 47,662 pages * 44 = 2,097,128 bytes: still one 2 MiB chunk; one page more needs two.
    assert.equal(plannedReservedBytes(47_662n), 2n * MiB);
    assert.equal(plannedReservedBytes(47_663n), 4n * MiB);
    // With costs below Xen's, rule 4 (rounded to 2 MiB) is the floor.
    const cheap = { pageSize: 4096, pageInfoBytes: 1, m2pBytes: 1, compatM2pBytes: 0 };
    assert.equal(plannedReservedBytes(262_144n, cheap), 10n * MiB);
  });
});

describe('planLayout on hand-computed devices', () => {
  it('256 MiB', () => {
    // 256 MiB = 268,435,456 bytes = 65,536 pages.
    // Rule 4: (32 * 65,536) >> 12 = 512 pages + (8 * 65,536) >> 12 = 128 pages = 640 pages = 2.5 MiB.
    // Planner: 65,536 * 44 = 2,883,584 bytes (2.75 MiB), rounded up to 2 MiB = 4 MiB.
    // Reserved 2 MiB..6 MiB; data from 6 MiB. Backup copy at 256 - 1 = 255 MiB;
    // data ends at 255 MiB rounded down to 2 MiB = 254 MiB; data size 254 - 6 = 248 MiB.
    const plan = planned(planLayout(256n * MiB, []));
    assert.equal(plan.deviceSize, 268_435_456n);
    assert.equal(plan.xenMinimumBytes, 640n * 4096n);
    assert.equal(plan.xenMinimumBytes, 2_621_440n);
    assert.equal(plan.primaryOffset, 1n * MiB);
    assert.equal(plan.reservedOffset, 2n * MiB);
    assert.equal(plan.reservedSize, 4n * MiB);
    assert.equal(plan.dataOffset, 6n * MiB);
    assert.equal(plan.backupOffset, 255n * MiB);
    assert.equal(plan.dataSize, 248n * MiB);
    assert.deepEqual(plan.partitions, [{ number: 1, start: 6n * MiB, size: 248n * MiB }]);
  });

  it('1 GiB', () => {
    // 1 GiB = 262,144 pages. Rule 4: 2,048 + 512 = 2,560 pages = 10 MiB.
    // Planner: 262,144 * 44 = 11,534,336 bytes = 11 MiB, rounded up to 12 MiB.
    // Reserved 2..14 MiB; backup at 1,023 MiB; data 14 MiB..1,022 MiB = 1,008 MiB.
    const plan = planned(planLayout(1n * GiB, []));
    assert.equal(plan.xenMinimumBytes, 10n * MiB);
    assert.equal(plan.reservedSize, 12n * MiB);
    assert.equal(plan.dataOffset, 14n * MiB);
    assert.equal(plan.backupOffset, 1023n * MiB);
    assert.equal(plan.dataSize, 1008n * MiB);
    assert.equal(plan.dataOffset + plan.dataSize, 1022n * MiB);
  });

  it('1 TiB', () => {
    // 1 TiB = 2^28 = 268,435,456 pages.
    // Rule 4: (32 * 2^28) >> 12 = 2,097,152 + (8 * 2^28) >> 12 = 524,288 = 2,621,440 pages = 10 GiB.
    // Planner: 2^28 * 44 = 11,811,160,064 bytes = 11 GiB, already a multiple of 2 MiB.
    // Reserved 2 MiB..(11 GiB + 2 MiB); backup at 1 TiB - 1 MiB; data ends at 1 TiB - 2 MiB;
    // data size = 1 TiB - 2 MiB - (11 GiB + 2 MiB) = 1,013 GiB - 4 MiB.
    const plan = planned(planLayout(1n * TiB, []));
    assert.equal(xenMinimumReservedPages(268_435_456n), 2_621_440n);
    assert.equal(plan.xenMinimumBytes, 10n * GiB);
    assert.equal(plan.reservedSize, 11n * GiB);
    assert.equal(plan.dataOffset, 11n * GiB + 2n * MiB);
    assert.equal(plan.backupOffset, 1n * TiB - 1n * MiB);
    assert.equal(plan.dataSize, 1013n * GiB - 4n * MiB);
  });

  it('the smallest device that plans is 7 MiB', () => {
    // 7 MiB = 1,792 pages: 78,848 bytes of costs, one 2 MiB chunk. Reserved 2..4 MiB, backup at
    // 6 MiB, data 4..6 MiB. One page less and the backup moves below 6 MiB: no data area.
    const plan = planned(planLayout(7n * MiB, []));
    assert.equal(plan.reservedSize, 2n * MiB);
    assert.equal(plan.dataOffset, 4n * MiB);
    assert.equal(plan.dataSize, 2n * MiB);
    const tooSmall = refused(planLayout(7n * MiB - 4n * KiB, []));
    assert.equal(tooSmall.reason, 'device-too-small');
    assert.match(tooSmall.message, /a device of 7335936 bytes \(7\.00 MiB\) leaves no data area after 2\.00 MiB reserved for Xen; at least 7340032 bytes \(7\.00 MiB\) are needed/);
    assert.equal(refused(planLayout(1n * MiB, [])).reason, 'device-too-small');
    assert.equal(refused(planLayout(0n, [])).reason, 'device-too-small');
  });

  it('refuses a device that is not whole pages, or odd sector sizes', () => {
    const unaligned = refused(planLayout(1n * GiB + 512n, []));
    assert.equal(unaligned.reason, 'device-size-unaligned');
    assert.match(unaligned.message, /device size 1073742336 \(0x40000200\) is not a multiple of 4 KiB/);
    const sector = refused(planLayout(1n * GiB, [], 1024));
    assert.equal(sector.reason, 'bad-sector-size');
    assert.match(sector.message, /1024/);
  });
});

describe('planLayout partitions', () => {
  it('places several partitions on 2 MiB boundaries, sizes in whole pages, "rest" last', () => {
    // 1 GiB: data 14..1,022 MiB. 100 MiB at 14 MiB ends at 114 MiB. 1 MiB + 1 byte rounds up
    // to 1 MiB + 4 KiB at 114 MiB, ending at 115 MiB + 4 KiB; the next 2 MiB boundary is 116 MiB,
    // and "rest" takes 116..1,022 MiB = 906 MiB.
    const plan = planned(planLayout(1n * GiB, [{ size: 100n * MiB }, { size: 1n * MiB + 1n }, { size: 'rest' }]));
    assert.deepEqual(plan.partitions, [
      { number: 1, start: 14n * MiB, size: 100n * MiB },
      { number: 2, start: 114n * MiB, size: 1n * MiB + 4n * KiB },
      { number: 3, start: 116n * MiB, size: 906n * MiB },
    ]);
  });

  it('leaves the tail of the data area free when no partition asks for "rest"', () => {
    const plan = planned(planLayout(1n * GiB, [{ size: 10n * MiB }]));
    assert.deepEqual(plan.partitions, [{ number: 1, start: 14n * MiB, size: 10n * MiB }]);
    assert.equal(plan.dataSize, 1008n * MiB);
  });

  it('fits a partition of exactly the data area, and not one byte more', () => {
    assert.equal(planned(planLayout(1n * GiB, [{ size: 1008n * MiB }])).partitions[0]!.size, 1008n * MiB);
    const over = refused(planLayout(1n * GiB, [{ size: 1008n * MiB + 1n }]));
    assert.equal(over.reason, 'partitions-do-not-fit');
    assert.match(over.message, /partition 1 needs 1008\.00 MiB from 0xe00000 but only 1008\.00 MiB of the data area \(0xe00000-0x3fdfffff\) is left/);
  });

  it('refuses partitions that do not fit, naming the numbers', () => {
    const tooBig = refused(planLayout(1n * GiB, [{ size: 2n * GiB }]));
    assert.equal(tooBig.reason, 'partitions-do-not-fit');
    assert.match(tooBig.message, /partition 1 needs 2\.00 GiB from 0xe00000 but only 1008\.00 MiB/);
    const noRoom = refused(planLayout(1n * GiB, [{ size: 1008n * MiB }, { size: 1n }]));
    assert.equal(noRoom.reason, 'partitions-do-not-fit');
    assert.match(noRoom.message, /partition 2 needs 4\.00 KiB from 0x3fe00000 but only 0 B/);
    const nothingLeft = refused(planLayout(1n * GiB, [{ size: 1008n * MiB }, { size: 'rest' }]));
    assert.equal(nothingLeft.reason, 'partitions-do-not-fit');
    assert.match(nothingLeft.message, /partition 2/);
  });

  it('refuses "rest" anywhere but last, and empty or negative sizes', () => {
    const restFirst = refused(planLayout(1n * GiB, [{ size: 'rest' }, { size: 10n * MiB }]));
    assert.equal(restFirst.reason, 'bad-partition-request');
    assert.match(restFirst.message, /partition 1 asks for "rest" but is not the last one/);
    for (const size of [0n, -4096n]) {
      const bad = refused(planLayout(1n * GiB, [{ size: 10n * MiB }, { size }]));
      assert.equal(bad.reason, 'bad-partition-request');
      assert.match(bad.message, new RegExp(`partition 2 asks for ${size} bytes`));
    }
  });
});

describe('plans agree with the rules they exist for', () => {
  const deviceSize = fc.bigInt({ min: 7n * MiB / PAGE_BYTES, max: 64n * TiB / PAGE_BYTES }).map((pages) => pages * PAGE_BYTES);

  it('every plan has 2 MiB-aligned areas, a reserved area of at least rule 4, data before the backup', () => {
    fc.assert(fc.property(deviceSize, (size) => {
      const plan = planned(planLayout(size, []));
      const pages = size / PAGE_BYTES;
      assert.equal(plan.reservedOffset, RESERVED_OFFSET_BYTES);
      assert.equal(plan.reservedSize % HUGE_PAGE_BYTES, 0n);
      assert.ok(plan.reservedSize >= xenMinimumReservedPages(pages) * PAGE_BYTES);
      assert.ok(plan.reservedSize >= pages * 44n);
      assert.equal(plan.dataOffset, plan.reservedOffset + plan.reservedSize);
      assert.equal(plan.dataOffset % HUGE_PAGE_BYTES, 0n);
      assert.equal((plan.dataOffset + plan.dataSize) % HUGE_PAGE_BYTES, 0n);
      assert.ok(plan.dataSize > 0n);
      assert.ok(plan.dataOffset + plan.dataSize <= plan.backupOffset);
      assert.ok(plan.backupOffset - (plan.dataOffset + plan.dataSize) < HUGE_PAGE_BYTES, 'data ends at most 2 MiB short of the backup');
    }), { numRuns: 300 });
  });

  it('every plan, written as setup writes it, is judged valid', () => {
    const requests: fc.Arbitrary<PartitionRequest[]> = fc.array(fc.bigInt({ min: 1n, max: 4n * MiB }).map((size) => ({ size })), { maxLength: 3 })
      .chain((sized) => fc.boolean().map((rest) => rest ? [...sized, { size: 'rest' as const }] : sized));
    fc.assert(fc.property(fc.bigInt({ min: 64n * MiB / PAGE_BYTES, max: 4n * TiB / PAGE_BYTES }), requests, (pages, asked) => {
      const verdict = judge(freshDevice(pages * PAGE_BYTES, { requests: asked }).input);
      assert.equal(verdict.status, 'valid', show(verdict));
    }), { numRuns: 200 });
  });
});

describe('sfdiskScript', { skip: hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)' }, () => {
  let scratch: ReturnType<typeof makeScratchDir>;
  before(() => { scratch = makeScratchDir('planner'); });
  after(() => scratch.remove());

  it('is the exact script for 256 MiB', () => {
    const plan = planned(planLayout(256n * MiB, []));
    // 6 MiB / 512 = 12,288; 254 MiB / 512 - 1 = 520,191; 248 MiB / 512 = 507,904 sectors.
    assert.equal(sfdiskScript(plan), [
      'label: gpt',
      'unit: sectors',
      'sector-size: 512',
      'first-lba: 12288',
      'last-lba: 520191',
      `start=12288, size=507904, type=${LINUX_DATA_TYPE_GUID}, name="xen-pmem-data-1"`,
      '',
    ].join('\n'));
  });

  it('uses 4096-byte sectors when the device has them', () => {
    const plan = planned(planLayout(256n * MiB, [], 4096));
    assert.match(sfdiskScript(plan), /sector-size: 4096\nfirst-lba: 1536\nlast-lba: 65023\nstart=1536, size=63488,/);
  });

  for (const [label, size, requests] of [
    ['256 MiB, one partition', 256n * MiB, []],
    ['1 GiB, three partitions', 1n * GiB, [{ size: 100n * MiB }, { size: 1n * MiB + 1n }, { size: 'rest' }]],
    ['1 TiB, two partitions and a free tail', 1n * TiB, [{ size: 1n * GiB }, { size: 10n * GiB }]],
  ] as [string, bigint, PartitionRequest[]][]) {
    it(`is accepted by sfdisk as planned: ${label}`, () => {
      const plan = planned(planLayout(size, requests));
      const path = makeSparseImage(join(scratch.dir, 'script.img'), size);
      writeTable(path, sfdiskScript(plan));
      const table = sfdiskJson(path);
      assert.ok(table, 'sfdisk -J finds the table');
      assert.equal(table.label, 'gpt');
      assert.equal(BigInt(table.firstlba!) * 512n, plan.dataOffset, 'first usable LBA is the data area start');
      assert.equal((BigInt(table.lastlba!) + 1n) * 512n, plan.dataOffset + plan.dataSize, 'last usable LBA ends the data area');
      assert.deepEqual(
        (table.partitions ?? []).map((p) => ({ start: BigInt(p.start) * 512n, size: BigInt(p.size) * 512n, type: p.type, name: p.name })),
        plan.partitions.map((p) => ({ start: p.start, size: p.size, type: LINUX_DATA_TYPE_GUID, name: `xen-pmem-data-${p.number}` })),
      );
    });
  }
});
