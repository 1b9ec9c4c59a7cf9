import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';

import fc from 'fast-check';

import { seeded } from './helpers/seed.js';

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

  it('the planner reserves, per table, one 2 MiB chunk more than the region fills, never less than rule 4', () => {
    assert.deepEqual(XEN_X86_64_COSTS, { pageSize: 4096, pageInfoBytes: 32, m2pBytes: 8, compatM2pBytes: 4 });
    // A 2 MiB chunk of table covers 2 MiB / 32 = 65,536 frames of page_info (a 256 MiB pdx group),
    // 2 MiB / 8 = 262,144 of M2P (a 1 GiB slot), 2 MiB / 4 = 524,288 of compat M2P (a 2 GiB slot).
    // One page: (1 + 1) + (1 + 1) + (1 + 1) = 6 chunks = 12 MiB, as for every region up to 256 MiB.
    assert.equal(plannedReservedBytes(1n), 12n * MiB);
    assert.equal(plannedReservedBytes(65_536n), 12n * MiB);
    // 65,537 pages: page_info needs ⌈65,537 / 65,536⌉ + 1 = 3 chunks; 3 + 2 + 2 = 7 chunks = 14 MiB.
    assert.equal(plannedReservedBytes(65_537n), 14n * MiB);
    // 262,144 pages (1 GiB): 4 + 1 = 5, 1 + 1 = 2, 1 + 1 = 2: 9 chunks = 18 MiB. One page more:
    // 5 + 1 = 6, 2 + 1 = 3, 1 + 1 = 2: 11 chunks = 22 MiB.
    assert.equal(plannedReservedBytes(262_144n), 18n * MiB);
    assert.equal(plannedReservedBytes(262_145n), 22n * MiB);
    // 524,288 pages (2 GiB): 8 + 1 = 9, 2 + 1 = 3, 1 + 1 = 2: 14 chunks = 28 MiB. One page more:
    // 9 + 1 = 10, 3 + 1 = 4, 2 + 1 = 3: 17 chunks = 34 MiB.
    assert.equal(plannedReservedBytes(524_288n), 28n * MiB);
    assert.equal(plannedReservedBytes(524_289n), 34n * MiB);
    // With costs below Xen's, rule 4 (rounded to 2 MiB) is the floor: 1-byte entries cover
    // 2,097,152 frames a chunk, so 262,144 pages plan (1 + 1) + (1 + 1) = 4 chunks = 8 MiB (the
    // zero-cost compat table adds none), below rule 4's 2,048 + 512 = 2,560 pages = 10 MiB.
    const cheap = { pageSize: 4096, pageInfoBytes: 1, m2pBytes: 1, compatM2pBytes: 0 };
    assert.equal(plannedReservedBytes(262_144n, cheap), 10n * MiB);
  });
});

describe('planLayout on hand-computed devices', () => {
  it('256 MiB', () => {
    // 256 MiB = 268,435,456 bytes = 65,536 pages.
    // Rule 4: (32 * 65,536) >> 12 = 512 pages + (8 * 65,536) >> 12 = 128 pages = 640 pages = 2.5 MiB.
    // Planner: page_info ⌈65,536 / 65,536⌉ + 1 = 2 chunks, M2P ⌈65,536 / 262,144⌉ + 1 = 2,
    // compat M2P ⌈65,536 / 524,288⌉ + 1 = 2: 6 chunks of 2 MiB = 12 MiB.
    // Reserved 2 MiB..14 MiB; data from 14 MiB. Backup copy at 256 - 1 = 255 MiB;
    // data ends at 255 MiB rounded down to 2 MiB = 254 MiB; data size 254 - 14 = 240 MiB.
    const plan = planned(planLayout(256n * MiB, []));
    assert.equal(plan.deviceSize, 268_435_456n);
    assert.equal(plan.xenMinimumBytes, 640n * 4096n);
    assert.equal(plan.xenMinimumBytes, 2_621_440n);
    assert.equal(plan.primaryOffset, 1n * MiB);
    assert.equal(plan.reservedOffset, 2n * MiB);
    assert.equal(plan.reservedSize, 12n * MiB);
    assert.equal(plan.dataOffset, 14n * MiB);
    assert.equal(plan.backupOffset, 255n * MiB);
    assert.equal(plan.dataSize, 240n * MiB);
    assert.deepEqual(plan.partitions, [{ number: 1, start: 14n * MiB, size: 240n * MiB }]);
  });

  it('1 GiB', () => {
    // 1 GiB = 262,144 pages. Rule 4: 2,048 + 512 = 2,560 pages = 10 MiB.
    // Planner: page_info 262,144 / 65,536 = 4 + 1 = 5 chunks, M2P 1 + 1 = 2, compat M2P 1 + 1 = 2:
    // 9 chunks = 18 MiB. Reserved 2..20 MiB; backup at 1,023 MiB; data 20 MiB..1,022 MiB = 1,002 MiB.
    const plan = planned(planLayout(1n * GiB, []));
    assert.equal(plan.xenMinimumBytes, 10n * MiB);
    assert.equal(plan.reservedSize, 18n * MiB);
    assert.equal(plan.dataOffset, 20n * MiB);
    assert.equal(plan.backupOffset, 1023n * MiB);
    assert.equal(plan.dataSize, 1002n * MiB);
    assert.equal(plan.dataOffset + plan.dataSize, 1022n * MiB);
  });

  it('1 TiB', () => {
    // 1 TiB = 2^28 = 268,435,456 pages.
    // Rule 4: (32 * 2^28) >> 12 = 2,097,152 + (8 * 2^28) >> 12 = 524,288 = 2,621,440 pages = 10 GiB.
    // Planner: page_info 2^28 / 2^16 = 4,096 + 1 = 4,097 chunks, M2P 2^28 / 2^18 = 1,024 + 1 = 1,025,
    // compat M2P 2^28 / 2^19 = 512 + 1 = 513: 5,635 chunks = 11,270 MiB = 11 GiB + 6 MiB.
    // Reserved 2 MiB..(11 GiB + 8 MiB); backup at 1 TiB - 1 MiB; data ends at 1 TiB - 2 MiB;
    // data size = 1 TiB - 2 MiB - (11 GiB + 8 MiB) = 1,013 GiB - 10 MiB.
    const plan = planned(planLayout(1n * TiB, []));
    assert.equal(xenMinimumReservedPages(268_435_456n), 2_621_440n);
    assert.equal(plan.xenMinimumBytes, 10n * GiB);
    assert.equal(plan.reservedSize, 11_270n * MiB);
    assert.equal(plan.reservedSize, 11n * GiB + 6n * MiB);
    assert.equal(plan.dataOffset, 11n * GiB + 8n * MiB);
    assert.equal(plan.backupOffset, 1n * TiB - 1n * MiB);
    assert.equal(plan.dataSize, 1013n * GiB - 10n * MiB);
  });

  it('the smallest device that plans is 17 MiB', () => {
    // 17 MiB = 4,352 pages: two chunks for each of the three tables (one it fills part of, one for
    // a boundary), 6 chunks = 12 MiB. Reserved 2..14 MiB, backup at 16 MiB, data 14..16 MiB. One
    // page less and the backup moves below 16 MiB: the data area would end at 14 MiB, no data area.
    const plan = planned(planLayout(17n * MiB, []));
    assert.equal(plan.reservedSize, 12n * MiB);
    assert.equal(plan.dataOffset, 14n * MiB);
    assert.equal(plan.dataSize, 2n * MiB);
    const tooSmall = refused(planLayout(17n * MiB - 4n * KiB, []));
    assert.equal(tooSmall.reason, 'device-too-small');
    assert.match(tooSmall.message, /a device of 17821696 bytes \(17\.00 MiB\) leaves no data area after 12\.00 MiB reserved for Xen; at least 17825792 bytes \(17\.00 MiB\) are needed/);
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
    // 1 GiB: data 20..1,022 MiB. 100 MiB at 20 MiB ends at 120 MiB. 1 MiB + 1 byte rounds up
    // to 1 MiB + 4 KiB at 120 MiB, ending at 121 MiB + 4 KiB; the next 2 MiB boundary is 122 MiB,
    // and "rest" takes 122..1,022 MiB = 900 MiB.
    const plan = planned(planLayout(1n * GiB, [{ size: 100n * MiB }, { size: 1n * MiB + 1n }, { size: 'rest' }]));
    assert.deepEqual(plan.partitions, [
      { number: 1, start: 20n * MiB, size: 100n * MiB },
      { number: 2, start: 120n * MiB, size: 1n * MiB + 4n * KiB },
      { number: 3, start: 122n * MiB, size: 900n * MiB },
    ]);
  });

  it('leaves the tail of the data area free when no partition asks for "rest"', () => {
    const plan = planned(planLayout(1n * GiB, [{ size: 10n * MiB }]));
    assert.deepEqual(plan.partitions, [{ number: 1, start: 20n * MiB, size: 10n * MiB }]);
    assert.equal(plan.dataSize, 1002n * MiB);
  });

  it('fits a partition of exactly the data area, and not one byte more', () => {
    assert.equal(planned(planLayout(1n * GiB, [{ size: 1002n * MiB }])).partitions[0]!.size, 1002n * MiB);
    const over = refused(planLayout(1n * GiB, [{ size: 1002n * MiB + 1n }]));
    assert.equal(over.reason, 'partitions-do-not-fit');
    assert.match(over.message, /partition 1 needs 1002\.00 MiB from 0x1400000 but only 1002\.00 MiB of the data area \(0x1400000-0x3fdfffff\) is left/);
  });

  it('refuses partitions that do not fit, naming the numbers', () => {
    const tooBig = refused(planLayout(1n * GiB, [{ size: 2n * GiB }]));
    assert.equal(tooBig.reason, 'partitions-do-not-fit');
    assert.match(tooBig.message, /partition 1 needs 2\.00 GiB from 0x1400000 but only 1002\.00 MiB/);
    const noRoom = refused(planLayout(1n * GiB, [{ size: 1002n * MiB }, { size: 1n }]));
    assert.equal(noRoom.reason, 'partitions-do-not-fit');
    assert.match(noRoom.message, /partition 2 needs 4\.00 KiB from 0x3fe00000 but only 0 B/);
    const nothingLeft = refused(planLayout(1n * GiB, [{ size: 1002n * MiB }, { size: 'rest' }]));
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
  const deviceSize = fc.bigInt({ min: 17n * MiB / PAGE_BYTES, max: 64n * TiB / PAGE_BYTES }).map((pages) => pages * PAGE_BYTES);

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
    }), seeded(300));
  });

  it('every plan, written as setup writes it, is judged valid', () => {
    const requests: fc.Arbitrary<PartitionRequest[]> = fc.array(fc.bigInt({ min: 1n, max: 4n * MiB }).map((size) => ({ size })), { maxLength: 3 })
      .chain((sized) => fc.boolean().map((rest) => rest ? [...sized, { size: 'rest' as const }] : sized));
    fc.assert(fc.property(fc.bigInt({ min: 64n * MiB / PAGE_BYTES, max: 4n * TiB / PAGE_BYTES }), requests, (pages, asked) => {
      const verdict = judge(freshDevice(pages * PAGE_BYTES, { requests: asked }).input);
      assert.equal(verdict.status, 'valid', show(verdict));
    }), seeded(200));
  });
});

describe('sfdiskScript', { skip: hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)' }, () => {
  let scratch: ReturnType<typeof makeScratchDir>;
  before(() => { scratch = makeScratchDir('planner'); });
  after(() => scratch.remove());

  it('is the exact script for 256 MiB', () => {
    const plan = planned(planLayout(256n * MiB, []));
    // 14 MiB / 512 = 28,672; 254 MiB / 512 - 1 = 520,191; 240 MiB / 512 = 491,520 sectors.
    assert.equal(sfdiskScript(plan), [
      'label: gpt',
      'unit: sectors',
      'sector-size: 512',
      'first-lba: 28672',
      'last-lba: 520191',
      `start=28672, size=491520, type=${LINUX_DATA_TYPE_GUID}, name="xen-pmem-data-1"`,
      '',
    ].join('\n'));
  });

  it('uses 4096-byte sectors when the device has them', () => {
    const plan = planned(planLayout(256n * MiB, [], 4096));
    // 14 MiB / 4096 = 3,584; 254 MiB / 4096 - 1 = 65,023; 240 MiB / 4096 = 61,440 sectors.
    assert.match(sfdiskScript(plan), /sector-size: 4096\nfirst-lba: 3584\nlast-lba: 65023\nstart=3584, size=61440,/);
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
