// The thin sysfs reader: it finds pmem namespaces under injected roots, reads the few attributes
// the model needs (about a dozen small reads per namespace, because this runs on every udev
// event) and hands the texts to the pure builder. See docs/device-model.md.
//
// sysfs is read synchronously: the kernel answers from memory at once, and a plain read(2),
// readdir or readlink costs microseconds where the promise API's round trips through the thread
// pool cost a millisecond per device under load.
//
// Disappearance: a namespace whose own directory is gone reads as null ("gone": a remove event
// is on its way). A namespace that is still there while a device it names (its pfn/btt holder,
// its block device) vanished reads as unsupported with code `device-vanished`: it is being
// reconfigured and a later event will bring its new shape.

import { closeSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, sep } from 'node:path';
import { errorCode } from '../core/errno.js';
import { buildNamespaceModel, isIdleSeed } from './build-model.js';
import {
  attributeProblem,
  attributeText,
  claimKindOf,
  type AttributeRead,
  type BlockFacts,
  type BlockListing,
  type ClaimFacts,
  type NamespaceFacts,
} from './facts.js';
import { DEFAULT_ROOTS, type PmemNamespaceModel, type SysfsRoots } from './types.js';

export * from './types.js';
export { buildNamespaceModel, isIdleSeed } from './build-model.js';
export type { NamespaceFacts, AttributeRead, BlockFacts, BlockListing, ClaimFacts } from './facts.js';

const NAMESPACE_NAME = /^namespace(\d+)\.(\d+)$/;
const ND_DEVICE_NAME = /^(namespace|pfn|btt|dax)\d+\.\d+$/;
const REGION_NAME = /^region\d+$/;
const BLOCK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Where udev (and the kernel) say sysfs is; syspaths under it are re-rooted onto `sysRoot`. */
const KERNEL_SYSFS = '/sys';

/** The nd bus itself could not be listed (not ENOENT: that just means no pmem at all). */
export class SysfsReadError extends Error {
  readonly code = 'sysfs-unreadable';
  constructor(message: string) {
    super(message);
  }
}

function errnoOf(error: unknown): string {
  return errorCode(error) ?? 'EIO';
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * One buffer for every attribute read. A sysfs attribute is at most a page and comes whole from
 * the first read(2); readFileSync would fstat first and allocate a buffer per file, a dozen times
 * per namespace on every event.
 */
const ATTRIBUTE_BUFFER = Buffer.allocUnsafe(4096);

function readSmallFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const got = readSync(fd, ATTRIBUTE_BUFFER, 0, ATTRIBUTE_BUFFER.length, null);
    // A short read is the end: sysfs hands over the whole attribute at once, and a regular file
    // reads short only at its end. That saves the read(2) that would return 0.
    if (got < ATTRIBUTE_BUFFER.length) return ATTRIBUTE_BUFFER.toString('utf8', 0, got);
    // Not a sysfs attribute after all (a test tree's file can be anything): read it whole.
    return readFileSync(path, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function readAttribute(deviceDir: string, attribute: string): AttributeRead {
  try {
    const text = readSmallFile(join(deviceDir, attribute));
    return attributeText(text.endsWith('\n') ? text.slice(0, -1) : text);
  } catch (error) {
    const errno = errnoOf(error);
    if (errno === 'ENOENT') {
      return attributeProblem(exists(deviceDir) ? 'missing' : 'device-gone', errno);
    }
    if (errno === 'EACCES' || errno === 'EPERM') return attributeProblem('denied', errno);
    return attributeProblem('unreadable', errno);
  }
}

function listBlocks(ownerDir: string, devRoot: string): BlockListing {
  const owner = basename(ownerDir);
  let names: string[];
  try {
    names = readdirSync(join(ownerDir, 'block'));
  } catch (error) {
    const errno = errnoOf(error);
    if (errno !== 'ENOENT') return { state: 'unreadable', owner, errno };
    return exists(ownerDir) ? { state: 'listed', devices: [] } : { state: 'owner-gone', owner };
  }
  const devices = names.sort().map((name): BlockFacts => {
    const syspath = join(ownerDir, 'block', name);
    const size = readAttribute(syspath, 'size');
    const logicalBlockSize = readAttribute(syspath, 'queue/logical_block_size');
    return { name, devPath: join(devRoot, name), syspath, size, logicalBlockSize };
  });
  return { state: 'listed', devices };
}

function readClaim(claimDir: string, withRange: boolean): ClaimFacts {
  const namespace = readAttribute(claimDir, 'namespace');
  const resource = withRange ? readAttribute(claimDir, 'resource') : null;
  const size = withRange ? readAttribute(claimDir, 'size') : null;
  return { name: basename(claimDir), namespace, resource, size };
}

function deviceGone(read: AttributeRead | null): boolean {
  return read !== null && !read.ok && read.problem === 'device-gone';
}

/** Reads one namespace (its directory given as a real path); null when it is gone. */
function readNamespaceFacts(namespaceDir: string, devRoot: string): NamespaceFacts | null {
  const regionDir = dirname(namespaceDir);
  const mode = readAttribute(namespaceDir, 'mode');
  const holder = readAttribute(namespaceDir, 'holder');
  const size = readAttribute(namespaceDir, 'size');
  const resource = readAttribute(namespaceDir, 'resource');
  const uuid = readAttribute(namespaceDir, 'uuid');
  const regionResource = readAttribute(regionDir, 'resource');
  const regionSize = readAttribute(regionDir, 'size');
  const regionNumaNode = readAttribute(regionDir, 'numa_node');
  if ([mode, holder, size, resource].some(deviceGone)) return null;

  const claimKind = holder.ok ? claimKindOf(holder.text) : null;
  let claim: ClaimFacts | null = null;
  let blocks: BlockListing;
  if (holder.ok && claimKind !== null && claimKind !== '') {
    const claimDir = join(regionDir, holder.text);
    claim = readClaim(claimDir, claimKind === 'pfn');
    blocks = claimKind === 'dax' ? { state: 'not-applicable' } : listBlocks(claimDir, devRoot);
  } else {
    blocks = listBlocks(namespaceDir, devRoot);
  }

  const somethingVanished =
    deviceGone(claim?.namespace ?? null) ||
    blocks.state === 'owner-gone' ||
    (blocks.state === 'listed' && blocks.devices.some((device) => deviceGone(device.size)));
  // A vanished part may mean the whole namespace went: then it is gone, not "being reconfigured".
  if (somethingVanished && !exists(namespaceDir)) return null;

  return {
    namespace: basename(namespaceDir),
    region: basename(regionDir),
    mode,
    holder,
    size,
    resource,
    uuid,
    regionResource,
    regionSize,
    regionNumaNode,
    claim,
    blocks,
  };
}

function readNamespace(namespaceDir: string, devRoot: string): PmemNamespaceModel | null {
  const facts = readNamespaceFacts(namespaceDir, devRoot);
  return facts === null ? null : buildNamespaceModel(facts);
}

function namespaceOrder(name: string): [number, number] {
  const match = NAMESPACE_NAME.exec(name);
  return match ? [Number(match[1]), Number(match[2])] : [Infinity, Infinity];
}

/**
 * Every pmem namespace with capacity, ordered by region then namespace number. Empty when the
 * kernel has no nd bus (libnvdimm not loaded). Unconfigured size-0 namespaces are left out, as
 * `ndctl list` does.
 */
export function listPmemNamespaces(roots: SysfsRoots = DEFAULT_ROOTS): PmemNamespaceModel[] {
  const busDevices = join(roots.sysRoot, 'bus', 'nd', 'devices');
  let names: string[];
  try {
    names = readdirSync(busDevices);
  } catch (error) {
    const errno = errnoOf(error);
    if (errno === 'ENOENT') return [];
    throw new SysfsReadError(`Listing ${busDevices} failed with ${errno}.`);
  }
  const namespaces = names.filter((name) => NAMESPACE_NAME.test(name));
  namespaces.sort((a, b) => {
    const [regionA, idA] = namespaceOrder(a);
    const [regionB, idB] = namespaceOrder(b);
    return regionA - regionB || idA - idB;
  });
  const facts = namespaces.map((name) => {
    let namespaceDir: string;
    try {
      // realpath(3) in one call: the JavaScript realpathSync lstats each of the path's ~8 parts.
      namespaceDir = realpathSync.native(join(busDevices, name));
    } catch {
      return null;
    }
    return readNamespaceFacts(namespaceDir, roots.devRoot);
  });
  return facts.filter((each): each is NamespaceFacts => each !== null && !isIdleSeed(each)).map(buildNamespaceModel);
}

/**
 * Resolves a block device name (`pmem1`, `pmem1.2`, `pmem1s`) to its namespace's model. Null
 * when no such block device exists (any more), when it is not a pmem namespace's whole disk (a
 * partition, a loop device), or when the name cannot be a block device name.
 */
export function readPmemByBlockName(roots: SysfsRoots, name: string): PmemNamespaceModel | null {
  if (!BLOCK_NAME.test(name)) return null;
  let syspath: string;
  try {
    syspath = realpathSync.native(join(roots.sysRoot, 'class', 'block', name));
  } catch {
    return null;
  }
  return readResolved(roots, syspath);
}

/**
 * Resolves a udev syspath to its namespace's model: the block device (`…/block/pmem0`), the
 * namespace, or the pfn/btt/dax device that holds it. A syspath under `/sys` is re-rooted onto
 * `roots.sysRoot`. Null when the path is gone, outside sysfs, or not part of a pmem namespace
 * (partitions included: Xen is told about whole namespaces only).
 */
export function readPmemBySyspath(roots: SysfsRoots, syspath: string): PmemNamespaceModel | null {
  const rooted = rerooted(roots.sysRoot, syspath);
  if (rooted === null) return null;
  let real: string;
  try {
    real = realpathSync.native(rooted);
  } catch {
    return null;
  }
  return readResolved(roots, real);
}

function rerooted(sysRoot: string, syspath: string): string | null {
  const root = sysRoot.endsWith(sep) ? sysRoot.slice(0, -1) : sysRoot;
  if (syspath === root || syspath.startsWith(root + sep)) return syspath;
  if (syspath.startsWith(KERNEL_SYSFS + sep)) return root + syspath.slice(KERNEL_SYSFS.length);
  return null;
}

/** `real` is a real path: a block device directory or an nd device directory. */
function readResolved(roots: SysfsRoots, real: string): PmemNamespaceModel | null {
  const ownerDir = basename(dirname(real)) === 'block' ? dirname(dirname(real)) : real;
  const ownerName = basename(ownerDir);
  const regionDir = dirname(ownerDir);
  if (!ND_DEVICE_NAME.test(ownerName) || !REGION_NAME.test(basename(regionDir))) return null;
  if (NAMESPACE_NAME.test(ownerName)) return readNamespace(ownerDir, roots.devRoot);
  const held = readAttribute(ownerDir, 'namespace');
  if (!held.ok || !NAMESPACE_NAME.test(held.text)) return null;
  return readNamespace(join(regionDir, held.text), roots.devRoot);
}

/**
 * What kind of Xen guest this kernel is (`PV`, `PVH`, `HVM`), from /sys/hypervisor/guest_type;
 * null outside Xen or on a kernel without the attribute.
 */
export function readXenGuestType(roots: SysfsRoots = DEFAULT_ROOTS): string | null {
  try {
    return readFileSync(join(roots.sysRoot, 'hypervisor', 'guest_type'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}
