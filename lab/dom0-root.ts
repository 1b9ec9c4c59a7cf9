// The Debian 13 (trixie) Dom0's root file system: a directory in the lab cache made by
// mmdebstrap (bookworm's own package) from Debian 13's packages alone, through mmdebstrap's own
// apt configuration (the source line below), never from the host's sources and never into the
// host's root. The guest mounts it read-only over 9p under a tmpfs overlay, as it does the host
// root for the Debian 12 Dom0 (lab/guest/initramfs-init).
//
// The tree is cached under a key made of everything that decides its content (the suite, the
// package list, the hooks, a recipe number): a second run finds it and costs a stat. The packages
// mmdebstrap downloaded are kept beside it, so that a new key (a package added) downloads only
// what is new.

import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { ProgressLog } from './progress.js';
import { debianSourceLine } from './private-apt.js';
import { runChecked } from './run-command.js';

/** Bump when the way the tree is made changes in a way the key below does not see. */
const ROOT_RECIPE = 1;

export const DEBIAN13_SUITE = 'trixie';

/**
 * What the Dom0 runs, beyond Debian's essential packages and apt (mmdebstrap's `apt` variant).
 * Recommends are not installed. Each line says who needs it.
 */
export const DOM0_ROOT_PACKAGES: ReadonlyArray<{ name: string; why: string }> = [
  { name: 'systemd', why: 'PID 1, journald, systemctl, systemd-run' },
  { name: 'udev', why: 'udevd and the rules the daemon is started by' },
  { name: 'dbus', why: 'systemd-run --wait (the hardening matrix)' },
  { name: 'nodejs', why: 'the daemon, the CLI and the guest programs' },
  { name: 'ndctl', why: 'namespaces and labels in the scenarios' },
  { name: 'libxencall1', why: 'the daemon\'s hypercalls' },
  { name: 'fdisk', why: 'xen-pmem setup (sfdisk)' },
  { name: 'kmod', why: 'modprobe, udev\'s module loading' },
  { name: 'util-linux', why: 'setpriv, blkid' },
  { name: 'mount', why: 'mount and umount' },
  { name: 'procps', why: 'ps' },
  { name: 'e2fsprogs', why: 'the file system on an NVDIMM' },
  { name: 'strace', why: 'looking into a process in the Dom0 by hand' },
  { name: 'dpkg', why: 'the package scenario' },
  { name: 'apt', why: 'the package scenario installs the .deb with apt-get' },
  { name: 'man-db', why: 'man xen-pmem in the package scenario' },
  // The toolstack for guests, without a hypervisor package: none of these touches a boot loader.
  { name: 'xen-utils-4.20', why: 'xl, for DomUs' },
  { name: 'xen-utils-common', why: 'the toolstack\'s init scripts and configuration' },
  { name: 'xenstore-utils', why: 'xenstore-read and friends' },
];

/** Packages whose versions the artifacts name (what an operator on Debian 13 runs). */
export const REPORTED_PACKAGES = ['nodejs', 'systemd', 'udev', 'ndctl', 'libxencall1', 'xen-utils-4.20', 'apt', 'dpkg'] as const;

/** Fixed, so the Dom0 is not on its first boot (no ConditionFirstBoot units) and journals have an id. */
const MACHINE_ID = 'f1a3c0de5e1f4b7a9d2c6e8b0a4d13c0';

function hooks(spec: TreeSpec, debCache: string): string[] {
  return [
    `--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
    `--setup-hook=sync-in ${debCache} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${debCache}`,
    `--customize-hook=echo ${MACHINE_ID} >"$1"/etc/machine-id`,
    ...(spec.boots ? [
      // A root that has booted once, as a Dom0's has: what the first boot's tmpfiles and
      // systemd-update-done would otherwise write into /etc and /var in the middle of a scenario
      // (the first unit that pulls sysinit.target in), where the package test's listings see it.
      // mmdebstrap's cleanup for reproducible trees would empty /etc/machine-id and remove dbus's
      // link to it after these hooks: skipped (it also leaves dpkg's and apt's logs, as on a host).
      '--skip=cleanup/reproducible',
      // systemd-tmpfiles wants /proc: mounted for it, and only for it.
      `--customize-hook=chroot "$1" sh -c 'mount -t proc proc /proc && systemd-tmpfiles --create --prefix=/etc --prefix=/var/lib --prefix=/var/log --prefix=/var/cache; status=$?; umount /proc; exit $status'`,
      `--customize-hook=chroot "$1" /usr/lib/systemd/systemd-update-done`,
    ] : []),
  ];
}

/** A Debian 13 tree the lab makes with mmdebstrap: the Dom0's root, or one to run trixie's lintian in. */
export interface TreeSpec {
  /** `rootfs`, `lintian`: the directory is `<cache>/debian13/<name>-<key>`. */
  name: string;
  packages: readonly string[];
  /** A file that proves the tree finished. */
  proves: string;
  /** Packages whose versions the record names. */
  reported: readonly string[];
  /** A root a Dom0 boots (systemd's first-boot files are made at build time), or a tree to chroot into. */
  boots: boolean;
}

export const DOM0_ROOT: TreeSpec = {
  name: 'rootfs',
  packages: DOM0_ROOT_PACKAGES.map((pkg) => pkg.name),
  proves: 'usr/bin/node',
  reported: REPORTED_PACKAGES,
  boots: true,
};

/** Debian 13's lintian, run on the host in a chroot of this tree (packaging/deb.ts). */
export const LINTIAN_TREE: TreeSpec = { name: 'lintian', packages: ['lintian'], proves: 'usr/bin/lintian', reported: ['lintian'], boots: false };

/** Everything that decides the tree's content, hashed; `<cache>/debian13/<name>-<key>` is the tree. */
export function treeKey(spec: TreeSpec = DOM0_ROOT): string {
  return createHash('sha256')
    .update(JSON.stringify({
      recipe: ROOT_RECIPE,
      suite: DEBIAN13_SUITE,
      source: debianSourceLine(DEBIAN13_SUITE),
      packages: spec.packages,
      hooks: hooks(spec, 'DEBS'),
    }))
    .digest('hex')
    .slice(0, 16);
}

/** The Dom0 root's key (kept for callers that only know the root). */
export function dom0RootKey(): string {
  return treeKey(DOM0_ROOT);
}

export interface Dom0Root {
  /** The tree, the guest's lower directory. */
  root: string;
  key: string;
  suite: string;
  /** Versions of the spec's reported packages in the tree. */
  packages: Record<string, string>;
  /** Seconds the mmdebstrap run took when the tree was made; bytes of the tree. */
  buildSeconds: number;
  bytes: number;
}

/** Where the tree for the current key lives, and whether a finished one is there (two stats). */
export function cachedTree(cacheDir: string, spec: TreeSpec = DOM0_ROOT): { root: string; record: string; present: boolean } {
  const root = join(cacheDir, 'debian13', `${spec.name}-${treeKey(spec)}`);
  const record = `${root}.json`;
  return { root, record, present: existsSync(record) && existsSync(join(root, spec.proves)) };
}

export async function readTree(cacheDir: string, spec: TreeSpec = DOM0_ROOT): Promise<Dom0Root | null> {
  const { record, present } = cachedTree(cacheDir, spec);
  if (!present) return null;
  try {
    return JSON.parse(await readFile(record, 'utf8')) as Dom0Root;
  } catch {
    return null;
  }
}

export const readDom0Root = (cacheDir: string): Promise<Dom0Root | null> => readTree(cacheDir, DOM0_ROOT);
export const ensureDom0Root = (cacheDir: string, log: ProgressLog): Promise<Dom0Root> => ensureTree(cacheDir, DOM0_ROOT, log);

/** Makes the tree unless the cache has it. Needs root (mmdebstrap's root mode, chroot). */
export async function ensureTree(cacheDir: string, spec: TreeSpec, log: ProgressLog): Promise<Dom0Root> {
  const known = await readTree(cacheDir, spec);
  if (known) return known;
  const base = join(cacheDir, 'debian13');
  const debCache = join(base, 'debs');
  await mkdir(debCache, { recursive: true });
  const { root, record } = cachedTree(cacheDir, spec);
  const partial = `${root}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await removeStalePartials(base);

  const names = spec.packages;
  log(`mmdebstrap ${DEBIAN13_SUITE}: ${spec.name} (${names.length} packages and their dependencies) into ${root}`);
  const startedAt = Date.now();
  await runChecked('mmdebstrap', [
    '--mode=root', '--variant=apt', '--format=directory', '--quiet',
    '--aptopt=APT::Install-Recommends "false"',
    `--include=${names.join(',')}`,
    ...hooks(spec, debCache),
    DEBIAN13_SUITE, partial, debianSourceLine(DEBIAN13_SUITE),
  ], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const buildSeconds = Math.round((Date.now() - startedAt) / 100) / 10;

  const status = await readFile(join(partial, 'var', 'lib', 'dpkg', 'status'), 'utf8');
  const installed = dpkgVersions(status);
  // The toolstack came without a hypervisor and without a boot loader: nothing for GRUB to run.
  const unwanted = [...installed.keys()].filter((name) => /^(grub|xen-hypervisor|linux-image)/.test(name));
  if (unwanted.length > 0) throw new Error(`the ${spec.name} tree pulled in ${unwanted.join(', ')}, which would touch a boot loader`);
  for (const name of names) {
    if (!installed.has(name)) throw new Error(`mmdebstrap finished without ${name} installed`);
  }
  const bytes = Number((await runChecked('du', ['-sb', partial])).split(/\s/)[0]);
  await rename(partial, root);
  const result: Dom0Root = {
    root,
    key: treeKey(spec),
    suite: DEBIAN13_SUITE,
    packages: Object.fromEntries(spec.reported.map((name) => [name, installed.get(name) ?? '?'])),
    buildSeconds,
    bytes,
  };
  await writeFile(`${record}.tmp`, JSON.stringify(result, null, 2) + '\n');
  await rename(`${record}.tmp`, record);
  await removeOlderTrees(base, spec, root, log);
  log(`${spec.name} of Debian 13 ready in ${buildSeconds} s: ${(bytes / 1024 / 1024).toFixed(0)} MiB (${Object.entries(result.packages).map(([name, version]) => `${name} ${version}`).join(', ')})`);
  return result;
}

/** Installed packages and their versions, from a dpkg status file. */
export function dpkgVersions(status: string): Map<string, string> {
  const versions = new Map<string, string>();
  for (const stanza of status.split(/\n\n+/)) {
    const name = /^Package:\s*(\S+)/m.exec(stanza)?.[1];
    const version = /^Version:\s*(\S+)/m.exec(stanza)?.[1];
    const state = /^Status:\s*(.*)$/m.exec(stanza)?.[1];
    if (name && version && state?.endsWith(' installed')) versions.set(name, version);
  }
  return versions;
}

/**
 * Trees of the same kind made for other keys (an earlier package list or recipe), 340 MB each:
 * removed once a new one is in place, unless a running process (a QEMU booting it, whose command
 * line names it) still uses it.
 */
export async function removeOlderTrees(base: string, spec: TreeSpec, current: string, log: ProgressLog): Promise<void> {
  const inUse = await commandLinesOfRunningProcesses();
  for (const name of readdirSync(base)) {
    const dir = join(base, name);
    if (!new RegExp(`^${spec.name}-[0-9a-f]{16}$`).test(name) || dir === current) continue;
    if (inUse.some((line) => line.includes(dir))) continue;
    log(`removing ${dir}, made for another recipe`);
    await rm(`${dir}.json`, { force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

async function commandLinesOfRunningProcesses(): Promise<string[]> {
  const lines: string[] = [];
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    lines.push(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''));
  }
  return lines;
}

/** Trees of earlier runs that died half-way (their process is gone). */
async function removeStalePartials(base: string): Promise<void> {
  for (const name of existsSync(base) ? readdirSync(base) : []) {
    const pid = Number(/\.partial-(\d+)$/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') continue;
    }
    // A run killed outright may have left mmdebstrap's mounts (/dev, /proc) inside: never walk
    // into those. Such a tree stays until someone unmounts it.
    const dir = join(base, name);
    const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
    if (mounts.split('\n').some((line) => (line.split(' ')[1] ?? '').startsWith(`${dir}/`))) continue;
    await rm(dir, { recursive: true, force: true });
  }
}
