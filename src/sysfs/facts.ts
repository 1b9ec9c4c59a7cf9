// What the sysfs reader hands to the pure model builder: attribute texts exactly as read, or why
// they could not be read. Nothing here is interpreted yet; build-model.ts does that.

/** Why an attribute has no text. */
export type AttributeProblem =
  /** ENOENT while its device directory is still there. */
  | 'missing'
  /** ENOENT because its device directory is gone. */
  | 'device-gone'
  /** EACCES/EPERM: root-only attribute (the kernel hides addresses from other users). */
  | 'denied'
  /** Any other read error, e.g. ENXIO from a disabled pfn device's `resource`. */
  | 'unreadable';

/** One attribute: its text without the kernel's trailing newline, or a problem. */
export type AttributeRead =
  | { ok: true; text: string }
  | { ok: false; problem: AttributeProblem; errno: string };

export function attributeText(text: string): AttributeRead {
  return { ok: true, text };
}

export function attributeProblem(problem: AttributeProblem, errno: string): AttributeRead {
  return { ok: false, problem, errno };
}

/** The device that claims a namespace (pfnX.Y, bttX.Y or daxX.Y), as named by its `holder`. */
export interface ClaimFacts {
  name: string;
  /** Which namespace the claim says it holds; must name ours. */
  namespace: AttributeRead;
  /** Physical start of the data the block device exposes (pfn devices only). */
  resource: AttributeRead | null;
  /** Bytes of data the block device exposes (pfn devices only). */
  size: AttributeRead | null;
}

export interface BlockFacts {
  name: string;
  devPath: string;
  syspath: string;
  /** 512-byte sectors, whatever the logical block size. */
  size: AttributeRead;
  /** `queue/logical_block_size`. */
  logicalBlockSize: AttributeRead;
}

/** The `block/` directory of the device that owns the block device. */
export type BlockListing =
  /** Directory read; an empty list means the device has no block device (disabled). */
  | { state: 'listed'; devices: BlockFacts[] }
  /** The owning device (a claim) disappeared while it was read. */
  | { state: 'owner-gone'; owner: string }
  | { state: 'unreadable'; owner: string; errno: string }
  /** The mode has no block device to look for (devdax). */
  | { state: 'not-applicable' };

export interface NamespaceFacts {
  /** `namespace0.0`. */
  namespace: string;
  /** `region0`. */
  region: string;
  mode: AttributeRead;
  holder: AttributeRead;
  size: AttributeRead;
  resource: AttributeRead;
  /** Absent (missing) for label-less namespaces. */
  uuid: AttributeRead;
  regionResource: AttributeRead;
  regionSize: AttributeRead;
  /** Absent (missing) on kernels without NUMA. */
  regionNumaNode: AttributeRead;
  /** Read when `holder` names a device. */
  claim: ClaimFacts | null;
  blocks: BlockListing;
}

export type ClaimKind = 'pfn' | 'btt' | 'dax';

const CLAIM_NAME = /^(pfn|btt|dax)\d+\.\d+$/;

/** The kind of device a `holder` value names, '' for none, or null when it is not a claim name. */
export function claimKindOf(holder: string): ClaimKind | '' | null {
  if (holder === '') return '';
  const match = CLAIM_NAME.exec(holder);
  return match ? (match[1] as ClaimKind) : null;
}
