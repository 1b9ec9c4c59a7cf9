// npm run package: the Debian package of xen-pmem, built with Debian's own tools.
//
// node makes what only node can make (npm run build: the runtime directory, the manual pages);
// this file stages a source tree from it and the repository's debian/ directory, and
// dpkg-buildpackage with debhelper does the rest: files into place, the unit and the udev rule
// with the maintainer scripts dh_installsystemd generates, man pages compressed, conffiles
// found, shared library dependencies of the two native addons computed. Then lintian checks the
// result. The stage, per version, is dist/package/xen-pmem-VERSION/:
//
//   debian/                     the repository's debian/ plus what is generated from one source:
//     changelog                   an entry for package.json's version (the only place it is kept)
//     xen-pmem.xen-pmemd.service  systemd/xen-pmemd.service, ExecStart= rendered by renderUnit
//     xen-pmem.udev               udev/69-xen-pmem.rules
//   runtime/                    dist/runtime, for /usr/lib/xen-pmem
//   sbin/                       the launchers, exec /usr/bin/node with runtime.json's flags
//   man/                        dist/man
//   catalog/xen-pmem.catalog    dist/catalog: the journal message catalog, for /usr/lib/systemd/catalog
//                               (systemd's own trigger on that directory rebuilds journalctl's index)
//   conf/config.json            every default written out: the conffile /etc/xen-pmem/config.json
//   conf/examples/config.json   the example of xen-pmem.json(5)
//   README.md, docs/            the documents debian/xen-pmem.docs names
//
// The package lands in dist/package/xen-pmem_VERSION_amd64.deb, the path printed last.
//
// Usage: node dist/packaging/deb.js [--version-suffix SUFFIX] [--out DIR] [--no-lintian]
// (--version-suffix ~prev makes a lower version of the same tree, to test upgrades with).

import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { CATALOG_FILE_NAME } from '../src/daemon/catalog.js';
import { CATALOG_SOURCE, renderLauncher, renderUnit, RULE_TEMPLATE, UNIT_TEMPLATE } from '../src/install/layout.js';
import { parseRuntimeManifest, RUNTIME_MANIFEST } from '../src/install/runtime-manifest.js';
import { buildEpoch, changelogDate } from './build-date.js';
import { LIB_DIR, NODE, PACKAGE_NAME, SBIN_DIR } from './deb-layout.js';
import { configJson, defaultConfig, EXAMPLE_CONFIG } from './man/config-doc.js';

/** dist/packaging/deb.js → the repository. */
const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));
export const PACKAGE_DIR = join(REPOSITORY, 'dist', 'package');
export const DEBIAN_DIR = join(REPOSITORY, 'debian');

/** What building and checking needs from Debian, each proven by `dpkg-query`. */
export const BUILD_TOOLS = ['dpkg-dev', 'debhelper', 'lintian'] as const;

const LAUNCHER_ORIGIN = 'installed by the Debian package xen-pmem';
const DISTRIBUTION = 'unstable';

export interface PackageOptions {
  /** Default dist/package. */
  outDir?: string;
  /** Appended to package.json's version: `~prev` sorts before it. */
  versionSuffix?: string;
  /** Run lintian on the result (default true). */
  lintian?: boolean;
  log?: (line: string) => void;
}

export interface LintianTag {
  /** E error, W warning, I info, P pedantic, X experimental, O overridden, C classification. */
  severity: string;
  tag: string;
  detail: string;
}

export interface LintianReport {
  status: number | null;
  output: string;
  tags: LintianTag[];
}

export interface BuiltPackage {
  deb: string;
  version: string;
  stageDir: string;
  buildLog: string;
  lintian: LintianReport | null;
}

export class PackageError extends Error {}

// --- what is generated ------------------------------------------------------------------

export function packageVersion(suffix = ''): string {
  if (!/^[a-z0-9.+~]*$/.test(suffix)) throw new PackageError(`version suffix "${suffix}" may hold only a-z 0-9 . + ~`);
  const { version } = JSON.parse(readFileSync(join(REPOSITORY, 'package.json'), 'utf8')) as { version: string };
  return `${version}${suffix}`;
}

/** The Maintainer: field of debian/control, which the changelog entry is signed with. */
export function maintainer(control = readFileSync(join(DEBIAN_DIR, 'control'), 'utf8')): string {
  const found = /^Maintainer: (.+)$/m.exec(control)?.[1];
  if (!found) throw new PackageError('debian/control has no Maintainer: field');
  return found.trim();
}

/** debian/changelog with one entry, for `version`, dated `epoch` (see build-date.ts). */
export function debianChangelog(version: string, signer: string, epoch: number, upstream = version): string {
  const packagedAs = version === upstream ? '' : `, packaged as ${version}`;
  return [
    `${PACKAGE_NAME} (${version}) ${DISTRIBUTION}; urgency=medium`,
    '',
    `  * xen-pmem ${upstream}${packagedAs}. The version is kept in package.json`,
    '    only; the build writes this entry from it.',
    '',
    ` -- ${signer}  ${changelogDate(epoch)}`,
    '',
  ].join('\n');
}

/** The unit as the package installs it: the repository's, with ExecStart= naming /usr/sbin/xen-pmemd. */
export function packagedUnit(template = readFileSync(join(REPOSITORY, UNIT_TEMPLATE), 'utf8')): string {
  return renderUnit(template, `${SBIN_DIR}/xen-pmemd`);
}

/** The launchers: /usr/sbin/NAME execs /usr/bin/node with runtime.json's flags on /usr/lib/xen-pmem/SCRIPT. */
export function packagedLaunchers(runtimeDir: string): Record<string, string> {
  const manifest = parseRuntimeManifest(readFileSync(join(runtimeDir, RUNTIME_MANIFEST), 'utf8'));
  if (typeof manifest === 'string') throw new PackageError(`${join(runtimeDir, RUNTIME_MANIFEST)}: ${manifest} (run npm run build)`);
  return Object.fromEntries(Object.entries(manifest.launchers).map(([name, launcher]) => [
    name,
    renderLauncher(name, NODE, `${LIB_DIR}/${launcher.script}`, launcher.nodeFlags, LAUNCHER_ORIGIN),
  ]));
}

// --- staging and building -----------------------------------------------------------------

function stage(stageDir: string, version: string, upstream: string): void {
  const runtime = join(REPOSITORY, 'dist', 'runtime');
  const man = join(REPOSITORY, 'dist', 'man');
  const catalog = join(REPOSITORY, CATALOG_SOURCE);
  for (const built of [join(runtime, RUNTIME_MANIFEST), man, catalog]) {
    if (!existsSync(built)) throw new PackageError(`${built} is missing: run npm run build first (npm run package does)`);
  }
  rmSync(stageDir, { recursive: true, force: true });
  mkdirSync(stageDir, { recursive: true });
  cpSync(DEBIAN_DIR, join(stageDir, 'debian'), { recursive: true });
  cpSync(runtime, join(stageDir, 'runtime'), { recursive: true });
  cpSync(man, join(stageDir, 'man'), { recursive: true });
  mkdirSync(join(stageDir, 'catalog'));
  cpSync(catalog, join(stageDir, 'catalog', CATALOG_FILE_NAME));
  cpSync(join(REPOSITORY, 'README.md'), join(stageDir, 'README.md'));
  cpSync(join(REPOSITORY, 'docs'), join(stageDir, 'docs'), { recursive: true });

  mkdirSync(join(stageDir, 'sbin'));
  for (const [name, text] of Object.entries(packagedLaunchers(runtime))) writeFileSync(join(stageDir, 'sbin', name), text, { mode: 0o755 });
  mkdirSync(join(stageDir, 'conf', 'examples'), { recursive: true });
  writeFileSync(join(stageDir, 'conf', 'config.json'), configJson(defaultConfig()));
  writeFileSync(join(stageDir, 'conf', 'examples', 'config.json'), configJson(EXAMPLE_CONFIG));

  const debian = join(stageDir, 'debian');
  writeFileSync(join(debian, 'changelog'), debianChangelog(version, maintainer(), buildEpoch(REPOSITORY), upstream));
  writeFileSync(join(debian, `${PACKAGE_NAME}.xen-pmemd.service`), packagedUnit());
  writeFileSync(join(debian, `${PACKAGE_NAME}.udev`), readFileSync(join(REPOSITORY, RULE_TEMPLATE), 'utf8'));
}

function installed(pkg: string): boolean {
  const query = spawnSync('dpkg-query', ['-W', '-f', '${Status}', pkg], { encoding: 'utf8' });
  return query.status === 0 && query.stdout.trim() === 'install ok installed';
}

/** Installs the build tools that are missing, with apt-get (as root); says which it installed. */
export function ensureBuildTools(log: (line: string) => void = () => {}): string[] {
  const missing = BUILD_TOOLS.filter((pkg) => !installed(pkg));
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0) throw new PackageError(`building the package needs ${missing.join(', ')}: run as root (npm run package installs them) or apt-get install them`);
  log(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): number | null => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { env, stdio: ['ignore', 'ignore', 'pipe'] }).status;
  if (install() !== 0) {
    // A stale index is the usual reason: update once and try again.
    spawnSync('apt-get', ['update'], { env, stdio: 'ignore' });
    if (install() !== 0) throw new PackageError(`apt-get install ${missing.join(' ')} failed`);
  }
  return missing;
}

/** lintian's lines, E/W/I/P/X/O/C: package: tag detail. */
export function parseLintian(output: string): LintianTag[] {
  const tags: LintianTag[] = [];
  for (const line of output.split('\n')) {
    const match = /^([EWIPXOC]): [^:]+: (\S+)(?: (.*))?$/.exec(line);
    if (match) tags.push({ severity: match[1]!, tag: match[2]!, detail: match[3] ?? '' });
  }
  return tags;
}

export function runLintian(deb: string): LintianReport {
  // --fail-on: an error or a warning that no override in debian/xen-pmem.lintian-overrides
  // explains fails the check; overridden tags are shown (O:) so the report says what was waived.
  const run = spawnSync('lintian', ['--fail-on', 'error,warning', '--show-overrides', '--tag-display-limit', '0', deb], { encoding: 'utf8' });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim();
  return { status: run.status, output, tags: parseLintian(output) };
}

export function buildPackage(options: PackageOptions = {}): BuiltPackage {
  const log = options.log ?? (() => {});
  const outDir = options.outDir ?? PACKAGE_DIR;
  const upstream = packageVersion();
  const version = packageVersion(options.versionSuffix ?? '');
  ensureBuildTools(log);

  const stageDir = join(outDir, `${PACKAGE_NAME}-${version}`);
  stage(stageDir, version, upstream);
  const deb = join(outDir, `${PACKAGE_NAME}_${version}_amd64.deb`);
  rmSync(deb, { force: true });
  log(`dpkg-buildpackage in ${stageDir}`);
  const build = spawnSync('dpkg-buildpackage', ['--build=binary', '--no-sign'], {
    cwd: stageDir,
    encoding: 'utf8',
    env: { ...process.env, LC_ALL: 'C.UTF-8' },
    maxBuffer: 64 * 1024 * 1024,
  });
  const buildLog = join(outDir, `build-${version}.log`);
  writeFileSync(buildLog, `${build.stdout ?? ''}${build.stderr ?? ''}`);
  if (build.status !== 0 || !existsSync(deb)) {
    const tail = `${build.stdout ?? ''}${build.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    throw new PackageError(`dpkg-buildpackage failed (exit ${build.status}); the whole log is ${buildLog}:\n${tail}`);
  }
  return { deb, version, stageDir, buildLog, lintian: options.lintian === false ? null : runLintian(deb) };
}

/** The .deb files of dist/package, for the lab and for a look. */
export function builtPackages(outDir = PACKAGE_DIR): string[] {
  return existsSync(outDir) ? readdirSync(outDir).filter((name) => name.endsWith('.deb')).map((name) => join(outDir, name)).sort() : [];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { 'version-suffix': { type: 'string' }, out: { type: 'string' }, 'no-lintian': { type: 'boolean' } } });
  try {
    const built = buildPackage({
      versionSuffix: values['version-suffix'],
      outDir: values.out,
      lintian: !values['no-lintian'],
      log: (line) => process.stderr.write(`package: ${line}\n`),
    });
    if (built.lintian) {
      process.stderr.write(`package: lintian ${built.deb}\n${built.lintian.output === '' ? '(nothing to report)' : built.lintian.output}\n`);
      if (built.lintian.status !== 0) throw new PackageError(`lintian found errors or warnings that no override explains (exit ${built.lintian.status})`);
    }
    process.stdout.write(`${built.deb}\n`);
  } catch (error) {
    process.stderr.write(`package: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
