import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import type { GptTable } from '../src/core/gpt.js';
import {
  encodeSuperblock, FIELDS, FLAG_BACKUP_COPY, FLAG_NAMESPACE_BOUND, SUPERBLOCK_BYTES,
} from '../src/core/superblock.js';
import { GiB, KiB, MiB, U64_MAX } from '../src/core/units.js';
import { judge, type ProbeInput, type ReasonCode, type Verdict } from '../src/core/validate.js';
import { resealSuperblock } from './helpers/damage.js';
import { encodeCopies, freshDevice, NAMESPACE_UUID, RESERVATION_UUID, withBothCopies, type Fixture } from './helpers/fixtures.js';
import { show } from './helpers/show.js';

/** 1 GiB, set up with defaults: reserved 2..20 MiB, data 20..1022 MiB, backup copy at 1023 MiB. */
const device = (): Fixture => freshDevice(1n * GiB);
const PRIMARY_HEX = '0x100000';
const BACKUP_HEX = '0x3ff00000';

type Invalid = Extract<Verdict, { status: 'invalid' }>;
type Valid = Extract<Verdict, { status: 'valid' }>;

function expectInvalid(input: ProbeInput, reason: ReasonCode): Invalid {
  const verdict = judge(input);
  assert.equal(verdict.status, 'invalid', show(verdict));
  assert.equal((verdict as Invalid).reason, reason, (verdict as Invalid).message);
  assert.ok((verdict as Invalid).message.length > 20);
  return verdict as Invalid;
}

function expectValid(input: ProbeInput): Valid {
  const verdict = judge(input);
  assert.equal(verdict.status, 'valid', show(verdict));
  return verdict as Valid;
}

/** A copy with raw bytes changed and a correct checksum (damage the encoder cannot express). */
function patchedCopy(copy: Buffer, patch: (block: Buffer) => void): Buffer {
  const block = Buffer.from(copy);
  patch(block);
  return resealSuperblock(block);
}

function withTable(fixture: Fixture, change: Partial<GptTable>): ProbeInput {
  return { ...fixture.input, table: { kind: 'gpt', table: { ...fixture.table, ...change } } };
}

describe('judge: finding and trusting a copy', () => {
  it('is valid on a fresh device, from the primary copy, with nothing to note', () => {
    const fixture = device();
    const verdict = expectValid(fixture.input);
    assert.equal(verdict.source, 'primary');
    assert.deepEqual(verdict.notes, []);
    assert.deepEqual(verdict.superblock, fixture.superblock);
    assert.deepEqual(verdict.partitions, fixture.table.partitions);
  });

  it('is "absent" when neither copy has a signature, naming both places', () => {
    const fixture = device();
    const zeros = Buffer.alloc(SUPERBLOCK_BYTES);
    const verdict = judge({ ...fixture.input, primary: zeros, backup: zeros });
    assert.equal(verdict.status, 'absent');
    assert.equal((verdict as { message: string }).message, `no xen-pmem super block at ${PRIMARY_HEX} or ${BACKUP_HEX}`);
    assert.equal(judge({ ...fixture.input, primary: zeros, backup: null }).status, 'absent');
  });

  it('uses the backup when the primary is damaged, and says so', () => {
    const fixture = device();
    const primary = Buffer.from(fixture.input.primary);
    primary[FIELDS.createdAt.offset] = primary[FIELDS.createdAt.offset]! ^ 0x01;
    const verdict = expectValid({ ...fixture.input, primary });
    assert.equal(verdict.source, 'backup');
    assert.equal(verdict.superblock.uuid, RESERVATION_UUID);
    assert.equal(verdict.notes.length, 1);
    assert.match(verdict.notes[0]!, new RegExp(`^primary super block at ${PRIMARY_HEX} is damaged \\(bad-checksum: .*\\); the backup at ${BACKUP_HEX} is used$`));
  });

  it('uses the backup when the primary is missing, and says so', () => {
    const fixture = device();
    const verdict = expectValid({ ...fixture.input, primary: Buffer.alloc(SUPERBLOCK_BYTES) });
    assert.equal(verdict.source, 'backup');
    assert.deepEqual(verdict.notes, [`primary super block at ${PRIMARY_HEX} is missing; the backup at ${BACKUP_HEX} is used`]);
    // The verdict reports the layout, not the copy: the backup flag is the only difference.
    assert.equal(verdict.superblock.flags & ~FLAG_BACKUP_COPY, fixture.superblock.flags);
  });

  it('uses the primary when the backup is damaged or missing, and says so', () => {
    const fixture = device();
    const backup = Buffer.from(fixture.input.backup!);
    backup[3000] = 7;
    const damaged = expectValid({ ...fixture.input, backup });
    assert.equal(damaged.source, 'primary');
    assert.match(damaged.notes[0]!, new RegExp(`^backup super block at ${BACKUP_HEX} is damaged \\(bad-checksum: .*\\); the primary at ${PRIMARY_HEX} is used$`));
    const missing = expectValid({ ...fixture.input, backup: Buffer.alloc(SUPERBLOCK_BYTES) });
    assert.deepEqual(missing.notes, [`backup super block at ${BACKUP_HEX} is missing; the primary at ${PRIMARY_HEX} is used`]);
  });

  it('is invalid with the first damaged copy\'s reason when no copy is usable', () => {
    const fixture = device();
    const badPrimary = Buffer.from(fixture.input.primary);
    badPrimary[100] = badPrimary[100]! ^ 0xff;
    const both = expectInvalid({ ...fixture.input, primary: badPrimary, backup: Buffer.from(fixture.input.backup!).fill(1, 200, 201) }, 'bad-checksum');
    assert.match(both.message, new RegExp(`^primary super block at ${PRIMARY_HEX}: bad-checksum: checksum is 0x[0-9a-f]{8} but the block sums to 0x[0-9a-f]{8}; backup at ${BACKUP_HEX}: bad-checksum`));
    const onlyPrimary = expectInvalid({ ...fixture.input, primary: badPrimary, backup: Buffer.alloc(SUPERBLOCK_BYTES) }, 'bad-checksum');
    assert.match(onlyPrimary.message, /backup at 0x3ff00000: none$/);
    const wrongMajor = encodeSuperblock({ ...fixture.superblock, majorVersion: 2, flags: FLAG_BACKUP_COPY });
    expectInvalid({ ...fixture.input, primary: Buffer.alloc(SUPERBLOCK_BYTES), backup: wrongMajor }, 'unsupported-major-version');
  });

  it('passes every decoding failure through as the reason', () => {
    const fixture = device();
    const both = (patch: (block: Buffer) => void): ProbeInput => ({
      ...fixture.input,
      primary: patchedCopy(fixture.input.primary as Buffer, patch),
      backup: patchedCopy(fixture.input.backup as Buffer, patch),
    });
    expectInvalid({ ...fixture.input, primary: fixture.input.primary.subarray(0, 512), backup: null }, 'short-read');
    expectInvalid(withBothCopies(fixture, { majorVersion: 7 }), 'unsupported-major-version');
    expectInvalid(both((b) => b.writeUInt32LE(200, FIELDS.headerBytes.offset)), 'bad-header-size');
    expectInvalid(both((b) => { b[FIELDS.flags.offset + 3] = 0x80; }), 'unknown-flags');
    expectInvalid(both((b) => { b[2048] = 1; }), 'nonzero-padding');
    expectInvalid(both((b) => b.fill(0, FIELDS.uuid.offset, FIELDS.uuid.offset + 16)), 'bad-uuid');
    expectInvalid(both((b) => b.fill(0x41, FIELDS.writer.offset, FIELDS.writer.offset + FIELDS.writer.size)), 'bad-writer');
  });

  it('refuses copies that sit where the other belongs', () => {
    const fixture = device();
    const swapped = expectInvalid({ ...fixture.input, primary: fixture.input.backup!, backup: fixture.input.primary }, 'misplaced-copy');
    assert.match(swapped.message, /a backup copy was found where the primary belongs/);
    assert.match(swapped.message, /a primary copy was found where the backup belongs/);
    const recorded = expectInvalid(withBothCopies(fixture, { primaryOffset: 2n * MiB }), 'misplaced-copy');
    assert.match(recorded.message, /records copies at 0x200000 and 0x3ff00000, but a device of 1073741824 bytes keeps them at 0x100000 and 0x3ff00000/);
    expectInvalid(withBothCopies(fixture, { backupOffset: 1022n * MiB }), 'misplaced-copy');
  });

  it('refuses two valid copies that disagree, naming the fields', () => {
    const fixture = device();
    const other = encodeCopies({ ...fixture.superblock, uuid: '00000000-1111-4222-8333-444444444444', createdAt: 1n });
    const verdict = expectInvalid({ ...fixture.input, backup: other.backup }, 'copies-disagree');
    assert.match(verdict.message, /primary \(reservation 6f1d2c3b-[^)]*\) and backup \(reservation 00000000-1111-[^)]*\) disagree on uuid, createdAt/);
    expectInvalid({ ...fixture.input, backup: encodeCopies({ ...fixture.superblock, reservedSize: 14n * MiB }).backup }, 'copies-disagree');
  });
});

describe('judge: binding to this device', () => {
  it('refuses a super block written for a device of another size', () => {
    const fixture = device();
    const verdict = expectInvalid({ ...fixture.input, deviceSize: 2n * GiB }, 'device-size-mismatch');
    assert.equal(verdict.message, 'the super block was written for a device of 1073741824 bytes (1.00 GiB) but this device has 2147483648 bytes (2.00 GiB)');
    assert.equal(verdict.superblock?.uuid, RESERVATION_UUID);
  });

  it('binds to the namespace UUID when both sides know one', () => {
    const bound = freshDevice(1n * GiB, { namespaceUuid: NAMESPACE_UUID });
    assert.equal(bound.superblock.flags & FLAG_NAMESPACE_BOUND, FLAG_NAMESPACE_BOUND);
    assert.deepEqual(expectValid({ ...bound.input, namespaceUuid: NAMESPACE_UUID }).notes, []);
    const other = 'ffffffff-0000-4000-8000-000000000000';
    const mismatch = expectInvalid({ ...bound.input, namespaceUuid: other }, 'namespace-mismatch');
    assert.equal(mismatch.message, `the super block is bound to pmem namespace ${NAMESPACE_UUID} but this device is namespace ${other}`);
    assert.match(expectInvalid({ ...bound.input, namespaceUuid: null }, 'namespace-mismatch').message, /\(no UUID\)/);
  });

  it('notes a binding it cannot check (an image file has no namespace)', () => {
    const bound = freshDevice(1n * GiB, { namespaceUuid: NAMESPACE_UUID });
    assert.deepEqual(expectValid(bound.input).notes, [`bound to pmem namespace ${NAMESPACE_UUID}; not checked here because the device is not a pmem namespace`]);
  });

  it('accepts an unbound super block on any namespace', () => {
    const fixture = device();
    assert.deepEqual(expectValid({ ...fixture.input, namespaceUuid: NAMESPACE_UUID }).notes, []);
  });
});

describe('judge: what the super block means', () => {
  it('refuses page sizes other than 4 KiB and per-page costs below Xen\'s', () => {
    const fixture = device();
    assert.match(expectInvalid(withBothCopies(fixture, { pageSize: 65536 }), 'unsupported-page-size').message, /65536-byte pages; Xen on x86-64 uses 4096/);
    assert.match(expectInvalid(withBothCopies(fixture, { pageInfoBytes: 24 }), 'costs-below-xen').message, /24\/8\/4 bytes per page .* Xen needs 32\/8\/4/);
    expectInvalid(withBothCopies(fixture, { compatM2pBytes: 0 }), 'costs-below-xen');
  });

  it('refuses misaligned offsets (2 MiB) and sizes (4 KiB), naming the value', () => {
    const fixture = device();
    const cases: [Partial<typeof fixture.superblock>, RegExp][] = [
      [{ reservedOffset: 2n * MiB + 4n * KiB }, /^reserved area offset 0x201000 is not a multiple of 2\.00 MiB$/],
      [{ reservedSize: 18n * MiB - 512n }, /^reserved area size 0x11ffe00 is not a multiple of 4\.00 KiB$/],
      [{ dataOffset: 15n * MiB }, /^data area offset 0xf00000 is not a multiple of 2\.00 MiB$/],
      [{ dataSize: 1002n * MiB - 512n }, /^data area size 0x3e9ffe00 is not a multiple of 4\.00 KiB$/],
    ];
    for (const [change, message] of cases) {
      assert.match(expectInvalid(withBothCopies(fixture, change), 'misaligned').message, message);
    }
  });

  it('refuses a device that is not whole pages', () => {
    // A super block that agrees with an odd-sized device still cannot describe whole pages.
    const fixture = device();
    const size = 1n * GiB + 512n;
    const input = withBothCopies(fixture, { deviceSize: size });
    const verdict = expectInvalid({ ...input, deviceSize: size }, 'misaligned');
    assert.equal(verdict.message, 'device size 0x40000200 is not a multiple of 4.00 KiB');
  });

  it('refuses empty areas', () => {
    const fixture = device();
    assert.equal(expectInvalid(withBothCopies(fixture, { reservedSize: 0n }), 'area-empty').message, 'the reserved area is empty');
    assert.equal(expectInvalid(withBothCopies(fixture, { dataSize: 0n }), 'area-empty').message, 'the data area is empty');
  });

  it('refuses areas that end past the device, even at the edge of 64 bits', () => {
    const fixture = device();
    // Data from 20 MiB, 1,004 MiB + 4 KiB long: one page past the end at 1 GiB.
    assert.equal(
      expectInvalid(withBothCopies(fixture, { dataSize: 1004n * MiB + 4n * KiB }), 'area-outside-device').message,
      "the data area 0x1400000-0x40000fff ends past the device's last byte 0x3fffffff");
    // The 18 MiB reserved area moved to 1 GiB: 0x40000000 + 0x1200000 - 1.
    assert.match(expectInvalid(withBothCopies(fixture, { reservedOffset: 1n * GiB }), 'area-outside-device').message, /^the reserved area 0x40000000-0x411fffff ends past/);
    const huge = U64_MAX - (U64_MAX % (2n * MiB));
    expectInvalid(withBothCopies(fixture, { dataOffset: huge, dataSize: 1n * GiB }), 'area-outside-device');
  });

  it('refuses a reserved area and a data area that overlap', () => {
    const fixture = device();
    // Data moved back to 12 MiB, inside the reserved 2..20 MiB; its 1,002 MiB end at 1,014 MiB.
    assert.equal(expectInvalid(withBothCopies(fixture, { dataOffset: 12n * MiB }), 'areas-overlap').message,
      'the reserved area 0x200000-0x13fffff and the data area 0xc00000-0x3f5fffff overlap');
  });

  it('refuses a reserved area smaller than Xen\'s rule 4, naming pages', () => {
    const fixture = device();
    // 1 GiB = 262,144 pages; rule 4 wants 2,560 pages (10 MiB). 8 MiB is 2,048 pages.
    assert.equal(expectInvalid(withBothCopies(fixture, { reservedSize: 8n * MiB }), 'reserved-too-small').message,
      'the reserved area holds 2048 pages (8.00 MiB) but Xen needs at least 2560 pages (10.00 MiB) for a device of 262144 pages');
  });

  it('refuses a reserved area smaller than the per-page costs it records', () => {
    const fixture = device();
    // Rule 4 is met (10 MiB + 4 KiB) but 44 bytes * 262,144 pages = 11 MiB is not.
    assert.match(expectInvalid(withBothCopies(fixture, { reservedSize: 10n * MiB + 4n * KiB }), 'reserved-too-small').message,
      /holds 10\.00 MiB but the per-page costs it records need 11\.00 MiB for 262144 pages/);
    // Costs recorded higher than Xen's: 76 bytes a page need 19 MiB, the area has 18.
    assert.match(expectInvalid(withBothCopies(fixture, { pageInfoBytes: 64 }), 'reserved-too-small').message, /need 19\.00 MiB/);
  });
});

describe('judge: the partition table', () => {
  it('requires a GPT', () => {
    const fixture = device();
    expectInvalid({ ...fixture.input, table: { kind: 'none' } }, 'partition-table-missing');
    expectInvalid({ ...fixture.input, table: { kind: 'mbr' } }, 'partition-table-not-gpt');
    const invalid = expectInvalid({ ...fixture.input, table: { kind: 'invalid', message: 'GPT header checksum is 0x1 but the header sums to 0x2' } }, 'partition-table-invalid');
    assert.equal(invalid.message, 'GPT header checksum is 0x1 but the header sums to 0x2');
  });

  it('refuses a table that covers a super block copy', () => {
    const fixture = device();
    // Entry array moved up against the primary copy: 0..1 MiB + 8 KiB is table.
    assert.match(expectInvalid(withTable(fixture, { entriesOffset: 1n * MiB - 8n * KiB }), 'superblock-overlaps-partition-table').message,
      /^the primary super block 0x100000-0x100fff overlaps the primary GPT 0x0-0x101fff$/);
    // Backup header well before the end: everything from its entries on is table.
    assert.match(expectInvalid(withTable(fixture, { alternateLba: (1023n * MiB + 8n * KiB) / 512n }), 'superblock-overlaps-partition-table').message,
      /^the backup super block 0x3ff00000-0x3ff00fff overlaps the backup GPT 0x3fefe000-0x3fffffff$/);
  });

  it('refuses a reserved area over the partition table', () => {
    const fixture = device();
    assert.match(expectInvalid(withBothCopies(fixture, { reservedOffset: 0n, reservedSize: 18n * MiB }), 'reserved-overlaps-partition-table').message,
      /^the reserved area 0x0-0x11fffff overlaps the primary GPT 0x0-0x43ff$/);
    assert.match(expectInvalid(withBothCopies(fixture, { reservedOffset: 1022n * MiB, reservedSize: 2n * MiB, dataOffset: 12n * MiB, dataSize: 1010n * MiB }), 'reserved-overlaps-partition-table').message,
      /backup GPT/);
  });

  it('refuses a data area over the partition table', () => {
    const fixture = device();
    // Data from 20 MiB to the device's end: 1,004 MiB.
    assert.match(expectInvalid(withBothCopies(fixture, { dataSize: 1004n * MiB }), 'data-overlaps-partition-table').message,
      /^the data area 0x1400000-0x3fffffff overlaps the backup GPT 0x3fffbe00-0x3fffffff$/);
    expectInvalid(withBothCopies(fixture, { dataOffset: 0n, dataSize: 2n * MiB }), 'data-overlaps-partition-table');
  });

  it('refuses a reserved or data area over a super block copy', () => {
    const fixture = device();
    // Up to 4 KiB past the backup copy: not the backup GPT (the last 16.5 KiB), but the copy.
    // Data from 20 MiB, 1,003 MiB + 4 KiB long: up to 1,023 MiB + 4 KiB.
    assert.equal(expectInvalid(withBothCopies(fixture, { dataSize: 1003n * MiB + 4n * KiB }), 'area-overlaps-superblock').message,
      'the data area 0x1400000-0x3ff00fff covers the backup super block at 0x3ff00000');
    // The reserved area moved after the data area (20..1,022 MiB), 4 KiB into the backup copy.
    assert.equal(expectInvalid(withBothCopies(fixture, { reservedOffset: 1022n * MiB, reservedSize: 1n * MiB + 4n * KiB, dataSize: 1002n * MiB }), 'area-overlaps-superblock').message,
      'the reserved area 0x3fe00000-0x3ff00fff covers the backup super block at 0x3ff00000');
  });

  it('refuses partitions over a copy, over the reserved area, or outside the data area', () => {
    const fixture = device();
    const table = (start: bigint, size: bigint): ProbeInput =>
      withTable(fixture, { partitions: [...fixture.table.partitions, { number: 2, start, size, typeGuid: 'x', name: '' }] });
    assert.equal(expectInvalid(table(1n * MiB, 1n * MiB), 'superblock-inside-partition').message,
      'partition 2 0x100000-0x1fffff covers the primary super block at 0x100000');
    assert.equal(expectInvalid(table(1022n * MiB, 2n * MiB - 16n * KiB), 'superblock-inside-partition').message,
      'partition 2 0x3fe00000-0x3fffbfff covers the backup super block at 0x3ff00000');
    assert.equal(expectInvalid(table(2n * MiB, 2n * MiB), 'reserved-overlaps-partition').message,
      'partition 2 0x200000-0x3fffff overlaps the reserved area 0x200000-0x13fffff');
    assert.equal(expectInvalid(table(1022n * MiB, 512n * KiB), 'partition-outside-data-area').message,
      'partition 2 0x3fe00000-0x3fe7ffff is not inside the data area 0x1400000-0x3fdfffff');
  });

  it('lets the first failure win, in the documented order', () => {
    const fixture = device();
    // Wrong size and misaligned and too small: the size binding is checked first.
    const input = withBothCopies(fixture, { reservedOffset: 3n * MiB, reservedSize: 4n * KiB });
    expectInvalid({ ...input, deviceSize: 2n * GiB }, 'device-size-mismatch');
    expectInvalid(input, 'misaligned');
    // Overlapping areas and no partition table: the areas are checked before the table.
    expectInvalid({ ...withBothCopies(fixture, { dataOffset: 12n * MiB }), table: { kind: 'none' } }, 'areas-overlap');
  });
});

describe('docs/superblock.md', () => {
  it('explains every reason code judge can return, and no other', () => {
    // ReasonCode is a type, so its members are read from the source (dist/test/ -> repository root).
    const source = readFileSync(new URL('../../src/core/validate.ts', import.meta.url), 'utf8');
    const union = /export type ReasonCode =([^;]+);/.exec(source);
    assert.ok(union, 'ReasonCode is declared in src/core/validate.ts');
    const codes = [...union[1]!.matchAll(/'([a-z0-9-]+)'/g)].map((m) => m[1]!).sort();
    assert.ok(codes.length >= 29);
    const doc = readFileSync(new URL('../../docs/superblock.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `([a-z0-9-]+)` \| \d \| (.+) \|$/gm)].map((m) => m[1]!).sort();
    assert.deepEqual(documented, codes);
  });
});
