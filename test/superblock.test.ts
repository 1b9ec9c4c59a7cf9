import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { seeded } from './helpers/seed.js';

import {
  backupOffsetFor, BACKUP_DISTANCE_FROM_END, decodeSuperblock, differingFields, encodeSuperblock, FIELDS,
  FLAG_BACKUP_COPY, FLAG_NAMESPACE_BOUND, HEADER_BYTES_V1_0, MAJOR_VERSION, MINOR_VERSION, PRIMARY_OFFSET,
  SIGNATURE, superblockChecksum, SUPERBLOCK_BYTES, type DecodeVerdict, type Superblock,
} from '../src/core/superblock.js';
import { GiB, MiB, TiB, U64_MAX } from '../src/core/units.js';
import { crc32 } from './fuzz/forge.js';
import { resealSuperblock } from './helpers/damage.js';
import { show } from './helpers/show.js';

const SAMPLE: Superblock = {
  majorVersion: MAJOR_VERSION,
  minorVersion: MINOR_VERSION,
  flags: FLAG_NAMESPACE_BOUND,
  uuid: '0b3c8a5e-1f2d-4c6b-9a7e-5d4c3b2a1f0e',
  namespaceUuid: 'f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f',
  deviceSize: 1n * GiB,
  reservedOffset: 2n * MiB,
  reservedSize: 12n * MiB,
  dataOffset: 14n * MiB,
  dataSize: 1008n * MiB,
  primaryOffset: PRIMARY_OFFSET,
  backupOffset: backupOffsetFor(1n * GiB),
  createdAt: 1_795_000_000n,
  pageSize: 4096,
  pageInfoBytes: 32,
  m2pBytes: 8,
  compatM2pBytes: 4,
  writer: 'xen-pmem 0.1.0',
};

function decodeOk(bytes: Uint8Array): Superblock {
  const verdict = decodeSuperblock(bytes);
  assert.equal(verdict.kind, 'ok', `expected a valid block, got ${show(verdict)}`);
  return (verdict as Extract<DecodeVerdict, { kind: 'ok' }>).superblock;
}

function decodeDamaged(bytes: Uint8Array): Extract<DecodeVerdict, { kind: 'damaged' }> {
  const verdict = decodeSuperblock(bytes);
  assert.equal(verdict.kind, 'damaged', `expected a damaged block, got ${show(verdict)}`);
  return verdict as Extract<DecodeVerdict, { kind: 'damaged' }>;
}

/** The sample block with raw bytes changed and the checksum made right again. */
function patched(patch: (block: Buffer) => void, base: Superblock = SAMPLE): Buffer {
  const block = encodeSuperblock(base);
  patch(block);
  return resealSuperblock(block);
}

describe('super block layout (the struct is the spec)', () => {
  it('is one 4 KiB page with a 16-byte signature, version 1.0', () => {
    assert.equal(SUPERBLOCK_BYTES, 4096);
    assert.equal(SIGNATURE, 'XEN-PMEM-SUPERBL');
    assert.equal(Buffer.byteLength(SIGNATURE, 'latin1'), FIELDS.signature.size);
    assert.equal(MAJOR_VERSION, 1);
    assert.equal(MINOR_VERSION, 0);
    assert.equal(FLAG_BACKUP_COPY, 1);
    assert.equal(FLAG_NAMESPACE_BOUND, 2);
  });

  it('places every field at the offset and size of format v1.0', () => {
    const expected: Record<string, [number, number]> = {
      signature: [0, 16], majorVersion: [16, 2], minorVersion: [18, 2], flags: [20, 4], checksum: [24, 4],
      headerBytes: [28, 4], uuid: [32, 16], namespaceUuid: [48, 16], deviceSize: [64, 8],
      reservedOffset: [72, 8], reservedSize: [80, 8], dataOffset: [88, 8], dataSize: [96, 8],
      primaryOffset: [104, 8], backupOffset: [112, 8], createdAt: [120, 8], pageSize: [128, 4],
      pageInfoBytes: [132, 4], m2pBytes: [136, 4], compatM2pBytes: [140, 4], writer: [144, 48],
    };
    const actual = Object.fromEntries(Object.entries(FIELDS).map(([name, f]) => [name, [f.offset, f.size]]));
    assert.deepEqual(actual, expected);
  });

  it('gives each integer field the width of its kind and aligns it naturally', () => {
    const widths: Record<string, number> = { u16: 2, u32: 4, u64: 8, uuid: 16 };
    for (const [name, field] of Object.entries(FIELDS)) {
      const width = widths[field.kind];
      if (width === undefined) continue;
      assert.equal(field.size, width, `${name} is a ${field.kind}`);
      assert.equal(field.offset % Math.min(width, 8), 0, `${name} at ${field.offset} is not naturally aligned`);
    }
  });

  it('tiles bytes 0..headerBytes with no overlap and no gap', () => {
    const sorted = Object.entries(FIELDS).sort((a, b) => a[1].offset - b[1].offset);
    let cursor = 0;
    for (const [name, field] of sorted) {
      assert.equal(field.offset, cursor, `${name} starts at ${field.offset}, expected ${cursor}`);
      cursor = field.offset + field.size;
    }
    assert.equal(cursor, HEADER_BYTES_V1_0);
    assert.equal(HEADER_BYTES_V1_0, 192);
    assert.ok(HEADER_BYTES_V1_0 < SUPERBLOCK_BYTES);
  });

  it('keeps the primary copy at 1 MiB and the backup 1 MiB before the 4 KiB-aligned end', () => {
    assert.equal(PRIMARY_OFFSET, 1n * MiB);
    assert.equal(BACKUP_DISTANCE_FROM_END, 1n * MiB);
    assert.equal(backupOffsetFor(1n * GiB), 1023n * MiB);
    assert.equal(backupOffsetFor(1n * TiB), 1n * TiB - 1n * MiB);
    // An unaligned tail is ignored: the backup stays on a whole page.
    assert.equal(backupOffsetFor(1n * GiB + 1000n), 1023n * MiB);
    assert.equal(backupOffsetFor(1n * GiB + 5000n), 1023n * MiB + 4096n);
  });
});

describe('docs/superblock.md', () => {
  // dist/test/ -> the repository root.
  const doc = readFileSync(new URL('../../docs/superblock.md', import.meta.url), 'utf8');

  it('documents every field at the offset and size FIELDS gives it, and nothing else', () => {
    const rows = [...doc.matchAll(/^\| *(\d+) *\| *(\d+) *\| *`(\w+)` *\| *(.+?) *\|$/gm)]
      .map((m) => ({ name: m[3]!, offset: Number(m[1]), size: Number(m[2]), meaning: m[4]! }));
    assert.deepEqual(
      rows.map(({ name, offset, size }) => ({ name, offset, size })),
      Object.entries(FIELDS).map(([name, f]) => ({ name, offset: f.offset, size: f.size })),
    );
    for (const row of rows) assert.ok(row.meaning.length > 5, `${row.name} has a meaning`);
  });

  it('documents the padding after the v1.0 header', () => {
    const padding = /^\| *(\d+) *\| *(\d+) *\| *\(padding\) *\|/m.exec(doc);
    assert.ok(padding, 'a (padding) row');
    assert.equal(Number(padding[1]), HEADER_BYTES_V1_0);
    assert.equal(Number(padding[2]), SUPERBLOCK_BYTES - HEADER_BYTES_V1_0);
    assert.ok(doc.includes(`\`${SIGNATURE}\``), 'the signature is spelled out');
  });
});

describe('encodeSuperblock', () => {
  it('writes each value little-endian at its offset, checksum last', () => {
    const block = encodeSuperblock(SAMPLE);
    assert.equal(block.length, SUPERBLOCK_BYTES);
    assert.equal(block.subarray(0, 16).toString('latin1'), SIGNATURE);
    assert.equal(block.readUInt16LE(16), 1);
    assert.equal(block.readUInt16LE(18), 0);
    assert.equal(block.readUInt32LE(20), FLAG_NAMESPACE_BOUND);
    assert.equal(block.readUInt32LE(24), superblockChecksum(block));
    assert.equal(block.readUInt32LE(28), 192);
    assert.equal(block.subarray(32, 48).toString('hex'), SAMPLE.uuid.replaceAll('-', ''));
    assert.equal(block.subarray(48, 64).toString('hex'), SAMPLE.namespaceUuid!.replaceAll('-', ''));
    assert.equal(block.readBigUInt64LE(64), SAMPLE.deviceSize);
    assert.equal(block.readBigUInt64LE(72), SAMPLE.reservedOffset);
    assert.equal(block.readBigUInt64LE(80), SAMPLE.reservedSize);
    assert.equal(block.readBigUInt64LE(88), SAMPLE.dataOffset);
    assert.equal(block.readBigUInt64LE(96), SAMPLE.dataSize);
    assert.equal(block.readBigUInt64LE(104), SAMPLE.primaryOffset);
    assert.equal(block.readBigUInt64LE(112), SAMPLE.backupOffset);
    assert.equal(block.readBigUInt64LE(120), SAMPLE.createdAt);
    assert.deepEqual([128, 132, 136, 140].map((o) => block.readUInt32LE(o)), [4096, 32, 8, 4]);
    assert.equal(block.subarray(144, 144 + SAMPLE.writer.length).toString('utf8'), SAMPLE.writer);
    assert.ok(block.subarray(144 + SAMPLE.writer.length).every((byte) => byte === 0), 'writer tail and padding are zero');
  });

  it('round-trips through decodeSuperblock', () => {
    assert.deepEqual(decodeOk(encodeSuperblock(SAMPLE)), SAMPLE);
    const unbound = { ...SAMPLE, flags: FLAG_BACKUP_COPY, namespaceUuid: null };
    assert.deepEqual(decodeOk(encodeSuperblock(unbound)), unbound);
  });

  it('round-trips the largest u64 and u32 values', () => {
    const max: Superblock = {
      ...SAMPLE,
      deviceSize: U64_MAX, reservedOffset: U64_MAX, reservedSize: U64_MAX, dataOffset: U64_MAX,
      dataSize: U64_MAX, primaryOffset: U64_MAX, backupOffset: U64_MAX, createdAt: U64_MAX,
      pageSize: 0xffffffff, pageInfoBytes: 0xffffffff, m2pBytes: 0xffffffff, compatM2pBytes: 0xffffffff,
      minorVersion: 0xffff, flags: 0xffffffff,
    };
    assert.deepEqual(decodeOk(encodeSuperblock(max)), max);
  });

  it('cuts a writer longer than 47 bytes and keeps the NUL terminator', () => {
    const long = 'x'.repeat(100);
    assert.equal(decodeOk(encodeSuperblock({ ...SAMPLE, writer: long })).writer, 'x'.repeat(47));
  });

  it('cuts a long writer on a character boundary, so the block still decodes', () => {
    // 46 ASCII bytes then a 3-byte character: the 47-byte limit falls inside it.
    const writer = 'w'.repeat(46) + '\u20ac' + 'tail';
    assert.equal(decodeOk(encodeSuperblock({ ...SAMPLE, writer })).writer, 'w'.repeat(46));
  });

  it('refuses to encode a malformed UUID', () => {
    assert.throws(() => encodeSuperblock({ ...SAMPLE, uuid: 'not-a-uuid' }), RangeError);
    assert.throws(() => encodeSuperblock({ ...SAMPLE, uuid: SAMPLE.uuid.toUpperCase() }), RangeError);
  });
});

describe('the checksum covers the whole block', () => {
  it('is CRC-32 (IEEE) with the checksum field read as zero', () => {
    const block = encodeSuperblock(SAMPLE);
    const scratch = Buffer.from(block);
    scratch.writeUInt32LE(0xdeadbeef, FIELDS.checksum.offset);
    // The stored value must not feed into its own sum.
    assert.equal(superblockChecksum(scratch), superblockChecksum(block));
    // The forger's table-driven CRC-32 (checked against the standard check value in
    // fuzz.test.ts) is an independent reference for the polynomial and the bit order.
    const zeroed = Buffer.from(block);
    zeroed.writeUInt32LE(0, FIELDS.checksum.offset);
    assert.equal(superblockChecksum(block), crc32(zeroed));
    assert.equal(block.readUInt32LE(FIELDS.checksum.offset), crc32(zeroed));
  });

  it('turns a flip of any single byte into "damaged" (or "absent" in the signature)', () => {
    const good = encodeSuperblock(SAMPLE);
    for (let offset = 0; offset < SUPERBLOCK_BYTES; offset++) {
      const bad = Buffer.from(good);
      bad[offset] = bad[offset]! ^ 0xff;
      const verdict = decodeSuperblock(bad);
      if (offset < FIELDS.signature.size) {
        assert.equal(verdict.kind, 'absent', `byte ${offset}`);
      } else {
        assert.equal(verdict.kind, 'damaged', `byte ${offset}`);
        assert.equal((verdict as { reason: string }).reason, 'bad-checksum', `byte ${offset}`);
      }
    }
  });
});

describe('decodeSuperblock failures', () => {
  it('"absent" without the signature, "short-read" for a signed but short block', () => {
    assert.equal(decodeSuperblock(Buffer.alloc(SUPERBLOCK_BYTES)).kind, 'absent');
    assert.equal(decodeSuperblock(new Uint8Array(0)).kind, 'absent');
    const short = decodeDamaged(encodeSuperblock(SAMPLE).subarray(0, 100));
    assert.equal(short.reason, 'short-read');
    assert.match(short.message, /100 of 4096/);
  });

  it('names both sums on a bad checksum', () => {
    const block = encodeSuperblock(SAMPLE);
    const stored = block.readUInt32LE(FIELDS.checksum.offset);
    block[FIELDS.writer.offset + 40] = 0x41;
    const verdict = decodeDamaged(block);
    assert.equal(verdict.reason, 'bad-checksum');
    assert.ok(verdict.message.includes(stored.toString(16).padStart(8, '0')), verdict.message);
    assert.ok(verdict.message.includes(superblockChecksum(block).toString(16).padStart(8, '0')), verdict.message);
  });

  it('refuses any major version but 1, even with a correct checksum', () => {
    for (const major of [0, 2, 0xffff]) {
      const verdict = decodeDamaged(encodeSuperblock({ ...SAMPLE, majorVersion: major }));
      assert.equal(verdict.reason, 'unsupported-major-version');
      assert.match(verdict.message, new RegExp(`version ${major}\\.x`));
    }
  });

  it('requires headerBytes 192 in v1.0 and 192..4096 in later minors', () => {
    for (const [minor, headerBytes] of [[0, 191], [0, 200], [0, 4096], [1, 191], [1, 4097], [1, 0]] as const) {
      const verdict = decodeDamaged(patched((b) => {
        b.writeUInt16LE(minor, FIELDS.minorVersion.offset);
        b.writeUInt32LE(headerBytes, FIELDS.headerBytes.offset);
      }));
      assert.equal(verdict.reason, 'bad-header-size', `${minor}/${headerBytes}`);
      assert.ok(verdict.message.includes(`${headerBytes}`), verdict.message);
    }
  });

  it('accepts a later minor version that declares a longer header and uses it', () => {
    const block = patched((b) => {
      b.writeUInt16LE(3, FIELDS.minorVersion.offset);
      b.writeUInt32LE(256, FIELDS.headerBytes.offset);
      b.writeUInt32LE(0xabcdef, 200);
      // A flag a later minor defines: unknown to v1.0 readers, tolerated in v1.3.
      b.writeUInt32LE(FLAG_NAMESPACE_BOUND | (1 << 7), FIELDS.flags.offset);
    });
    const sb = decodeOk(block);
    assert.equal(sb.minorVersion, 3);
    assert.equal(sb.flags, FLAG_NAMESPACE_BOUND | (1 << 7));
    assert.equal(sb.deviceSize, SAMPLE.deviceSize);
  });

  it('refuses undefined flags in v1.0', () => {
    const verdict = decodeDamaged(encodeSuperblock({ ...SAMPLE, flags: FLAG_NAMESPACE_BOUND | 4 }));
    assert.equal(verdict.reason, 'unknown-flags');
    assert.match(verdict.message, /0x00000006/);
  });

  it('refuses non-zero bytes past the header, naming the first one', () => {
    for (const offset of [192, 1000, 4095]) {
      const verdict = decodeDamaged(patched((b) => { b[offset] = 1; }));
      assert.equal(verdict.reason, 'nonzero-padding');
      assert.match(verdict.message, new RegExp(`byte ${offset} is past the 192-byte header`));
    }
    const later = patched((b) => {
      b.writeUInt16LE(1, FIELDS.minorVersion.offset);
      b.writeUInt32LE(256, FIELDS.headerBytes.offset);
      b[256] = 1;
    });
    assert.equal(decodeDamaged(later).reason, 'nonzero-padding');
  });

  it('refuses a zero reservation UUID and a namespace UUID that disagrees with the bound flag', () => {
    const zero = decodeDamaged(patched((b) => b.fill(0, FIELDS.uuid.offset, FIELDS.uuid.offset + 16)));
    assert.equal(zero.reason, 'bad-uuid');
    const boundWithout = decodeDamaged(patched((b) => b.fill(0, FIELDS.namespaceUuid.offset, FIELDS.namespaceUuid.offset + 16)));
    assert.equal(boundWithout.reason, 'bad-uuid');
    assert.match(boundWithout.message, /bound to a namespace but records no namespace UUID/);
    const uuidWithout = decodeDamaged(patched((b) => b.writeUInt32LE(0, FIELDS.flags.offset)));
    assert.equal(uuidWithout.reason, 'bad-uuid');
    assert.ok(uuidWithout.message.includes(SAMPLE.namespaceUuid!), uuidWithout.message);
  });

  it('refuses a writer that is not NUL-terminated, clean UTF-8', () => {
    const cases: [string, (b: Buffer) => void][] = [
      ['no NUL', (b) => b.fill(0x61, FIELDS.writer.offset, FIELDS.writer.offset + FIELDS.writer.size)],
      ['bytes after the NUL', (b) => { b[FIELDS.writer.offset + 40] = 0x61; }],
      ['a control character', (b) => { b[FIELDS.writer.offset + 2] = 0x07; }],
      ['invalid UTF-8', (b) => { b[FIELDS.writer.offset + 2] = 0xc3; }],
    ];
    for (const [what, patch] of cases) {
      assert.equal(decodeDamaged(patched(patch)).reason, 'bad-writer', what);
    }
  });
});

describe('differingFields', () => {
  it('ignores only the backup flag', () => {
    assert.deepEqual(differingFields(SAMPLE, { ...SAMPLE, flags: SAMPLE.flags | FLAG_BACKUP_COPY }), []);
    assert.deepEqual(differingFields(SAMPLE, { ...SAMPLE, dataSize: 0n, writer: 'other' }), ['dataSize', 'writer']);
    assert.deepEqual(differingFields(SAMPLE, { ...SAMPLE, flags: 0, namespaceUuid: null }), ['flags', 'namespaceUuid']);
  });
});

// ---- properties ---------------------------------------------------------------------------

const PROPERTY_RUNS = 1000;

const hexDigits = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const uuidArb = fc.tuple(hexDigits(8), hexDigits(4), hexDigits(4), hexDigits(4), hexDigits(12))
  .map((parts) => parts.join('-'))
  .filter((uuid) => uuid !== '00000000-0000-0000-0000-000000000000');
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Text the decoder accepts: no controls, no replacement character, at most 47 UTF-8 bytes. */
const writerArb = fc.string({ unit: 'grapheme', maxLength: 20 })
  .filter((text) => Buffer.byteLength(text, 'utf8') <= FIELDS.writer.size - 1 && !/[\u0000-\u001f\u007f\ufffd]/.test(text));

const superblockArb: fc.Arbitrary<Superblock> = fc.record({
  minorVersion: fc.integer({ min: 0, max: 0xffff }),
  backupCopy: fc.boolean(),
  laterFlags: u32,
  uuid: uuidArb,
  namespaceUuid: fc.option(uuidArb, { nil: null }),
  deviceSize: u64, reservedOffset: u64, reservedSize: u64, dataOffset: u64, dataSize: u64,
  primaryOffset: u64, backupOffset: u64, createdAt: u64,
  pageSize: u32, pageInfoBytes: u32, m2pBytes: u32, compatM2pBytes: u32,
  writer: writerArb,
}).map(({ backupCopy, laterFlags, ...rest }) => {
  // v1.0 knows two flags; later minors may carry more, but the bound flag always means the same.
  const known = (backupCopy ? FLAG_BACKUP_COPY : 0) | (rest.namespaceUuid ? FLAG_NAMESPACE_BOUND : 0);
  const extra = rest.minorVersion === 0 ? 0 : (laterFlags & ~(FLAG_BACKUP_COPY | FLAG_NAMESPACE_BOUND));
  return { majorVersion: MAJOR_VERSION, flags: (known | extra) >>> 0, ...rest };
});

describe('properties', () => {
  it('(a) no mutation of a valid block decodes as valid with different content', () => {
    const mutation = fc.array(fc.tuple(fc.integer({ min: 0, max: SUPERBLOCK_BYTES - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 });
    fc.assert(fc.property(superblockArb, mutation, (sb, changes) => {
      const original = encodeSuperblock(sb);
      const mutated = Buffer.from(original);
      for (const [offset, value] of changes) mutated[offset] = value;
      const verdict = decodeSuperblock(mutated);
      if (mutated.equals(original)) {
        assert.equal(verdict.kind, 'ok');
        return;
      }
      const signatureHit = !mutated.subarray(0, 16).equals(original.subarray(0, 16));
      assert.equal(verdict.kind, signatureHit ? 'absent' : 'damaged');
    }), seeded(PROPERTY_RUNS));
  });

  it('(b) never throws on arbitrary bytes of any length', () => {
    const signed = fc.uint8Array({ minLength: 0, maxLength: 5000 }).map((tail) => {
      const bytes = new Uint8Array(16 + tail.length);
      bytes.set(Buffer.from(SIGNATURE, 'latin1'));
      bytes.set(tail, 16);
      return bytes;
    });
    // Random bytes behind a valid signature and checksum reach the checks after the checksum.
    const resealed = fc.uint8Array({ minLength: SUPERBLOCK_BYTES, maxLength: SUPERBLOCK_BYTES }).map((random) => {
      const block = Buffer.from(random);
      block.write(SIGNATURE, 0, 'latin1');
      block.writeUInt16LE(MAJOR_VERSION, FIELDS.majorVersion.offset);
      return resealSuperblock(block);
    });
    const offsetView = fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 9000 }), fc.nat(64)).map(([bytes, skip]) => bytes.subarray(Math.min(skip, bytes.length)));
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 9000 }), signed, resealed, offsetView), (bytes) => {
      const verdict = decodeSuperblock(bytes);
      assert.ok(['ok', 'absent', 'damaged'].includes(verdict.kind));
      if (verdict.kind === 'damaged') assert.ok(verdict.message.length > 0);
    }), seeded(PROPERTY_RUNS));
  });

  it('(c) random valid field values round-trip', () => {
    fc.assert(fc.property(superblockArb, (sb) => {
      const block = encodeSuperblock(sb);
      assert.equal(block.length, SUPERBLOCK_BYTES);
      assert.deepEqual(decodeOk(block), sb);
    }), seeded(PROPERTY_RUNS));
  });
});
