// Devices in memory for the fuzzer: the few areas of a prepared device that a scan reads (MBR, GPT
// header and entries, both super block copies), kept as chunks at their offsets,
// zeros everywhere else. The chunks come from sparse images set up once with the real setup path
// (planner, sfdisk, super block writer); a mutant is a copy whose chunks were edited.

import { join } from 'node:path';

import { planLayout, type PartitionRequest } from '../../src/core/planner.js';
import { backupOffsetFor, PRIMARY_OFFSET, SUPERBLOCK_BYTES } from '../../src/core/superblock.js';
import { GiB, MiB, TiB } from '../../src/core/units.js';
import type { DeviceReader } from '../../src/io/ports.js';
import { writeLayout } from '../../src/io/layout-writer.js';
import { readBytes } from '../helpers/damage.js';
import { makeScratchDir, makeSparseImage } from '../../fixtures/images.js';

/** MBR, GPT header and the 16 KiB entry array sfdisk writes, at 512-byte sectors. */
export const HEAD_BYTES = 2 * 512 + 16 * 1024;

export interface Chunk {
  offset: bigint;
  bytes: Buffer;
  /** False while the bytes are shared with the image this one was cloned from. */
  owned: boolean;
}

/** Where the areas of a base layout are, for mutations that aim at boundaries. */
export interface LayoutMarks {
  reservedOffset: bigint;
  reservedSize: bigint;
  dataOffset: bigint;
  dataSize: bigint;
  backupOffset: bigint;
  /** The namespace the base was bound to, or null. */
  namespaceUuid: string | null;
}

export class MemoryImage {
  constructor(
    public size: bigint,
    readonly sectorSize: number,
    public chunks: Chunk[],
    readonly marks: LayoutMarks,
    readonly name: string,
  ) {}

  /** A copy whose chunks can be edited without touching this one (copied on first write). */
  clone(): MemoryImage {
    return new MemoryImage(this.size, this.sectorSize, this.chunks.map((c) => ({ offset: c.offset, bytes: c.bytes, owned: false })), this.marks, this.name);
  }

  /** Reads like a device: zeros between chunks, nothing past the end. */
  readSync(offset: bigint, length: number): Buffer {
    if (offset < 0n || offset >= this.size || length <= 0) return Buffer.alloc(0);
    const available = this.size - offset;
    const wanted = available < BigInt(length) ? Number(available) : length;
    const out = Buffer.alloc(wanted);
    const end = offset + BigInt(wanted);
    for (const chunk of this.chunks) {
      const chunkEnd = chunk.offset + BigInt(chunk.bytes.length);
      if (chunkEnd <= offset || chunk.offset >= end) continue;
      const from = chunk.offset > offset ? chunk.offset : offset;
      const to = chunkEnd < end ? chunkEnd : end;
      chunk.bytes.copy(out, Number(from - offset), Number(from - chunk.offset), Number(to - chunk.offset));
    }
    return out;
  }

  /**
   * Writes bytes as a device would keep them: into the chunks they overlap, and as one new chunk
   * when no single chunk covers them all. Reads never see past the end of the device.
   */
  write(offset: bigint, bytes: Uint8Array): void {
    const end = offset + BigInt(bytes.length);
    for (const chunk of this.chunks) {
      const chunkEnd = chunk.offset + BigInt(chunk.bytes.length);
      if (chunkEnd <= offset || chunk.offset >= end) continue;
      const from = chunk.offset > offset ? chunk.offset : offset;
      const to = chunkEnd < end ? chunkEnd : end;
      if (!chunk.owned) {
        chunk.bytes = Buffer.from(chunk.bytes);
        chunk.owned = true;
      }
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
        .copy(chunk.bytes, Number(from - chunk.offset), Number(from - offset), Number(to - offset));
    }
    const covered = this.chunks.some((c) => c.offset <= offset && c.offset + BigInt(c.bytes.length) >= end);
    // Later chunks win in readSync, so a new chunk may overlap older ones it agrees with.
    if (!covered) this.chunks.push({ offset, bytes: Buffer.from(bytes), owned: true });
  }

  /** The project's DeviceReader over this image, so the real scan code reads it. */
  reader(): DeviceReader {
    const image = this;
    let bytesRead = 0;
    return {
      path: `memory:${image.name}`,
      size: image.size,
      sectorSize: image.sectorSize,
      isBlockDevice: false,
      get bytesRead() { return bytesRead; },
      async read(offset, length) {
        const bytes = image.readSync(offset, length);
        bytesRead += bytes.length;
        return bytes;
      },
      async close() {},
    };
  }
}

interface BaseSpec {
  name: string;
  size: bigint;
  partitions?: PartitionRequest[];
  namespaceUuid?: string;
}

/**
 * The layouts mutants start from: the smallest device setup accepts, a few ordinary ones, one
 * with several partitions, a size that is no power of two, and 1 TiB.
 */
export const BASE_SPECS: BaseSpec[] = [
  // 17 MiB: 12 MiB reserved from 2 MiB, the one 2 MiB data chunk 14..16 MiB, backup at 16 MiB.
  { name: '17MiB', size: 17n * MiB },
  { name: '18MiB-bound', size: 18n * MiB, namespaceUuid: '0b6c2d1e-7f3a-4b5c-9d8e-1f2a3b4c5d6e' },
  { name: '256MiB-bound', size: 256n * MiB, namespaceUuid: 'a1b2c3d4-e5f6-4718-8293-a4b5c6d7e8f9' },
  { name: '256MiB-3-partitions', size: 256n * MiB, partitions: [{ size: 16n * MiB }, { size: 64n * MiB }, { size: 'rest' }] },
  { name: '1GiB+6MiB', size: 1n * GiB + 6n * MiB },
  { name: '1TiB-bound', size: 1n * TiB, namespaceUuid: '7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f' },
];

/** Sets each base up on a sparse file with the real setup path and keeps the areas a scan reads. */
export async function makeBaseImages(specs: BaseSpec[] = BASE_SPECS): Promise<MemoryImage[]> {
  const scratch = makeScratchDir('fuzz-bases');
  try {
    const images: MemoryImage[] = [];
    for (const spec of specs) {
      const path = makeSparseImage(join(scratch.dir, `${spec.name}.img`), spec.size);
      const planned = planLayout(spec.size, spec.partitions ?? []);
      if (!planned.ok) throw new Error(`base ${spec.name} does not plan: ${planned.message}`);
      const written = await writeLayout(path, planned.plan, { namespaceUuid: spec.namespaceUuid ?? null });
      if (written.verdict.status !== 'valid') throw new Error(`base ${spec.name} is not valid after setup: ${written.verdict.message}`);
      const backup = backupOffsetFor(spec.size);
      // Only what a scan reads; the backup GPT at the end never is.
      const chunks: Chunk[] = [
        { offset: 0n, bytes: Buffer.from(readBytes(path, 0n, HEAD_BYTES)), owned: true },
        { offset: PRIMARY_OFFSET, bytes: Buffer.from(readBytes(path, PRIMARY_OFFSET, SUPERBLOCK_BYTES)), owned: true },
        { offset: backup, bytes: Buffer.from(readBytes(path, backup, SUPERBLOCK_BYTES)), owned: true },
      ];
      const sb = written.superblock;
      images.push(new MemoryImage(spec.size, 512, chunks, {
        reservedOffset: sb.reservedOffset, reservedSize: sb.reservedSize,
        dataOffset: sb.dataOffset, dataSize: sb.dataSize, backupOffset: sb.backupOffset,
        namespaceUuid: sb.namespaceUuid,
      }, spec.name));
    }
    return images;
  } finally {
    scratch.remove();
  }
}
