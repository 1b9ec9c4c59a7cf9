// Sizes, alignment and formatting shared by every layer. All byte counts are BigInt: a pmem
// device can exceed 2^53 bytes in principle, and the on-disk format stores 64-bit values.

export const KiB = 1024n;
export const MiB = 1024n * KiB;
export const GiB = 1024n * MiB;
export const TiB = 1024n * GiB;

export const PAGE_BYTES = 4096n;
export const PAGE_SHIFT = 12n;
export const HUGE_PAGE_BYTES = 2n * MiB;

export const U64_MAX = (1n << 64n) - 1n;

export function alignUp(value: bigint, alignment: bigint): bigint {
  return ((value + alignment - 1n) / alignment) * alignment;
}

export function alignDown(value: bigint, alignment: bigint): bigint {
  return (value / alignment) * alignment;
}

export function isAligned(value: bigint, alignment: bigint): boolean {
  return value % alignment === 0n;
}

/** `0x100000000`: how addresses, offsets and PFNs are shown everywhere. */
export function hex(value: bigint | number): string {
  return '0x' + BigInt(value).toString(16);
}

/** Inclusive hex range, the way the kernel prints resources: `0x100000000-0x10fffffff`. */
export function hexRange(start: bigint, size: bigint): string {
  return `${hex(start)}-${hex(start + size - 1n)}`;
}

/** A half-open range as the hypervisor's rules speak of PFNs: `[0x100000, 0x110000)`. */
export function halfOpenRange(start: bigint, end: bigint): string {
  return `[${hex(start)}, ${hex(end)})`;
}

/** Whether the half-open ranges [aStart, aEnd) and [bStart, bEnd) share at least one unit. */
export function rangesOverlap(aStart: bigint, aEnd: bigint, bStart: bigint, bEnd: bigint): boolean {
  return aStart < bEnd && bStart < aEnd;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

/** `256.00 MiB`: binary units with two decimals, exact for whole units. */
export function humanSize(bytes: bigint): string {
  let unit = 0;
  let scale = 1n;
  while (unit < UNITS.length - 1 && bytes >= scale * 1024n) {
    scale *= 1024n;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  const hundredths = (bytes * 100n + scale / 2n) / scale;
  const whole = hundredths / 100n;
  const frac = (hundredths % 100n).toString().padStart(2, '0');
  return `${whole}.${frac} ${UNITS[unit]}`;
}

const SUFFIX_BYTES: Record<string, bigint> = {
  '': 1n, B: 1n,
  K: KiB, KB: KiB, KIB: KiB,
  M: MiB, MB: MiB, MIB: MiB,
  G: GiB, GB: GiB, GIB: GiB,
  T: TiB, TB: TiB, TIB: TiB,
};

/**
 * Parses `10G`, `512MiB`, `4096` (bytes) into bytes. Suffixes are binary, as in sfdisk and
 * lsblk. Returns null for anything else, so callers can name the bad argument themselves.
 */
export function parseSize(text: string): bigint | null {
  const match = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return null;
  const factor = SUFFIX_BYTES[match[2]!.toUpperCase()];
  if (factor === undefined) return null;
  return BigInt(match[1]!) * factor;
}

/** Converts a BigInt to a JSON-safe number, or throws if it cannot be represented exactly. */
export function toSafeNumber(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`${hex(value)} does not fit a JSON number exactly`);
  }
  return Number(value);
}
