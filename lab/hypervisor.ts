// Builds the hypervisor the lab boots for the success path: Debian's `xen` source package with
// the series in hypervisor/ applied, the hypervisor only (not the tools), with the configuration
// Debian's own binary package ships. The result is cached under the lab cache, keyed by the
// source version and a hash of the series, so that a second call only checks files.
//
//   npm run -s hypervisor -- --path   builds if needed, prints the path of the multiboot ELF
//   npm run -s hypervisor             the same, and prints what was built as JSON
//
// The source comes through an apt configuration of the lab's own (a deb-src entry, lists and
// archives in the cache): the host's apt sources are never touched. Progress goes to stderr.

import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';

import { LabError, runAsProgram } from './errors.js';
import { aptInstall, labCacheDir, prepareLab, repositoryDir } from './prepare.js';
import { stderrProgress, type ProgressLog } from './progress.js';
import { lastLines, runChecked, runCommand } from './run-command.js';

/** Bump when the way a build is made changes, so that older cached builds are not taken. */
const BUILD_RECIPE = 1;
/** What `xen_version` reports as extraversion after the upstream one: `4.17.5-pmem`. */
export const XEN_VENDOR_VERSION = '-pmem';
/** The source package's suite: bookworm-security's sources are not downloadable from here. */
const DEB_SRC_LINE = 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main';
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
  /** `xen/xen`: the 32-bit multiboot ELF QEMU's -kernel takes. */
  xenImage: string;
  /** `xen/xen.gz`: what Debian installs as /boot/xen-*.gz. */
  xenGz: string;
  /** `xen/xen-syms`, for decoding a crash's addresses. */
  xenSyms: string;
  /** The Debian source package version the series was applied to. */
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
  log?: ProgressLog;
  /** Defaults to $XEN_PMEM_LAB_CACHE, then /var/cache/xen-pmem-lab. */
  cacheDir?: string;
  /** The series directory; defaults to hypervisor/ in the repository. */
  seriesDir?: string;
}

interface BuildRecord {
  recipe: number;
  sourceVersion: string;
  seriesHash: string;
  patches: string[];
  buildSeconds: number;
  builtAt: string;
}

export function hypervisorSeriesDir(): string {
  return join(repositoryDir(), 'hypervisor');
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

/** `-o` options that give apt-get a private sources list, lists and archives under `aptDir`. */
export function privateAptOptions(aptDir: string): string[] {
  const options: Record<string, string> = {
    'Dir::Etc::SourceList': join(aptDir, 'sources.list'),
    'Dir::Etc::SourceParts': join(aptDir, 'sources.list.d'),
    'Dir::Etc::Preferences': join(aptDir, 'preferences'),
    'Dir::Etc::PreferencesParts': join(aptDir, 'preferences.d'),
    // Only the signed-by keyring of the deb-src line is trusted.
    'Dir::Etc::Trusted': join(aptDir, 'trusted.gpg'),
    'Dir::Etc::TrustedParts': join(aptDir, 'trusted.gpg.d'),
    'Dir::State::Lists': join(aptDir, 'lists'),
    'Dir::Cache': join(aptDir, 'cache'),
    // The files are root's; apt's download sandbox user could not write them.
    'APT::Sandbox::User': 'root',
  };
  return Object.entries(options).flatMap(([name, value]) => ['-o', `${name}=${value}`]);
}

async function writeAptConfig(aptDir: string): Promise<void> {
  for (const dir of ['sources.list.d', 'preferences.d', 'trusted.gpg.d', 'lists/partial', 'cache/archives/partial']) {
    await mkdir(join(aptDir, dir), { recursive: true });
  }
  await writeFile(join(aptDir, 'sources.list'), `${DEB_SRC_LINE}\n`);
}

/**
 * The patched hypervisor, built if the cache has no result for this source and series. Throws
 * LabError('prepare-failed') naming what failed: a download, the patch that did not apply, or
 * the build, with the last lines of the compiler's output.
 */
export async function preparePatchedXen(options: PatchedXenOptions = {}): Promise<PatchedXen> {
  const log = options.log ?? stderrProgress('hypervisor');
  const seriesDir = resolve(options.seriesDir ?? hypervisorSeriesDir());
  const root = join(resolve(options.cacheDir ?? labCacheDir()), 'hypervisor');

  const problems = seriesProblems(seriesDir);
  if (problems.length > 0) throw new LabError('prepare-failed', `the patch series in ${seriesDir} is inconsistent: ${problems.join('; ')}`);
  const hash = seriesHash(seriesDir);

  const known = await knownSource(root);
  if (known !== null) {
    const cached = await cachedBuild(root, known.version, hash);
    if (cached !== null) return cached;
  }

  if (process.getuid?.() !== 0) {
    throw new LabError('not-root', 'building the patched hypervisor needs root (apt-get, the lab cache); run it as root');
  }
  try {
    await installBuildTools(log);
    const source = known ?? (await fetchSource(root, log));
    return (await cachedBuild(root, source.version, hash)) ?? (await build(root, source, seriesDir, hash, log));
  } catch (error) {
    if (error instanceof LabError) throw error;
    throw new LabError('prepare-failed', `building the patched hypervisor failed: ${(error as Error).message}`);
  }
}

function buildDir(root: string, version: string, hash: string): string {
  return join(root, 'builds', `${version}-${hash.slice(0, 16)}`);
}

async function cachedBuild(root: string, version: string, hash: string): Promise<PatchedXen | null> {
  const dir = buildDir(root, version, hash);
  let record: BuildRecord;
  try {
    record = JSON.parse(await readFile(join(dir, 'build.json'), 'utf8')) as BuildRecord;
  } catch {
    return null;
  }
  if (record.recipe !== BUILD_RECIPE || record.sourceVersion !== version || record.seriesHash !== hash) return null;
  const result = resultIn(dir, record, true);
  return [result.xenImage, result.xenGz].every((path) => existsSync(path)) ? result : null;
}

function resultIn(dir: string, record: BuildRecord, cached: boolean): PatchedXen {
  return {
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
  dsc: string;
}

/** The source package downloaded earlier, if its files are all still there. */
async function knownSource(root: string): Promise<SourcePackage | null> {
  try {
    const source = JSON.parse(await readFile(join(root, 'source.json'), 'utf8')) as SourcePackage;
    if (!existsSync(source.dsc)) return null;
    const files = dscFiles(await readFile(source.dsc, 'utf8'));
    return files.every((file) => existsSync(join(resolve(source.dsc, '..'), file))) ? source : null;
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

async function fetchSource(root: string, log: ProgressLog): Promise<SourcePackage> {
  const aptDir = join(root, 'apt');
  const downloads = join(root, 'source');
  await writeAptConfig(aptDir);
  await mkdir(downloads, { recursive: true });
  const apt = privateAptOptions(aptDir);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

  const listsPresent = readdirSync(join(aptDir, 'lists')).some((name) => name.endsWith('Sources') || name.includes('_source_Sources'));
  if (!listsPresent) {
    log('apt-get update (the lab\'s own deb-src list)');
    await runChecked('apt-get', [...apt, 'update'], { env });
  }
  log('apt-get source --download-only xen');
  const first = await runCommand('apt-get', [...apt, 'source', '--download-only', 'xen'], { cwd: downloads, env });
  if (first.code !== 0) {
    log('apt-get source failed; updating the lists once and retrying');
    await runChecked('apt-get', [...apt, 'update'], { env });
    await runChecked('apt-get', [...apt, 'source', '--download-only', 'xen'], { cwd: downloads, env });
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

/** Debian's own build configuration, from the binary package the lab extracts. */
async function debianConfig(log: ProgressLog): Promise<string> {
  const find = (cacheDir: string): string | undefined => {
    if (!existsSync(cacheDir)) return undefined;
    return readdirSync(cacheDir)
      .filter((name) => name.startsWith('xen-hypervisor-4.17-amd64_') && !name.endsWith('.partial'))
      .map((name) => join(cacheDir, name, 'boot', 'xen-4.17-amd64.config'))
      .find((path) => existsSync(path));
  };
  const found = find(labCacheDir());
  if (found !== undefined) return found;
  log('no xen-hypervisor-4.17-amd64 in the lab cache yet; preparing the lab for its config');
  const artifacts = await prepareLab({ log });
  const config = find(artifacts.cacheDir);
  if (config === undefined) throw new Error(`xen-hypervisor-4.17-amd64 in ${artifacts.cacheDir} has no boot/xen-4.17-amd64.config`);
  return config;
}

async function build(root: string, source: SourcePackage, seriesDir: string, hash: string, log: ProgressLog): Promise<PatchedXen> {
  const final = buildDir(root, source.version, hash);
  // Each process builds in a directory of its own; the rename at the end is what makes a build
  // count, so an interrupted one is never taken for a finished one.
  const partial = `${final}.partial-${process.pid}`;
  await removeStalePartials(final);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const tree = join(partial, 'src');
  const patches = readSeries(seriesDir);

  log(`dpkg-source -x ${source.dsc.slice(source.dsc.lastIndexOf('/') + 1)}`);
  // --no-copy: dpkg-source would otherwise put a copy of the orig tarball beside the tree.
  await runChecked('dpkg-source', ['--no-copy', '-x', source.dsc, tree]);

  for (const name of patches) {
    const result = await runCommand('patch', ['-p1', '--forward', '--batch', '-i', join(seriesDir, name)], { cwd: tree });
    if (result.code !== 0) {
      throw new LabError('prepare-failed', `${name} does not apply to xen ${source.version}:\n${lastLines(result.stdout + result.stderr, 20)}`);
    }
  }
  log(`applied ${patches.length} patches`);

  const config = await debianConfig(log);
  await copyFile(config, join(tree, 'xen', '.config'));
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
  log(`built xen ${source.version} + ${patches.length} patches in ${buildSeconds} s: ${join(final, 'xen')}`);
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
  const xen = await preparePatchedXen();
  process.stdout.write(process.argv.includes('--path') ? `${xen.xenImage}\n` : JSON.stringify(xen, null, 2) + '\n');
});
