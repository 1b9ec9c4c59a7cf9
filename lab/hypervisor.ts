// Builds the hypervisor the lab boots for the success path: Xen with the series in hypervisor/
// applied, the hypervisor only (not the tools), with the configuration Debian's own binary
// package ships. Two bases carry the same series and ABI: Xen 4.20, Debian 13's `xen` source
// (the product's target), and 4.17, Debian 12's (docs/hypervisor.md, "Which Xen"). The result is
// cached under the lab cache, keyed by the base, the source version and a hash of the series,
// so that a second call only checks files.
//
//   npm run -s hypervisor -- --path [--base 4.20|4.17]   builds if needed, prints the ELF's path
//   npm run -s hypervisor [-- --base …]                    the same, then what was built as JSON
//
// The source comes through an apt configuration of the lab's own (a deb-src entry, lists and
// archives in the cache): the host's apt sources are never touched. Where Debian's archive does
// not serve the source (Debian 13's is 404 on this project's registry), XEN_PMEM_XEN_SOURCE names
// an unpacked Xen tree of that release to build on instead. Progress goes to stderr.

import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';

import { LabError, LabUnavailableError, runAsProgram } from './errors.js';
import { aptInstall, labCacheDir, prepareLab, repositoryDir, type Dom0Release } from './prepare.js';
import { debianSourceLine, PrivateApt } from './private-apt.js';
import { stderrProgress, type ProgressLog } from './progress.js';
import { lastLines, runChecked, runCommand } from './run-command.js';

/** Bump when the way a build is made changes, so that older cached builds are not taken. */
const BUILD_RECIPE = 2;
/** What `xen_version` reports as extraversion after the upstream one: `4.20.4-pmem`. */
export const XEN_VENDOR_VERSION = '-pmem';
/** Names an unpacked Xen source tree to build on when Debian's archive does not serve the source. */
export const XEN_SOURCE_ENV = 'XEN_PMEM_XEN_SOURCE';
/**
 * `BASE:DIR` names another series directory for one base (`4.17:/tmp/series`): every lab run that
 * boots the patched Xen then boots that series on that base. lab/mutants.ts uses it to run the lab
 * tests against a series with one protection taken out.
 */
export const XEN_SERIES_ENV = 'XEN_PMEM_XEN_SERIES';
/** Names a configuration of the build matrix (`debug`: every ASSERT on) for every lab run's Xen. */
export const XEN_VARIANT_ENV = 'XEN_PMEM_XEN_VARIANT';

export type XenBase = '4.20' | '4.17';
export const XEN_BASES: readonly XenBase[] = ['4.20', '4.17'];

/** Where each base comes from, and the Dom0 release whose toolstack and config go with it. */
interface BaseRecipe {
  dom0: Dom0Release;
  suite: string;
  /** The series directory, relative to hypervisor/. */
  seriesSubdir: string;
}

const BASES: Record<XenBase, BaseRecipe> = {
  '4.20': { dom0: 'debian13', suite: 'trixie', seriesSubdir: '.' },
  '4.17': { dom0: 'debian12', suite: 'bookworm', seriesSubdir: '4.17' },
};

/**
 * Configurations the series must build with, on top of Debian's (`npm run -s hypervisor --
 * --matrix`): each option the series' code depends on, and all of them at once.
 */
export const CONFIG_VARIANTS = {
  debian: [],
  debug: ['CONFIG_DEBUG=y'],
  pv32: ['CONFIG_PV32=y'],
  bigmem: ['CONFIG_BIGMEM=y'],
  flask: ['CONFIG_XSM=y', 'CONFIG_XSM_FLASK=y'],
  all: ['CONFIG_DEBUG=y', 'CONFIG_PV32=y', 'CONFIG_BIGMEM=y', 'CONFIG_XSM=y', 'CONFIG_XSM_FLASK=y'],
} as const satisfies Record<string, readonly string[]>;
export type ConfigVariant = keyof typeof CONFIG_VARIANTS;

/**
 * Words a configuration needs on Xen's command line in the lab: a Flask build panics at boot
 * without a policy, and the lab has none, so it boots with the dummy XSM module.
 */
const VARIANT_BOOT_ARGS: Record<ConfigVariant, readonly string[]> = {
  debian: [], debug: [], pv32: [], bigmem: [], flask: ['xsm=dummy'], all: ['xsm=dummy'],
};

/** The Dom0 release whose kernel, toolstack and config go with a base. */
export function dom0ForBase(base: XenBase): Dom0Release {
  return BASES[base].dom0;
}

/** Lines of compiler output a failed build quotes. */
const FAILURE_TAIL_LINES = 40;

/** Tools the build runs, and the Debian package that brings each. */
const BUILD_TOOLS: ReadonlyArray<{ tool: string; pkg: string }> = [
  { tool: '/usr/bin/dpkg-source', pkg: 'dpkg-dev' },
  { tool: '/usr/bin/patch', pkg: 'patch' },
  { tool: '/usr/bin/make', pkg: 'make' },
  { tool: '/usr/bin/gcc', pkg: 'gcc' },
  { tool: '/usr/bin/bison', pkg: 'bison' },
  { tool: '/usr/bin/flex', pkg: 'flex' },
  { tool: '/usr/bin/python3', pkg: 'python3' },
];

export interface PatchedXen {
  base: XenBase;
  /** The configuration of the matrix it was built with (`debian`: Debian's own). */
  variant: ConfigVariant;
  /**
   * Xen's command line in the lab: every log level (the series' pmem lines are info-level, which
   * a release build shows only when asked), and what the build needs (`xsm=dummy` for Flask).
   */
  bootArgs: readonly string[];
  /** `xen/xen`: the 32-bit multiboot ELF QEMU's -kernel takes. */
  xenImage: string;
  /** `xen/xen.gz`: what Debian installs as /boot/xen-*.gz. */
  xenGz: string;
  /** `xen/xen-syms`, for decoding a crash's addresses. */
  xenSyms: string;
  /** The Debian source package version the series was applied to, or `local-…` for a tree of one's own. */
  sourceVersion: string;
  /** sha256 of the series file and every patch it lists. */
  seriesHash: string;
  /** Seconds the build of this result took (olddefconfig and make), cached or not. */
  buildSeconds: number;
  /** True when this call found the result in the cache. */
  cached: boolean;
  dir: string;
}

export interface PatchedXenOptions {
  /** 4.20 unless told. */
  base?: XenBase;
  /** A configuration of the matrix (CONFIG_DEBUG …) on top of Debian's; XEN_PMEM_XEN_VARIANT's, else Debian's own. */
  variant?: ConfigVariant;
  log?: ProgressLog;
  /** Defaults to $XEN_PMEM_LAB_CACHE, then /var/cache/xen-pmem-lab. */
  cacheDir?: string;
  /** The series directory; defaults to the base's in hypervisor/. */
  seriesDir?: string;
}

interface BuildRecord {
  recipe: number;
  base: XenBase;
  sourceVersion: string;
  seriesHash: string;
  patches: string[];
  buildSeconds: number;
  builtAt: string;
}

export function hypervisorSeriesDir(base: XenBase = '4.20'): string {
  return resolve(repositoryDir(), 'hypervisor', BASES[base].seriesSubdir);
}

/** The configuration XEN_PMEM_XEN_VARIANT names; Debian's own when it is unset. */
export function variantFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigVariant {
  const value = env[XEN_VARIANT_ENV];
  if (!value) return 'debian';
  if (!Object.hasOwn(CONFIG_VARIANTS, value)) {
    throw new LabError('bad-options', `${XEN_VARIANT_ENV}=${value}: the configurations are ${Object.keys(CONFIG_VARIANTS).join(', ')}`);
  }
  return value as ConfigVariant;
}

/** The base and series directory XEN_PMEM_XEN_SERIES names, if it is set. */
export function seriesOverride(env: NodeJS.ProcessEnv = process.env): { base: XenBase; dir: string } | null {
  const value = env[XEN_SERIES_ENV];
  if (!value) return null;
  const at = value.indexOf(':');
  const base = value.slice(0, at) as XenBase;
  if (at === -1 || !XEN_BASES.includes(base)) {
    throw new LabError('bad-options', `${XEN_SERIES_ENV}=${value}: expected BASE:DIR with BASE one of ${XEN_BASES.join(', ')}`);
  }
  return { base, dir: resolve(value.slice(at + 1)) };
}

/** The patch names `series` lists, in order; `#` starts a comment. */
export function parseSeries(text: string): string[] {
  return text.split('\n').map((line) => line.replace(/#.*/, '').trim()).filter((line) => line.length > 0);
}

export function readSeries(seriesDir: string): string[] {
  return parseSeries(readFileSync(join(seriesDir, 'series'), 'utf8'));
}

/** What is wrong between `series` and `patches/`: a listed patch missing, or a patch not listed. */
export function seriesProblems(seriesDir: string): string[] {
  const listed = readSeries(seriesDir);
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const name of listed) {
    if (seen.has(name)) problems.push(`${name} is listed twice`);
    seen.add(name);
    if (!/^patches\/[^/]+\.patch$/.test(name)) problems.push(`${name} is not a patches/*.patch path`);
    else if (!existsSync(join(seriesDir, name))) problems.push(`${name} is listed but missing`);
  }
  const present = existsSync(join(seriesDir, 'patches')) ? readdirSync(join(seriesDir, 'patches')) : [];
  for (const file of present) {
    if (file.endsWith('.patch') && !seen.has(`patches/${file}`)) problems.push(`patches/${file} is not listed in series`);
  }
  return problems;
}

/**
 * sha256 over the series file and, in order, each listed patch's name and bytes. Anything else
 * in the directory (a README, file times) does not change it.
 */
export function seriesHash(seriesDir: string): string {
  const hash = createHash('sha256');
  const series = readFileSync(join(seriesDir, 'series'));
  hash.update(series);
  for (const name of parseSeries(series.toString('utf8'))) {
    hash.update(`\0${name}\0`);
    hash.update(readFileSync(join(seriesDir, name)));
  }
  return hash.digest('hex');
}

export { privateAptOptions } from './private-apt.js';

/**
 * The patched hypervisor of a base, built if the cache has no result for this source and series.
 * Throws LabUnavailableError('source-unavailable') when the base's source cannot be had here (so
 * tests can say why they skip), and LabError('prepare-failed') naming what failed otherwise: a
 * download, the patch that did not apply, or the build, with the last lines of the compiler's
 * output.
 */
export async function preparePatchedXen(options: PatchedXenOptions = {}): Promise<PatchedXen> {
  const base = options.base ?? '4.20';
  const variant = options.variant ?? variantFromEnv();
  const log = options.log ?? stderrProgress(`hypervisor ${base}${variant === 'debian' ? '' : ` ${variant}`}`);
  const override = seriesOverride();
  const seriesDir = resolve(options.seriesDir ?? (override?.base === base ? override.dir : hypervisorSeriesDir(base)));
  const root = join(resolve(options.cacheDir ?? labCacheDir()), 'hypervisor', base);

  const problems = seriesProblems(seriesDir);
  if (problems.length > 0) throw new LabError('prepare-failed', `the patch series in ${seriesDir} is inconsistent: ${problems.join('; ')}`);
  const hash = seriesHash(seriesDir) + (variant === 'debian' ? '' : `-${variant}`);

  const local = localTree(base);
  const known = local ?? (await knownSource(root));
  if (known !== null) {
    const cached = await cachedBuild(root, base, known.version, hash);
    if (cached !== null) return cached;
  }

  if (process.getuid?.() !== 0) {
    throw new LabUnavailableError('not-root', 'building the patched hypervisor needs root (apt-get, the lab cache); run it as root');
  }
  try {
    await installBuildTools(log);
    const source = known ?? (await fetchSource(root, base, log));
    return (await cachedBuild(root, base, source.version, hash)) ?? (await build(root, base, source, seriesDir, hash, CONFIG_VARIANTS[variant], log));
  } catch (error) {
    if (error instanceof LabError) throw error;
    throw new LabError('prepare-failed', `building the patched hypervisor ${base} failed: ${(error as Error).message}`);
  }
}

/**
 * The newest base that can be built here, with its Dom0 release: 4.20 when Debian 13's source (or
 * XEN_PMEM_XEN_SOURCE) is at hand, else 4.17, saying why; the base XEN_PMEM_XEN_SERIES names when
 * it is set.
 */
export async function prepareNewestPatchedXen(log?: ProgressLog): Promise<{ xen: PatchedXen; fallback: string | null }> {
  const override = seriesOverride();
  if (override !== null) {
    return { xen: await preparePatchedXen({ base: override.base, log }), fallback: override.base === '4.20' ? null : `${XEN_SERIES_ENV} names a series for ${override.base}: ${override.dir}` };
  }
  try {
    return { xen: await preparePatchedXen({ base: '4.20', log }), fallback: null };
  } catch (error) {
    if (!(error instanceof LabUnavailableError) || error.reason !== 'source-unavailable') throw error;
    return { xen: await preparePatchedXen({ base: '4.17', log }), fallback: error.message };
  }
}

/** The configuration a build key names: the series' hash, then `-<variant>` unless Debian's. */
function variantOfKey(hash: string): ConfigVariant {
  return (/-([a-z0-9]+)$/.exec(hash)?.[1] as ConfigVariant | undefined) ?? 'debian';
}

function buildDir(root: string, version: string, hash: string): string {
  const variant = variantOfKey(hash);
  return join(root, 'builds', `${version}-${hash.slice(0, 16)}${variant === 'debian' ? '' : `-${variant}`}`);
}

async function cachedBuild(root: string, base: XenBase, version: string, hash: string): Promise<PatchedXen | null> {
  const dir = buildDir(root, version, hash);
  let record: BuildRecord;
  try {
    record = JSON.parse(await readFile(join(dir, 'build.json'), 'utf8')) as BuildRecord;
  } catch {
    return null;
  }
  if (record.recipe !== BUILD_RECIPE || record.base !== base || record.sourceVersion !== version || record.seriesHash !== hash) return null;
  const result = resultIn(dir, record, true);
  return [result.xenImage, result.xenGz].every((path) => existsSync(path)) ? result : null;
}

function resultIn(dir: string, record: BuildRecord, cached: boolean): PatchedXen {
  const variant = variantOfKey(record.seriesHash);
  return {
    base: record.base,
    variant,
    bootArgs: ['loglvl=all', 'guest_loglvl=all', ...VARIANT_BOOT_ARGS[variant]],
    xenImage: join(dir, 'xen'),
    xenGz: join(dir, 'xen.gz'),
    xenSyms: join(dir, 'xen-syms'),
    sourceVersion: record.sourceVersion,
    seriesHash: record.seriesHash,
    buildSeconds: record.buildSeconds,
    cached,
    dir,
  };
}

interface SourcePackage {
  version: string;
  /** A Debian source package's .dsc, unpacked with dpkg-source. */
  dsc?: string;
  /** Or an unpacked tree, copied. */
  tree?: string;
}

/**
 * XEN_PMEM_XEN_SOURCE, for the 4.20 base: an unpacked Xen 4.20 tree. Its version key names the
 * release it says it is and where it is, so that another tree is another build.
 */
function localTree(base: XenBase): SourcePackage | null {
  const tree = process.env[XEN_SOURCE_ENV];
  if (base !== '4.20' || !tree) return null;
  const makefile = join(tree, 'xen', 'Makefile');
  if (!existsSync(makefile)) throw new LabError('prepare-failed', `${XEN_SOURCE_ENV}=${tree} is not a Xen source tree (no xen/Makefile)`);
  const text = readFileSync(makefile, 'utf8');
  const field = (name: string): string => new RegExp(`^export XEN_${name}\\s*\\??=\\s*(\\S*)`, 'm').exec(text)?.[1] ?? '?';
  const version = `${field('VERSION')}.${field('SUBVERSION')}${field('EXTRAVERSION').replace('$(XEN_VENDORVERSION)', '')}`;
  if (!version.startsWith('4.20')) throw new LabError('prepare-failed', `${XEN_SOURCE_ENV}=${tree} is Xen ${version}, not 4.20`);
  const where = createHash('sha256').update(resolve(tree)).digest('hex').slice(0, 8);
  return { version: `local-${version}-${where}`, tree: resolve(tree) };
}

/** The source package downloaded earlier, if its files are all still there. */
async function knownSource(root: string): Promise<SourcePackage | null> {
  try {
    const source = JSON.parse(await readFile(join(root, 'source.json'), 'utf8')) as SourcePackage;
    if (!source.dsc || !existsSync(source.dsc)) return null;
    const files = dscFiles(await readFile(source.dsc, 'utf8'));
    return files.every((file) => existsSync(join(resolve(source.dsc!, '..'), file))) ? source : null;
  } catch {
    return null;
  }
}

/** The file names listed under `Files:` (or `Checksums-Sha256:`) in a .dsc. */
export function dscFiles(dsc: string): string[] {
  const names = new Set<string>();
  let inList = false;
  for (const line of dsc.split('\n')) {
    if (/^(Files|Checksums-Sha\d+):/.test(line)) inList = true;
    else if (!line.startsWith(' ')) inList = false;
    else if (inList) {
      const name = line.trim().split(/\s+/)[2];
      if (name) names.add(name);
    }
  }
  return [...names];
}

async function fetchSource(root: string, base: XenBase, log: ProgressLog): Promise<SourcePackage> {
  const downloads = join(root, 'source');
  await mkdir(downloads, { recursive: true });
  const apt = new PrivateApt(join(root, 'apt'), [debianSourceLine(BASES[base].suite, 'deb-src')], log);
  await apt.ready();
  log(`apt-get source --download-only xen (Debian ${BASES[base].suite})`);
  try {
    await apt.run('apt-get', ['source', '--download-only', 'xen'], downloads);
  } catch (error) {
    const why = (error as Error).message;
    if (/404|Failed to fetch/i.test(why)) {
      throw new LabUnavailableError('source-unavailable',
        `Debian ${BASES[base].suite}'s xen source package cannot be downloaded here (${why.split('\n').find((line) => /404|Failed/.test(line))?.trim() ?? why}); ` +
        (base === '4.20' ? `set ${XEN_SOURCE_ENV} to an unpacked Xen 4.20 tree (upstream's RELEASE-4.20.4 takes the series) to build on it` : 'the patched Xen cannot be built'));
    }
    throw error;
  }

  const dscs = (await readdir(downloads)).filter((name) => /^xen_.*\.dsc$/.test(name));
  const versions = await Promise.all(dscs.map(async (name) => ({
    name,
    version: /^Version:\s*(\S+)/m.exec(await readFile(join(downloads, name), 'utf8'))?.[1],
  })));
  // apt-get source fetched the candidate; the newest .dsc in the directory is that one.
  const newest = versions.filter((entry) => entry.version !== undefined)
    .sort((a, b) => compareDebianVersions(b.version!, a.version!))[0];
  if (newest === undefined) throw new Error(`apt-get source xen left no xen_*.dsc in ${downloads}`);
  const source = { version: newest.version!, dsc: join(downloads, newest.name) };
  await writeFile(join(root, 'source.json.tmp'), JSON.stringify(source, null, 2) + '\n');
  await rename(join(root, 'source.json.tmp'), join(root, 'source.json'));
  log(`source: xen ${source.version}`);
  return source;
}

/** Enough of dpkg's version order for the xen versions a directory may hold. */
function compareDebianVersions(a: string, b: string): number {
  const parts = (version: string): (number | string)[] => version.split(/(\d+)/).filter((part) => part !== '').map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  const left = parts(a);
  const right = parts(b);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i] ?? '';
    const y = right[i] ?? '';
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return 0;
}

async function installBuildTools(log: ProgressLog): Promise<void> {
  await aptInstall([...new Set(BUILD_TOOLS.filter((entry) => !existsSync(entry.tool)).map((entry) => entry.pkg))], log);
}

/** Debian's own build configuration of the base, from the binary package the lab extracts. */
async function debianConfig(base: XenBase, log: ProgressLog): Promise<string> {
  const artifacts = await prepareLab({ log });
  const config = artifacts.releases[BASES[base].dom0].xen.config;
  if (!existsSync(config)) throw new Error(`the lab's ${BASES[base].dom0} hypervisor package has no build configuration at ${config}`);
  return config;
}

async function build(root: string, base: XenBase, source: SourcePackage, seriesDir: string, hash: string, configLines: readonly string[], log: ProgressLog): Promise<PatchedXen> {
  const final = buildDir(root, source.version, hash);
  // Each process builds in a directory of its own; the rename at the end is what makes a build
  // count, so an interrupted one is never taken for a finished one.
  const partial = `${final}.partial-${process.pid}`;
  await removeStalePartials(final);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const tree = join(partial, 'src');
  const patches = readSeries(seriesDir);

  if (source.dsc !== undefined) {
    log(`dpkg-source -x ${source.dsc.slice(source.dsc.lastIndexOf('/') + 1)}`);
    // --no-copy: dpkg-source would otherwise put a copy of the orig tarball beside the tree.
    await runChecked('dpkg-source', ['--no-copy', '-x', source.dsc, tree]);
  } else {
    log(`copying ${source.tree} (${XEN_SOURCE_ENV})`);
    await runChecked('cp', ['-a', `${source.tree}/.`, tree]);
  }

  for (const name of patches) {
    const result = await runCommand('patch', ['-p1', '--forward', '--batch', '-i', join(seriesDir, name)], { cwd: tree });
    if (result.code !== 0) {
      throw new LabError('prepare-failed', `${name} does not apply to xen ${source.version}:\n${lastLines(result.stdout + result.stderr, 20)}`);
    }
  }
  log(`applied ${patches.length} patches`);

  const config = await debianConfig(base, log);
  await copyFile(config, join(tree, 'xen', '.config'));
  if (configLines.length > 0) await writeFile(join(tree, 'xen', '.config'), `${await readFile(config, 'utf8')}${configLines.join('\n')}\n`);
  const buildLog = join(partial, 'build.log');
  const make = (args: string[]) => runLogged('make', ['-C', 'xen', ...args], tree, buildLog);
  const startedAt = Date.now();
  log(`make -C xen -j${cpus().length} (Debian's configuration, XEN_VENDORVERSION=${XEN_VENDOR_VERSION})`);
  const version = [
    `XEN_VENDORVERSION=${XEN_VENDOR_VERSION}`,
    // Debian's banner patch prints these; without them the banner reads "(Debian ) (@)".
    `DEB_VERSION=${source.version}+pmem-${hash.slice(0, 12)}`,
    'DEB_MAINTAINER=xen-pmem lab <xen-pmem@localhost>',
  ];
  await make(['olddefconfig']);
  await make([`-j${cpus().length}`, ...version]);
  const buildSeconds = Math.round((Date.now() - startedAt) / 100) / 10;

  for (const file of ['xen', 'xen.gz', 'xen-syms', '.config']) {
    await copyFile(join(tree, 'xen', file), join(partial, file === '.config' ? 'config' : file));
  }
  await rm(tree, { recursive: true, force: true });
  const record: BuildRecord = {
    recipe: BUILD_RECIPE,
    base,
    sourceVersion: source.version,
    seriesHash: hash,
    patches,
    buildSeconds,
    builtAt: new Date().toISOString(),
  };
  await writeFile(join(partial, 'build.json'), JSON.stringify(record, null, 2) + '\n');
  try {
    await rename(partial, final);
  } catch (error) {
    // Another process finished the same build first: keep its result.
    await rm(partial, { recursive: true, force: true });
    if (!existsSync(join(final, 'build.json'))) throw error;
  }
  log(`built xen ${base} (${source.version}) + ${patches.length} patches in ${buildSeconds} s: ${join(final, 'xen')}`);
  return resultIn(final, record, false);
}

/**
 * Drops the `.partial-<pid>` directories of builds whose process is gone: an interrupted or
 * failed build leaves its tree there (its build.log is what the error message names).
 */
async function removeStalePartials(final: string): Promise<void> {
  const parent = resolve(final, '..');
  for (const name of existsSync(parent) ? await readdir(parent) : []) {
    const pid = Number(/\.partial-(\d+)$/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) await rm(join(parent, name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs a build step with its output appended to `logPath`; a failure quotes the log's tail. */
function runLogged(command: string, args: string[], cwd: string, logPath: string): Promise<void> {
  return new Promise((resolveRun, reject) => {
    const out = createWriteStream(logPath, { flags: 'a' });
    let tail = '';
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer): void => {
      out.write(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-64 * 1024);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) => {
      out.end();
      reject(error);
    });
    child.on('close', (code, signal) => {
      out.end();
      if (code === 0) {
        resolveRun();
        return;
      }
      const how = signal !== null ? `was killed by ${signal}` : `exited ${code}`;
      reject(new LabError('prepare-failed', `${command} ${args.join(' ')} ${how} (full log: ${logPath}); its last lines:\n${lastLines(tail, FAILURE_TAIL_LINES)}`));
    });
  });
}

await runAsProgram(import.meta.url, 'xen-pmem hypervisor', async () => {
  const at = process.argv.indexOf('--base');
  const base = at === -1 ? '4.20' : process.argv[at + 1];
  if (!XEN_BASES.includes(base as XenBase)) throw new LabError('bad-options', `--base ${base}: the bases are ${XEN_BASES.join(' and ')}`);
  if (process.argv.includes('--matrix')) {
    // Every configuration, one after the other; a failure is a row, not the end.
    let failed = 0;
    for (const variant of Object.keys(CONFIG_VARIANTS) as ConfigVariant[]) {
      const startedAt = Date.now();
      try {
        const xen = await preparePatchedXen({ base: base as XenBase, variant });
        process.stdout.write(`${variant}: builds (${xen.cached ? 'cached' : `${xen.buildSeconds} s`}) ${xen.xenImage}\n`);
      } catch (error) {
        failed++;
        process.stdout.write(`${variant}: FAILS after ${Math.round((Date.now() - startedAt) / 1000)} s: ${(error as Error).message}\n`);
      }
    }
    if (failed > 0) process.exitCode = 1;
    return;
  }
  const xen = await preparePatchedXen({ base: base as XenBase });
  process.stdout.write(process.argv.includes('--path') ? `${xen.xenImage}\n` : JSON.stringify(xen, null, 2) + '\n');
});
