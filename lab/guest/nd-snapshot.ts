// A snapshot of everything the kernel shows about NVDIMMs: the nd bus with every attribute of
// every region, namespace, pfn/btt/dax device and DIMM, the pmem block devices, their /dev
// nodes and the persistent-memory lines of /proc/iomem. It reads a tree given by its root, so
// the same code runs on the Dom0's /sys and, in tests, on a small fake tree.

import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

export interface SysfsObject {
  /** The device's real sysfs directory (`readlink -f`). */
  path: string;
  /** Symlinks such as driver and subsystem, by the name of what they point to. */
  links: Record<string, string>;
  /** Attribute values, trailing newline removed. */
  attributes: Record<string, string>;
  /** Attributes whose read failed, with the error code (write-only ones give EIO). */
  unreadable: Record<string, string>;
  /** Attribute groups in subdirectories (nfit/, queue/, dax_region/). */
  groups: Record<string, Record<string, string>>;
  /** Child devices (subdirectories with their own uevent). */
  children: string[];
}

export interface DevNode {
  kind: 'block' | 'char' | 'other';
  major: number;
  minor: number;
  mode: string;
}

export interface NdSnapshot {
  /** `find /sys/bus/nd/devices -maxdepth 1`, each with its real path. */
  busDevices: Array<{ name: string; path: string }>;
  devices: Record<string, SysfsObject>;
  /** /sys/class/block/pmem* (the whole disk and any partitions). */
  block: Record<string, SysfsObject>;
  devNodes: Record<string, DevNode>;
  iomem: string[];
}

export interface SnapshotRoots {
  sys: string;
  dev: string;
  proc: string;
}

const SKIPPED_DIRS = new Set(['power', 'trace', 'mq', 'integrity', 'holders', 'slaves']);
const VALUE_LIMIT = 4096;

export function snapshotNd(roots: SnapshotRoots = { sys: '/sys', dev: '/dev', proc: '/proc' }): NdSnapshot {
  const busDir = join(roots.sys, 'bus', 'nd', 'devices');
  const names = existsSync(busDir) ? readdirSync(busDir).sort(naturalOrder) : [];
  const busDevices = names.map((name) => ({ name, path: realpathSync(join(busDir, name)) }));
  const devices: Record<string, SysfsObject> = {};
  for (const device of busDevices) devices[device.name] = readObject(device.path);

  const blockDir = join(roots.sys, 'class', 'block');
  const block: Record<string, SysfsObject> = {};
  const devNodes: Record<string, DevNode> = {};
  const pmemNames = existsSync(blockDir) ? readdirSync(blockDir).filter((name) => name.startsWith('pmem')).sort(naturalOrder) : [];
  for (const name of pmemNames) {
    block[name] = readObject(realpathSync(join(blockDir, name)));
    const node = join(roots.dev, name);
    if (existsSync(node)) devNodes[`/dev/${name}`] = describeNode(node);
  }

  let iomem: string[] = [];
  try {
    iomem = readFileSync(join(roots.proc, 'iomem'), 'utf8').split('\n')
      .filter((line) => /persistent|nvdimm|pmem|namespace/i.test(line))
      .map((line) => line.trimEnd());
  } catch {
    iomem = [];
  }
  return { busDevices, devices, block, devNodes, iomem };
}

export function readObject(path: string): SysfsObject {
  const object: SysfsObject = { path, links: {}, attributes: {}, unreadable: {}, groups: {}, children: [] };
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => naturalOrder(a.name, b.name))) {
    const full = join(path, entry.name);
    if (entry.isSymbolicLink()) {
      object.links[entry.name] = basename(readlinkSync(full));
    } else if (entry.isDirectory()) {
      if (existsSync(join(full, 'uevent'))) object.children.push(entry.name);
      else if (!SKIPPED_DIRS.has(entry.name)) object.groups[entry.name] = readGroup(full, object.unreadable, `${entry.name}/`);
    } else if (entry.isFile()) {
      const value = readAttribute(full);
      if (value.ok) object.attributes[entry.name] = value.text;
      else object.unreadable[entry.name] = value.code;
    }
  }
  return object;
}

function readGroup(dir: string, unreadable: Record<string, string>, prefix: string): Record<string, string> {
  const group: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => naturalOrder(a.name, b.name))) {
    if (!entry.isFile()) continue;
    const value = readAttribute(join(dir, entry.name));
    if (value.ok) group[entry.name] = value.text;
    else unreadable[prefix + entry.name] = value.code;
  }
  return group;
}

function readAttribute(path: string): { ok: true; text: string } | { ok: false; code: string } {
  try {
    const text = readFileSync(path, 'utf8').replace(/\n$/, '');
    return { ok: true, text: text.length > VALUE_LIMIT ? `${text.slice(0, VALUE_LIMIT)}…` : text };
  } catch (error) {
    return { ok: false, code: (error as NodeJS.ErrnoException).code ?? 'ERROR' };
  }
}

function describeNode(path: string): DevNode {
  const info = lstatSync(path).isSymbolicLink() ? statSync(path) : lstatSync(path);
  const kind = info.isBlockDevice() ? 'block' : info.isCharacterDevice() ? 'char' : 'other';
  // glibc's encoding of dev_t: 12 bits of major above 8 bits of minor, the rest above 32.
  const rdev = BigInt(info.rdev);
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { kind, major, minor, mode: (info.mode & 0o7777).toString(8).padStart(4, '0') };
}

/** `region2` before `region10`. */
export function naturalOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
