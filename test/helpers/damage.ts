// Byte-level damage to image files. Field-level damage goes through the real encoder, so the
// checksum stays right and the check under test, not the checksum, is the one that fires.

import { closeSync, openSync, readSync, writeSync } from 'node:fs';

import {
  backupOffsetFor, decodeSuperblock, encodeSuperblock, FIELDS, PRIMARY_OFFSET, superblockChecksum,
  SUPERBLOCK_BYTES, type Superblock,
} from '../../src/core/superblock.js';

export function readBytes(path: string, offset: bigint, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const got = readSync(fd, buffer, 0, length, Number(offset));
    return buffer.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

export function writeBytes(path: string, offset: bigint, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, Number(offset));
  } finally {
    closeSync(fd);
  }
}

/** Inverts every bit of one byte, so the byte is certain to change. */
export function flipByte(path: string, offset: bigint): void {
  const [byte] = readBytes(path, offset, 1);
  writeBytes(path, offset, Uint8Array.of((byte ?? 0) ^ 0xff));
}

export function fillRandom(path: string, offset: bigint, length: number, seed: number): void {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    // xorshift32: reproducible garbage, so a failure can be replayed.
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    bytes[i] = state & 0xff;
  }
  writeBytes(path, offset, bytes);
}

/** Where the two copies of a device of `deviceSize` bytes live. */
export function copyOffsets(deviceSize: bigint): { primary: bigint; backup: bigint; both: bigint[] } {
  const backup = backupOffsetFor(deviceSize);
  return { primary: PRIMARY_OFFSET, backup, both: [PRIMARY_OFFSET, backup] };
}

/** Decodes the copy stored at `offset`; throws if it is not a valid block (a broken fixture). */
export function readSuperblockAt(path: string, offset: bigint): Superblock {
  const verdict = decodeSuperblock(readBytes(path, offset, SUPERBLOCK_BYTES));
  if (verdict.kind !== 'ok') throw new Error(`no valid super block at ${offset} in ${path}: ${JSON.stringify(verdict)}`);
  return verdict.superblock;
}

/**
 * Re-encodes the super block copies at the given offsets with `change` applied, each with a
 * correct checksum. Each copy keeps its own flags unless `change` sets them.
 */
export function rewriteSuperblocks(path: string, offsets: bigint[], change: (sb: Superblock) => Partial<Superblock>): void {
  for (const offset of offsets) {
    const current = readSuperblockAt(path, offset);
    writeBytes(path, offset, encodeSuperblock({ ...current, ...change(current) }));
  }
}

/**
 * Patches raw bytes of the block at `offset` and then writes a correct checksum, for damage the
 * encoder cannot express (header size, padding, text).
 */
export function patchSuperblockBytes(path: string, offset: bigint, patch: (block: Buffer) => void): void {
  const block = Buffer.from(readBytes(path, offset, SUPERBLOCK_BYTES));
  patch(block);
  resealSuperblock(block);
  writeBytes(path, offset, block);
}

/** Writes the checksum that makes `block` self-consistent again. */
export function resealSuperblock(block: Buffer): Buffer {
  block.writeUInt32LE(superblockChecksum(block), FIELDS.checksum.offset);
  return block;
}
