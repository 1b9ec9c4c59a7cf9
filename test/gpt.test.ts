import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';

import {
  parseGptEntries, parseGptHeader, type EntriesVerdict, type GptHeader, type GptTable, type HeaderVerdict,
} from '../src/core/gpt.js';
import { MiB } from '../src/core/units.js';
import { crc32 } from './fuzz/forge.js';
import { readBytes, writeBytes } from './helpers/damage.js';
import {
  copySparseImage, hasCommand, makeScratchDir, makeSparseImage, resizeImage, sfdiskJson, writeTable,
} from '../fixtures/images.js';
import { show } from './helpers/show.js';

const SECTOR = 512;
const IMAGE_BYTES = 64n * MiB;
const LINUX_DATA = '0fc63daf-8483-4772-8e79-3d69d8477de4';
const SWAP = '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f';
/** GPT header fields used below (UEFI spec, table 5-5). */
const HEADER = { size: 12, crc: 16, myLba: 24, firstUsable: 40, lastUsable: 48, entriesCrc: 88 } as const;

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)';

/** What the probe does: the first two sectors, then the entry array the header names. */
function readTable(path: string, deviceSize = IMAGE_BYTES): { header: HeaderVerdict; entries?: EntriesVerdict } {
  const header = parseGptHeader(readBytes(path, 0n, 2 * SECTOR), SECTOR, deviceSize);
  if (header.kind !== 'gpt') return { header };
  const entries = parseGptEntries(header.header, readBytes(path, header.header.entriesOffset, header.header.entriesBytes));
  return { header, entries };
}

function tableOf(path: string): GptTable {
  const { header, entries } = readTable(path);
  assert.equal(header.kind, 'gpt', show(header));
  assert.equal(entries?.kind, 'gpt', show(entries));
  return (entries as Extract<EntriesVerdict, { kind: 'gpt' }>).table;
}

function headerOf(path: string): GptHeader {
  const { header } = readTable(path);
  assert.equal(header.kind, 'gpt', show(header));
  return (header as Extract<HeaderVerdict, { kind: 'gpt' }>).header;
}

/** Changes the primary GPT header and writes a correct header CRC, as a buggy tool would. */
function patchHeader(path: string, patch: (header: Buffer) => void): void {
  const sector = Buffer.from(readBytes(path, BigInt(SECTOR), SECTOR));
  patch(sector);
  const size = sector.readUInt32LE(HEADER.size);
  sector.writeUInt32LE(0, HEADER.crc);
  sector.writeUInt32LE(crc32(sector.subarray(0, size)), HEADER.crc);
  writeBytes(path, BigInt(SECTOR), sector);
}

describe('GPT reader on tables written by sfdisk', { skip }, () => {
  let scratch: ReturnType<typeof makeScratchDir>;
  /** Two named partitions inside narrowed usable LBAs, as setup writes them. */
  let pristine: string;

  before(() => {
    scratch = makeScratchDir('gpt');
    pristine = makeSparseImage(join(scratch.dir, 'pristine.img'), IMAGE_BYTES);
    writeTable(pristine, [
      'label: gpt',
      'unit: sectors',
      'first-lba: 8192',
      'last-lba: 122879',
      `start=8192, size=20480, type=${LINUX_DATA.toUpperCase()}, name="first data"`,
      `start=32768, size=4096, type=${SWAP.toUpperCase()}, name="second"`,
      '',
    ].join('\n'));
  });
  after(() => scratch.remove());

  function fresh(name: string): string {
    return copySparseImage(pristine, join(scratch.dir, `${name}.img`));
  }

  it('reads partitions and usable bounds exactly as sfdisk -J reports them', () => {
    const table = tableOf(pristine);
    const reported = sfdiskJson(pristine);
    assert.ok(reported);
    assert.equal(table.sectorSize, SECTOR);
    assert.equal(table.firstUsableByte, BigInt(reported.firstlba!) * 512n);
    assert.equal(table.usableEndByte, (BigInt(reported.lastlba!) + 1n) * 512n);
    assert.equal(table.firstUsableByte, 8192n * 512n);
    assert.equal(table.usableEndByte, 122880n * 512n);
    assert.equal(table.diskGuid, ((reported as { id?: string }).id ?? '').toLowerCase());
    assert.deepEqual(table.partitions.map((p) => ({ number: p.number, start: p.start, size: p.size, typeGuid: p.typeGuid, name: p.name })), [
      { number: 1, start: 8192n * 512n, size: 20480n * 512n, typeGuid: LINUX_DATA, name: 'first data' },
      { number: 2, start: 32768n * 512n, size: 4096n * 512n, typeGuid: SWAP, name: 'second' },
    ]);
    for (const [index, p] of (reported.partitions ?? []).entries()) {
      assert.equal(table.partitions[index]!.start, BigInt(p.start) * 512n);
      assert.equal(table.partitions[index]!.size, BigInt(p.size) * 512n);
    }
  });

  it('finds the entry array and the backup header where sfdisk puts them', () => {
    const header = headerOf(pristine);
    assert.equal(header.entriesOffset, 2n * 512n);
    assert.equal(header.entryCount, 128);
    assert.equal(header.entrySize, 128);
    assert.equal(header.entriesBytes, 128 * 128);
    assert.equal(header.alternateLba, IMAGE_BYTES / 512n - 1n);
  });

  it('keeps the kernel numbering when entries are sparse and out of disk order', () => {
    const path = makeSparseImage(join(scratch.dir, 'sparse-numbers.img'), IMAGE_BYTES);
    writeTable(path, [
      'label: gpt',
      `${path}3 : start=4096, size=2048, name="three"`,
      `${path}1 : start=8192, size=2048`,
      '',
    ].join('\n'));
    const table = tableOf(path);
    assert.deepEqual(table.partitions.map((p) => [p.number, p.start, p.name]), [[1, 8192n * 512n, ''], [3, 4096n * 512n, 'three']]);
    // sfdisk's default usable area: LBA 2048 (its 1 MiB alignment) to 34 sectors before the end.
    const reported = sfdiskJson(path)!;
    assert.equal(table.firstUsableByte, BigInt(reported.firstlba!) * 512n);
    assert.equal(table.usableEndByte, (BigInt(reported.lastlba!) + 1n) * 512n);
  });

  it('returns an empty partition list for a table without partitions', () => {
    const path = makeSparseImage(join(scratch.dir, 'empty-table.img'), IMAGE_BYTES);
    writeTable(path, 'label: gpt\n');
    assert.deepEqual(tableOf(path).partitions, []);
  });

  it('says "none" for a blank device', () => {
    const path = makeSparseImage(join(scratch.dir, 'blank.img'), IMAGE_BYTES);
    assert.deepEqual(readTable(path).header, { kind: 'none' });
  });

  it('says "mbr" for an MBR-only device', () => {
    const path = makeSparseImage(join(scratch.dir, 'mbr.img'), IMAGE_BYTES);
    writeTable(path, 'label: dos\nstart=2048, size=4096, type=83\n');
    assert.deepEqual(readTable(path).header, { kind: 'mbr' });
  });

  it('says "mbr" when an MBR without a protective entry sits in front of a GPT header', () => {
    const path = fresh('hybrid');
    // Retype the protective entry (0xee) to Linux (0x83): the MBR now claims the disk for itself.
    writeBytes(path, 446n + 4n, Uint8Array.of(0x83));
    assert.deepEqual(readTable(path).header, { kind: 'mbr' });
  });

  it('still reads a GPT whose protective MBR was zeroed', () => {
    const path = fresh('no-pmbr');
    writeBytes(path, 0n, new Uint8Array(SECTOR));
    assert.equal(tableOf(path).partitions.length, 2);
  });

  it('refuses a header whose CRC does not match, naming both sums', () => {
    const path = fresh('bad-header-crc');
    const stored = readBytes(path, 512n + BigInt(HEADER.crc), 4).readUInt32LE(0);
    writeBytes(path, 512n + 56n, Uint8Array.of(0x5a, 0xa5)); // inside the disk GUID
    const { header } = readTable(path);
    assert.equal(header.kind, 'invalid');
    assert.match((header as { message: string }).message, /GPT header checksum/);
    assert.ok((header as { message: string }).message.includes(`0x${stored.toString(16)}`));
  });

  it('refuses an entry array whose CRC does not match', () => {
    const path = fresh('bad-entries-crc');
    writeBytes(path, 1024n + 56n, Buffer.from('X', 'utf16le')); // the first partition's name
    const { header, entries } = readTable(path);
    assert.equal(header.kind, 'gpt');
    assert.equal(entries?.kind, 'invalid');
    assert.match((entries as { message: string }).message, /entry array checksum/);
  });

  it('refuses an entry array that runs into the usable area', () => {
    const path = fresh('entries-overlap');
    patchHeader(path, (h) => h.writeBigUInt64LE(20n, HEADER.firstUsable)); // entries occupy LBA 2..33
    const { header } = readTable(path);
    assert.equal(header.kind, 'invalid');
    assert.match((header as { message: string }).message, /entry array at LBA 2 runs into the usable area starting at LBA 20/);
  });

  it('refuses a partition outside the usable LBAs', () => {
    const path = fresh('partition-outside');
    // Shrink the usable area below partition 2 (LBA 32768..36863); header CRC stays right.
    patchHeader(path, (h) => h.writeBigUInt64LE(30000n, HEADER.lastUsable));
    const { header, entries } = readTable(path);
    assert.equal(header.kind, 'gpt');
    assert.equal(entries?.kind, 'invalid');
    assert.match((entries as { message: string }).message, /partition 2 \(LBA 32768\.\.36863\) lies outside the usable LBAs/);
  });

  it('refuses impossible header fields even with a correct CRC', () => {
    const cases: [string, (h: Buffer) => void, RegExp][] = [
      ['header size', (h) => h.writeUInt32LE(600, HEADER.size), /header size 600/],
      ['own LBA', (h) => h.writeBigUInt64LE(5n, HEADER.myLba), /at LBA 5, not 1/],
      ['usable range', (h) => h.writeBigUInt64LE(IMAGE_BYTES / 512n, HEADER.lastUsable), /usable LBAs/],
      ['entry size', (h) => h.writeUInt32LE(100, 84), /entry size 100/],
      ['entry array size', (h) => h.writeUInt32LE(100_000, 80), /larger than the 65536/],
    ];
    for (const [what, patch, message] of cases) {
      const path = fresh(`header-${what.replace(' ', '-')}`);
      patchHeader(path, patch);
      const { header } = readTable(path);
      assert.equal(header.kind, 'invalid', what);
      assert.match((header as { message: string }).message, message, what);
    }
  });

  it('refuses a backup header LBA beyond a device that shrank', () => {
    const path = fresh('shrunk');
    resizeImage(path, IMAGE_BYTES / 2n);
    const { header } = readTable(path, IMAGE_BYTES / 2n);
    assert.equal(header.kind, 'invalid');
    assert.match((header as { message: string }).message, new RegExp(`backup header LBA ${IMAGE_BYTES / 512n - 1n} is outside the device \\(last LBA ${IMAGE_BYTES / 1024n - 1n}\\)`));
  });

  it('reports a short read instead of reading past what it was given', () => {
    assert.equal(parseGptHeader(new Uint8Array(600), SECTOR, IMAGE_BYTES).kind, 'invalid');
    const header = headerOf(pristine);
    const entries = parseGptEntries(header, readBytes(pristine, header.entriesOffset, 100));
    assert.equal(entries.kind, 'invalid');
    assert.match((entries as { message: string }).message, /only 100 of 16384/);
  });
});
