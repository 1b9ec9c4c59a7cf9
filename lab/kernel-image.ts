// Finds the compressed kernel inside a bzImage. Xen can boot a bzImage as Dom0 kernel, but then
// it decompresses it itself, which costs seconds of emulated CPU on every boot; the lab hands Xen
// the ELF inside instead, decompressed once on the host.

export type PayloadFormat = 'xz' | 'gzip' | 'zstd' | 'lz4' | 'bzip2' | 'lzma' | 'unknown';

export interface BzImagePayload {
  offset: number;
  length: number;
  format: PayloadFormat;
}

const MAGICS: ReadonlyArray<[PayloadFormat, number[]]> = [
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzma', [0x5d, 0x00, 0x00]],
];

/**
 * Reads the x86 boot protocol header: the payload starts after the real-mode setup sectors at
 * `payload_offset` and is `payload_length` bytes (boot protocol 2.08 and later). Returns null when
 * the file is not a bzImage this code understands.
 */
export function findBzImagePayload(image: Uint8Array): BzImagePayload | null {
  if (image.length < 0x250) return null;
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint32(0x202, true) !== 0x53726448 /* "HdrS" */) return null;
  if (view.getUint16(0x206, true) < 0x0208) return null;
  const setupSectors = image[0x1f1] || 4;
  const offset = (setupSectors + 1) * 512 + view.getUint32(0x248, true);
  const length = view.getUint32(0x24c, true);
  if (length === 0 || offset + length > image.length) return null;
  const format = MAGICS.find(([, magic]) => magic.every((byte, index) => image[offset + index] === byte))?.[0] ?? 'unknown';
  return { offset, length, format };
}

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}
