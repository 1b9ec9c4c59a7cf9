// The device model the daemon and `xen-pmem list` share. It says where each pmem block device
// lies in physical memory, or why that cannot be said. See docs/device-model.md.

import type { ClaimKind } from './facts.js';

/**
 * The namespace modes, in one table: the words the kernel's `mode` attribute (and ndctl) use for
 * each, which device may hold the namespace ('' for none), which device the block device hangs
 * under (the one the daemon unbinds before an add), and whether the block device maps linearly
 * onto physical memory, which is what a report to Xen needs. A new mode is a row here.
 */
export const NAMESPACE_MODES = {
  /** The block device is the namespace: block byte 0 is the namespace's `resource`. */
  raw: { words: ['raw'], holders: [''], blockUnder: 'namespace', mapsLinearly: true },
  /**
   * A pfn device keeps struct pages (on pmem, or in RAM) before the data: block byte 0 is the pfn
   * device's `resource`. '' is the kernel's static memory mode (no pfn device), on legacy e820 pmem.
   */
  fsdax: { words: ['memory', 'fsdax'], holders: ['pfn', ''], blockUnder: 'pfn', mapsLinearly: true },
  /** BTT: block offsets go through a translation table; no linear map. */
  sector: { words: ['safe', 'sector'], holders: ['btt'], blockUnder: 'btt', mapsLinearly: false },
  /** Device-DAX: a character device, no block device. */
  devdax: { words: ['dax', 'devdax'], holders: ['dax'], blockUnder: null, mapsLinearly: false },
} as const satisfies Record<string, { words: readonly string[]; holders: readonly (ClaimKind | '')[]; blockUnder: 'namespace' | ClaimKind | null; mapsLinearly: boolean }>;

export type KnownMode = keyof typeof NAMESPACE_MODES;
export type PmemMode = KnownMode | 'unknown';
/** The modes whose block device maps linearly onto physical memory: what can be reported. */
export type ReportableMode = { [M in KnownMode]: (typeof NAMESPACE_MODES)[M]['mapsLinearly'] extends true ? M : never }[KnownMode];

export function mapsLinearly(mode: PmemMode): mode is ReportableMode {
  return mode !== 'unknown' && NAMESPACE_MODES[mode].mapsLinearly;
}

export interface SysfsRoots {
  /** Where sysfs is mounted: `/sys` on a host, a fixture directory in tests. */
  sysRoot: string;
  /** Where device nodes live: `/dev` on a host. */
  devRoot: string;
}

export const DEFAULT_ROOTS: SysfsRoots = { sysRoot: '/sys', devRoot: '/dev' };

export interface PmemRegion {
  /** `region0`. */
  name: string;
  /**
   * Physical start address. Null only when the kernel would not tell (the attribute is root-only,
   * or vanished); the model is then unsupported.
   */
  start: bigint | null;
  /** Bytes; null under the same conditions as `start`. */
  size: bigint | null;
  /** Null when the kernel has no NUMA support or reports no node (-1). */
  numaNode: number | null;
}

export interface PmemBlockDevice {
  /** `pmem0`, `pmem1.2`. */
  name: string;
  /** `/dev/pmem0`. */
  devPath: string;
  /** The block device's sysfs directory (real path, the same string udev calls SYSPATH). */
  syspath: string;
  /** Bytes (the kernel's `size` attribute counts 512-byte sectors). */
  size: bigint;
  logicalBlockSize: number;
  /**
   * Physical address of block byte 0 (raw: the namespace's resource; fsdax: the pfn device's
   * resource). Null when the kernel would not tell; the model is then unsupported.
   */
  physStart: bigint | null;
}

export interface Unsupported {
  /** Stable reason code, one of `UnsupportedCode`. */
  code: UnsupportedCode;
  /** One sentence naming the devices and the numbers (in hex). */
  message: string;
}

export interface PmemNamespaceModel {
  /** `namespace0.0`. */
  namespace: string;
  mode: PmemMode;
  /** Null for label-less namespaces (the kernel shows no uuid for them). */
  namespaceUuid: string | null;
  region: PmemRegion;
  /** The block device, when the mode has one that maps linearly onto physical memory. */
  block: PmemBlockDevice | null;
  /** Null when supported; otherwise why not. */
  unsupported: Unsupported | null;
}

/** What the daemon may hand to Xen: every address known, a block device present. */
export interface SupportedPmemNamespace extends PmemNamespaceModel {
  mode: ReportableMode;
  region: PmemRegion & { start: bigint; size: bigint };
  block: PmemBlockDevice & { physStart: bigint };
  unsupported: null;
}

/** How the daemon, its state and `xen-pmem list` name a device: its block device, or its namespace. */
export function deviceKey(model: PmemNamespaceModel): string {
  return model.block?.name ?? model.namespace;
}

export function isSupportedPmem(model: PmemNamespaceModel): model is SupportedPmemNamespace {
  return (
    model.unsupported === null &&
    mapsLinearly(model.mode) &&
    model.block !== null &&
    model.block.physStart !== null &&
    model.region.start !== null &&
    model.region.size !== null
  );
}

/**
 * Every reason a namespace can be unsupported. The order of the checks that produce them is
 * fixed (see buildNamespaceModel) so that one device always gets the same reason.
 */
export const UNSUPPORTED_CODES = [
  /** BTT: block offsets pass through a translation table, so they do not map to addresses. */
  'sector-mode',
  /** Device-DAX: a character device, no block device to hold a super block. */
  'devdax-mode',
  /** The namespace's `mode` attribute holds a value this model does not know. */
  'unknown-mode',
  /** The namespace's holder is not the kind its mode implies, or does not point back to it. */
  'holder-mismatch',
  /** raw or fsdax, but no block device (the namespace or its pfn device is disabled). */
  'no-block-device',
  /** More than one block device under one namespace: not a shape the kernel makes. */
  'ambiguous-block-device',
  /** A device the namespace names (holder, block device) disappeared while it was read. */
  'device-vanished',
  /** An attribute the model needs is absent although its device is present. */
  'attribute-missing',
  /** An attribute is root-only and the caller is not root. */
  'permission-denied',
  /** Reading an attribute failed (for example ENXIO from a disabled pfn device). */
  'attribute-unreadable',
  /** An attribute holds text that is not the number or name it should be. */
  'attribute-unparsable',
  /** The namespace's physical range does not lie inside its region. */
  'outside-region',
  /** The pfn device's data range does not lie inside its namespace. */
  'outside-namespace',
  /** The block device's size is not the namespace's (raw) or the pfn device's (fsdax). */
  'size-mismatch',
] as const;

export type UnsupportedCode = (typeof UNSUPPORTED_CODES)[number];
