// Makes the lab's boot pieces ready for two Dom0 releases: Debian packages on the host, each
// release's Xen and Dom0 kernel extracted into a cache outside the repository, modules indexed, a
// tiny initramfs per kernel, and for Debian 13 a root file system of its own (lab/dom0-root.ts).
//
//   debian13  Debian 13 (trixie): Xen 4.20, Linux 6.12, its own root from Debian 13's packages
//             (systemd 257, Node 20.19), fetched through a private apt configuration in the cache
//   debian12  Debian 12 (bookworm): Xen 4.17, Linux 6.1, the host's own root (this machine is one)
//
// Everything lands in the cache and is described by lab-manifest.json; a second run that finds
// the manifest matching the recipe only checks that the files are still there.
//
// Run on its own: `node dist/lab/prepare.js` prints the artifacts as JSON.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

import { dpkgVersions, ensureDom0Root, readDom0Root, REPORTED_PACKAGES } from './dom0-root.js';
import { LabError, LabUnavailableError, runAsProgram } from './errors.js';
import { findBzImagePayload, isElf } from './kernel-image.js';
import { moduleLoadOrder } from './kernel-modules.js';
import { debianSourceLine, PrivateApt } from './private-apt.js';
import { stderrProgress, type ProgressLog } from './progress.js';
import { runChecked, runCommand } from './run-command.js';

/** Bump when the layout of the cache or the way a piece is built changes. */
const LAB_RECIPE_VERSION = 3;
/**
 * The manifest of this recipe. Recipe 2 wrote manifest.json, and a checkout of that code may share
 * the cache: each keeps its own manifest, and initramfs files are named by their inputs' digest.
 */
const MANIFEST = 'lab-manifest.json';

export const DEFAULT_CACHE_DIR = '/var/cache/xen-pmem-lab';

/**
 * Host packages and a file each one installs. The Debian 12 Dom0's root is the host's root, so
 * udev, kmod, ndctl, libxencall and node inside it are these very files; mmdebstrap makes the
 * Debian 13 Dom0's root.
 */
const HOST_PACKAGES: ReadonlyArray<{ name: string; proves: string }> = [
  { name: 'qemu-system-x86', proves: '/usr/bin/qemu-system-x86_64' },
  { name: 'busybox-static', proves: '/bin/busybox' },
  { name: 'udev', proves: '/usr/bin/udevadm' },
  { name: 'kmod', proves: '/usr/bin/kmod' },
  { name: 'libxencall1', proves: '/usr/lib/x86_64-linux-gnu/libxencall.so.1' },
  // libxenctrl, for the lab's XEN_DOMCTL_iomem_permission route (lab/guest/libxenctrl.ts).
  { name: 'libxenmisc4.17', proves: '/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17' },
  // The toolstack of the Debian 12 Dom0 (the host's root), for the PV guest saved and restored
  // beside the adds (lab/guest/pv-guest.ts); Debian 13's root brings its own.
  { name: 'xen-utils-4.17', proves: '/usr/lib/xen-4.17/bin/xl' },
  { name: 'xenstore-utils', proves: '/usr/bin/xenstore-read' },
  { name: 'ndctl', proves: '/usr/bin/ndctl' },
  // mke2fs and filefrag, for the DAX file system of the lab's pmem guest (lab/domu.ts).
  { name: 'e2fsprogs', proves: '/usr/sbin/filefrag' },
  { name: 'fdisk', proves: '/usr/sbin/sfdisk' },
  { name: 'cpio', proves: '/usr/bin/cpio' },
  { name: 'util-linux', proves: '/usr/bin/setpriv' },
  { name: 'xz-utils', proves: '/usr/bin/xz' },
  { name: 'zstd', proves: '/usr/bin/zstd' },
  { name: 'mmdebstrap', proves: '/usr/bin/mmdebstrap' },
];

export type Dom0Release = 'debian13' | 'debian12';
export const DOM0_RELEASES: readonly Dom0Release[] = ['debian13', 'debian12'];
/** The Dom0 a run gets when it does not ask for one: what an operator installs today. */
export const DEFAULT_DOM0: Dom0Release = 'debian13';

/** What each release's Dom0 is made of. */
const RELEASES: Record<Dom0Release, { debian: '12' | '13'; codename: string; xen: string }> = {
  debian13: { debian: '13', codename: 'trixie', xen: '4.20' },
  debian12: { debian: '12', codename: 'bookworm', xen: '4.17' },
};

/** What the initramfs must load before it can mount the host root over 9p under an overlay. */
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'] as const;

/** A release's own hypervisor, from Debian's xen-hypervisor-X.Y-amd64. */
export interface XenArtifacts {
  /** `4.20`, `4.17`. */
  version: string;
  package: string;
  packageVersion: string;
  /** Xen as an uncompressed multiboot ELF, ready for QEMU's -kernel. */
  image: string;
  /** The build configuration Debian's package ships (boot/xen-X.Y-amd64.config). */
  config: string;
}

/** One Dom0 release: its root, its kernel and initramfs, its Xen. */
export interface ReleaseArtifacts {
  release: Dom0Release;
  /** `13`, `12`. */
  debian: string;
  codename: string;
  /** The Dom0's root on the host: `/` (the host's own, Debian 12) or a tree in the cache. */
  root: string;
  /** The Dom0 kernel: the ELF inside Debian's bzImage, or the bzImage when that cannot be unpacked. */
  kernelImage: string;
  kernelPackage: string;
  kernelPackageVersion: string;
  /** `uname -r` of the Dom0 kernel, e.g. `6.12.117+deb13-amd64`. */
  kernelRelease: string;
  /** The indexed module tree the guest sees at /lib/modules/<kernelRelease>. */
  modulesDir: string;
  initramfs: string;
  xen: XenArtifacts;
  /** Versions of the Dom0's own packages (nodejs, systemd, udev, ndctl, libxencall1, …). */
  packages: Record<string, string>;
}

export interface LabArtifacts {
  cacheDir: string;
  qemu: string;
  releases: Record<Dom0Release, ReleaseArtifacts>;
}

interface Manifest {
  recipe: number;
  /** Per release: the digest of its initramfs's inputs. */
  initramfsInputs: Record<Dom0Release, string>;
  artifacts: LabArtifacts;
}

export interface PrepareOptions {
  /** Defaults to $XEN_PMEM_LAB_CACHE, then /var/cache/xen-pmem-lab. */
  cacheDir?: string;
  log?: ProgressLog;
}

export function labCacheDir(): string {
  return process.env.XEN_PMEM_LAB_CACHE || DEFAULT_CACHE_DIR;
}

/** lab/guest in the source tree, found from this file whether it runs from lab/ or dist/lab/. */
export function guestSourceDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [resolve(here, 'guest'), resolve(here, '..', '..', 'lab', 'guest')];
  for (const candidate of candidates) {
    if (existsSync(join(candidate, 'initramfs-init'))) return candidate;
  }
  throw new LabError('prepare-failed', `lab/guest/initramfs-init was not found near ${here}`);
}

/** The repository's top directory, which the guest sees at the same path through the host root. */
export function repositoryDir(): string {
  return resolve(guestSourceDir(), '..', '..');
}

/**
 * Makes every boot piece ready and returns where they are. Idempotent: with a matching manifest
 * it touches nothing. Throws LabUnavailableError when this machine cannot have the lab.
 */
export async function prepareLab(options: PrepareOptions = {}): Promise<LabArtifacts> {
  const cacheDir = resolve(options.cacheDir ?? labCacheDir());
  const log = options.log ?? stderrProgress('lab prepare');
  const initScript = join(guestSourceDir(), 'initramfs-init');

  const cached = await readManifest(cacheDir);
  if (cached && (await hostPackagesMissing()).length === 0 && (await artifactsExist(cached.artifacts))) {
    let same = true;
    for (const release of DOM0_RELEASES) {
      const artifacts = cached.artifacts.releases[release];
      const inputs = await initramfsInputs(initScript, artifacts.modulesDir, artifacts.kernelRelease);
      if (inputs.digest !== cached.initramfsInputs[release]) same = false;
    }
    if (same) return cached.artifacts;
  }

  if (process.getuid?.() !== 0) {
    throw new LabUnavailableError('not-root', 'the lab needs root (apt-get, mmdebstrap, a root file system shared with the guest); run it as root');
  }
  try {
    return await buildEverything(cacheDir, initScript, log);
  } catch (error) {
    if (error instanceof LabError) throw error;
    throw new LabUnavailableError('prepare-failed', `preparing the lab failed: ${(error as Error).message}`);
  }
}

/** How a release's packages are found: the host's apt for Debian 12, a private one for Debian 13. */
interface PackageSource {
  download(name: string, dir: string): Promise<{ path: string; version: string }>;
  kernelPackage(): Promise<string>;
}

async function buildEverything(cacheDir: string, initScript: string, log: ProgressLog): Promise<LabArtifacts> {
  await mkdir(cacheDir, { recursive: true });
  await installHostPackages(log);
  const debsDir = join(cacheDir, 'debs');
  await mkdir(debsDir, { recursive: true });

  const trixie = new PrivateApt(join(cacheDir, 'debian13', 'apt'), [debianSourceLine(RELEASES.debian13.codename)], log);
  const sources: Record<Dom0Release, () => Promise<PackageSource>> = {
    debian12: async () => ({
      download: (name, dir) => downloadPackage(name, dir, log),
      kernelPackage: () => newestKernelPackage(log),
    }),
    debian13: async () => {
      await trixie.ready();
      return {
        download: (name, dir) => trixie.download(name, dir),
        // linux-image-amd64 names the current kernel package: linux-image-6.12.117+deb13-amd64 (= 6.12.117-1).
        kernelPackage: async () => {
          const depends = await trixie.field('linux-image-amd64', 'Depends');
          const name = /^(linux-image-\S+)/.exec(depends)?.[1];
          if (name === undefined) throw new Error(`linux-image-amd64 of ${RELEASES.debian13.codename} depends on no kernel (${depends})`);
          return name;
        },
      };
    },
  };

  const releases = {} as Record<Dom0Release, ReleaseArtifacts>;
  const digests = {} as Record<Dom0Release, string>;
  for (const release of DOM0_RELEASES) {
    const made = await prepareRelease(release, await sources[release](), cacheDir, debsDir, initScript, log);
    releases[release] = made.artifacts;
    digests[release] = made.initramfsDigest;
  }

  const artifacts: LabArtifacts = { cacheDir, qemu: '/usr/bin/qemu-system-x86_64', releases };
  const manifest: Manifest = { recipe: LAB_RECIPE_VERSION, initramfsInputs: digests, artifacts };
  await writeFile(join(cacheDir, `${MANIFEST}.tmp`), JSON.stringify(manifest, null, 2) + '\n');
  await rename(join(cacheDir, `${MANIFEST}.tmp`), join(cacheDir, MANIFEST));
  return artifacts;
}

async function prepareRelease(
  release: Dom0Release, source: PackageSource, cacheDir: string, debsDir: string, initScript: string, log: ProgressLog,
): Promise<{ artifacts: ReleaseArtifacts; initramfsDigest: string }> {
  const { debian, codename, xen } = RELEASES[release];
  const kernelPackage = await source.kernelPackage();
  const kernelDeb = await source.download(kernelPackage, debsDir);
  const xenPackage = `xen-hypervisor-${xen}-amd64`;
  const xenDeb = await source.download(xenPackage, debsDir);

  const kernelTree = join(cacheDir, `${kernelPackage}_${kernelDeb.version}`);
  await extractOnce(kernelDeb.path, kernelTree, log);
  const kernelRelease = kernelPackage.replace(/^linux-image-/, '');
  const kernelImage = join(kernelTree, 'boot', `vmlinuz-${kernelRelease}`);
  // Debian 12's kernel ships its modules in /lib/modules, Debian 13's (merged /usr) in /usr/lib/modules.
  const modulesDir = [join(kernelTree, 'lib', 'modules', kernelRelease), join(kernelTree, 'usr', 'lib', 'modules', kernelRelease)]
    .find((dir) => existsSync(dir));
  if (!existsSync(kernelImage) || modulesDir === undefined) {
    throw new Error(`${kernelPackage} ${kernelDeb.version} has no boot/vmlinuz-${kernelRelease} or (usr/)lib/modules/${kernelRelease}`);
  }
  const dom0Kernel = await unpackKernel(kernelImage, log);
  if (!existsSync(join(modulesDir, 'modules.dep'))) {
    log(`depmod ${kernelRelease}`);
    // The host's depmod looks in <base>/lib/modules: a merged-/usr tree gets lib -> usr/lib.
    if (!existsSync(join(kernelTree, 'lib'))) await symlink('usr/lib', join(kernelTree, 'lib'));
    await runChecked('depmod', ['-b', kernelTree, kernelRelease]);
  }

  const xenTree = join(cacheDir, `${xenPackage}_${xenDeb.version}`);
  await extractOnce(xenDeb.path, xenTree, log);
  const xenImage = join(xenTree, 'xen.elf');
  if (!existsSync(xenImage)) {
    // QEMU's multiboot loader takes an ELF, not the gzip Debian ships for GRUB.
    const packed = await readFile(join(xenTree, 'boot', `xen-${xen}-amd64.gz`));
    await writeFile(`${xenImage}.tmp`, gunzipSync(packed));
    await rename(`${xenImage}.tmp`, xenImage);
  }
  const xenConfig = join(xenTree, 'boot', `xen-${xen}-amd64.config`);

  const inputs = await initramfsInputs(initScript, modulesDir, kernelRelease);
  const initramfs = join(cacheDir, `initramfs-${kernelRelease}-${inputs.digest.slice(0, 12)}.cpio.gz`);
  if (!existsSync(initramfs)) {
    log(`building the initramfs of ${kernelRelease} (${inputs.modules.map((module) => module.name).join(' ')})`);
    await buildInitramfs(initramfs, initScript, modulesDir, inputs.modules.map((module) => module.path));
  }

  let root = '/';
  let packages: Record<string, string>;
  if (release === 'debian13') {
    const made = await ensureDom0Root(cacheDir, log);
    root = made.root;
    packages = made.packages;
  } else {
    const installed = dpkgVersions(await readFile('/var/lib/dpkg/status', 'utf8'));
    packages = Object.fromEntries(REPORTED_PACKAGES.filter((name) => name !== 'xen-utils-4.20').map((name) => [name, installed.get(name) ?? '-']));
  }
  log(`${release} ready: Xen ${xenDeb.version}, Linux ${kernelRelease} (${kernelDeb.version}), node ${packages.nodejs}, systemd ${packages.systemd}`);
  return {
    artifacts: {
      release, debian, codename, root,
      kernelImage: dom0Kernel, kernelPackage, kernelPackageVersion: kernelDeb.version, kernelRelease, modulesDir, initramfs,
      xen: { version: xen, package: xenPackage, packageVersion: xenDeb.version, image: xenImage, config: xenConfig },
      packages,
    },
    initramfsDigest: inputs.digest,
  };
}

async function readManifest(cacheDir: string): Promise<Manifest | null> {
  try {
    const manifest = JSON.parse(await readFile(join(cacheDir, MANIFEST), 'utf8')) as Manifest;
    if (manifest.recipe !== LAB_RECIPE_VERSION || manifest.artifacts?.cacheDir !== cacheDir) return null;
    if (!DOM0_RELEASES.every((release) => manifest.artifacts.releases?.[release] && manifest.initramfsInputs?.[release])) return null;
    return manifest;
  } catch {
    return null;
  }
}

async function artifactsExist(artifacts: LabArtifacts): Promise<boolean> {
  if (!existsSync(artifacts.qemu)) return false;
  for (const release of DOM0_RELEASES) {
    const r = artifacts.releases[release];
    const paths = [r.xen.image, r.kernelImage, join(r.modulesDir, 'modules.dep'), r.initramfs];
    if (!paths.every((path) => existsSync(path))) return false;
    // The Debian 13 root: the tree of the current recipe (a changed package list is a new key).
    if (release === 'debian13') {
      const root = await readDom0Root(artifacts.cacheDir);
      if (root === null || root.root !== r.root) return false;
    }
  }
  return true;
}

/** Names of host packages whose proof file is missing. Cheap: one stat per package. */
async function hostPackagesMissing(): Promise<string[]> {
  return HOST_PACKAGES.filter((pkg) => !existsSync(pkg.proves)).map((pkg) => pkg.name);
}

async function installHostPackages(log: ProgressLog): Promise<void> {
  const wanted = HOST_PACKAGES.map((pkg) => pkg.name);
  // busybox (dynamic) also provides /bin/busybox; the initramfs needs the static build.
  const status = await runCommand('dpkg-query', ['-W', '-f', '${Package} ${db:Status-Status}\n', ...wanted]);
  const installed = new Set(
    status.stdout.split('\n').filter((line) => line.endsWith(' installed')).map((line) => line.split(' ')[0]),
  );
  const missing = wanted.filter((name) => !installed.has(name));
  await aptInstall(missing, log);
}

/** Installs Debian packages on the host, with one `apt-get update` and a retry if that fails. */
export async function aptInstall(packages: string[], log: ProgressLog): Promise<void> {
  if (packages.length === 0) return;
  log(`apt-get install ${packages.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const args = ['install', '-y', '--no-install-recommends', ...packages];
  const first = await runCommand('apt-get', args, { env });
  if (first.code === 0) return;
  log('apt-get install failed; running apt-get update once and retrying');
  await runChecked('apt-get', ['update'], { env });
  await runChecked('apt-get', args, { env });
}

/** The newest `linux-image-6.1.0-<abi>-amd64` the package index offers now. */
async function newestKernelPackage(log: ProgressLog): Promise<string> {
  const pattern = /^linux-image-6\.1\.0-(\d+)-amd64$/;
  const search = async (): Promise<string[]> => {
    const out = await runChecked('apt-cache', ['search', '--names-only', '^linux-image-6\\.1\\.0-[0-9]+-amd64$']);
    return out.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => pattern.test(name));
  };
  let names = await search();
  if (names.length === 0) {
    log('the package index knows no linux-image-6.1.0-*-amd64; running apt-get update');
    await runChecked('apt-get', ['update']);
    names = await search();
  }
  const abi = (name: string): number => Number(pattern.exec(name)?.[1] ?? -1);
  const newest = names.sort((a, b) => abi(b) - abi(a))[0];
  if (newest === undefined) throw new Error('Debian\'s package index offers no linux-image-6.1.0-*-amd64');
  return newest;
}

/** Downloads a package's .deb once; later runs reuse the file already in `dir`. */
async function downloadPackage(name: string, dir: string, log: ProgressLog): Promise<{ path: string; version: string }> {
  const policy = await runChecked('apt-cache', ['policy', name]);
  const version = /Candidate:\s*(\S+)/.exec(policy)?.[1];
  if (version === undefined || version === '(none)') throw new Error(`the package index has no candidate for ${name}`);
  // apt-get download names files with the epoch's colon escaped as %3a.
  const fileName = `${name}_${version.replace(':', '%3a')}_amd64.deb`;
  const path = join(dir, fileName);
  if (!existsSync(path)) {
    log(`apt-get download ${name}=${version}`);
    await runChecked('apt-get', ['download', `${name}=${version}`], { cwd: dir });
    if (!existsSync(path)) throw new Error(`apt-get download ${name} left no ${fileName} in ${dir}`);
  }
  return { path, version };
}

/** Extracts a .deb into `target` unless a finished extraction is already there. */
async function extractOnce(deb: string, target: string, log: ProgressLog): Promise<void> {
  if (existsSync(join(target, '.extracted'))) return;
  log(`dpkg-deb -x ${deb.slice(deb.lastIndexOf('/') + 1)}`);
  const partial = `${target}.partial`;
  await rm(partial, { recursive: true, force: true });
  await rm(target, { recursive: true, force: true });
  await runChecked('dpkg-deb', ['-x', deb, partial]);
  await writeFile(join(partial, '.extracted'), '');
  await rename(partial, target);
}

/** Decompresses the ELF kernel out of a bzImage once, next to it; falls back to the bzImage. */
async function unpackKernel(bzImage: string, log: ProgressLog): Promise<string> {
  const elf = `${bzImage}.elf`;
  if (existsSync(elf)) return elf;
  const image = await readFile(bzImage);
  const payload = findBzImagePayload(image);
  if (payload === null || (payload.format !== 'xz' && payload.format !== 'gzip' && payload.format !== 'zstd')) {
    log(`${bzImage} has a ${payload?.format ?? 'unrecognised'} payload; Xen will decompress it at every boot`);
    return bzImage;
  }
  log(`unpacking the ${payload.format} kernel inside ${bzImage.slice(bzImage.lastIndexOf('/') + 1)}`);
  const compressed = image.subarray(payload.offset, payload.offset + payload.length);
  // The kernel build appends the decompressed size after the stream; both decoders stop at the
  // stream's end instead of treating those bytes as a second stream.
  // zstd (Debian 13's kernels) has no single-stream switch: the 4 bytes of size are cut off.
  const unpacked = payload.format === 'gzip'
    ? gunzipSync(compressed)
    : payload.format === 'zstd'
      ? await decompress('zstd', ['--decompress', '--stdout', '--quiet'], compressed.subarray(0, compressed.length - 4))
      : await decompressXz(compressed);
  if (!isElf(unpacked)) throw new Error(`the payload of ${bzImage} did not decompress to an ELF kernel`);
  await writeFile(`${elf}.tmp`, unpacked);
  await rename(`${elf}.tmp`, elf);
  return elf;
}

/** `singleStream`: stop at the end of the first stream (a bzImage's payload has its size after it). */
function decompressXz(compressed: Uint8Array, singleStream = true): Promise<Buffer> {
  return decompress('xz', ['--decompress', '--stdout', ...(singleStream ? ['--single-stream'] : [])], compressed);
}

function decompress(tool: string, args: string[], compressed: Uint8Array): Promise<Buffer> {
  return new Promise((resolveXz, reject) => {
    const child = spawn(tool, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolveXz(Buffer.concat(chunks));
      else reject(new Error(`${tool} exited ${code}: ${stderr.trim()}`));
    });
    // xz and zstd stop reading at a corrupt stream and exit non-zero: that exit, not EPIPE, is the error.
    child.stdin.on('error', () => {});
    child.stdin.end(compressed);
  });
}

/** What the initramfs is made of, and a digest that changes whenever any of it does. */
async function initramfsInputs(initScript: string, modulesDir: string, kernelRelease: string) {
  const [script, modulesDep, modulesBuiltin, busybox] = await Promise.all([
    readFile(initScript),
    readFile(join(modulesDir, 'modules.dep'), 'utf8').catch(() => ''),
    readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => ''),
    stat('/bin/busybox').catch(() => null),
  ]);
  const modules = modulesDep ? moduleLoadOrder(modulesDep, modulesBuiltin, INITRAMFS_MODULES) : [];
  const digest = createHash('sha256')
    .update(script)
    .update(`\0${kernelRelease}\0${modules.map((module) => module.path).join(' ')}`)
    .update(`\0busybox ${busybox?.size ?? 0} ${busybox?.mtimeMs ?? 0}`)
    .digest('hex');
  return { modules, digest };
}

/**
 * Puts plain .ko copies of `modulePaths` (relative to `modulesDir`, in load order) into
 * `targetDir`, with `order` listing them for an init that insmods each in turn.
 */
export async function stageModules(targetDir: string, modulesDir: string, modulePaths: readonly string[]): Promise<void> {
  const order: string[] = [];
  for (const path of modulePaths) {
    // busybox insmod takes a plain .ko: Debian 13 ships its modules xz-compressed (.ko.xz).
    const base = path.slice(path.lastIndexOf('/') + 1).replace(/\.(xz|gz)$/, '');
    const target = join(targetDir, base);
    if (path.endsWith('.xz')) await writeFile(target, await decompressXz(await readFile(join(modulesDir, path)), false));
    else if (path.endsWith('.gz')) await writeFile(target, gunzipSync(await readFile(join(modulesDir, path))));
    else await copyFile(join(modulesDir, path), target);
    order.push(base);
  }
  await writeFile(join(targetDir, 'order'), order.join('\n') + '\n');
}

async function buildInitramfs(output: string, initScript: string, modulesDir: string, modulePaths: string[]): Promise<void> {
  const staging = `${output}.staging`;
  await rm(staging, { recursive: true, force: true });
  for (const dir of ['bin', 'modules', 'proc', 'sys', 'dev', 'host', 'rw', 'newroot']) {
    await mkdir(join(staging, dir), { recursive: true });
  }
  await copyFile('/bin/busybox', join(staging, 'bin', 'busybox'));
  await chmod(join(staging, 'bin', 'busybox'), 0o755);
  await symlink('busybox', join(staging, 'bin', 'sh'));
  await copyFile(initScript, join(staging, 'init'));
  await chmod(join(staging, 'init'), 0o755);
  await stageModules(join(staging, 'modules'), modulesDir, modulePaths);

  // cpio and gzip are the kernel's own initramfs format; newc with root ownership.
  await runChecked('sh', ['-c', `find . -print0 | cpio --null --quiet -o -H newc -R 0:0 | gzip -1 > '${output}.tmp'`], { cwd: staging });
  await rename(`${output}.tmp`, output);
  await rm(staging, { recursive: true, force: true });
}

await runAsProgram(import.meta.url, 'xen-pmem lab', async () => {
  const startedAt = Date.now();
  const artifacts = await prepareLab();
  process.stdout.write(JSON.stringify(artifacts, null, 2) + '\n');
  process.stderr.write(`[lab prepare] done in ${Date.now() - startedAt} ms\n`);
});
