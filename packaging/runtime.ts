// Builds dist/runtime: the directory every installation of xen-pmem runs from, whether
// `node dist/packaging/install.js install` copies it to <prefix>/lib/xen-pmem or the Debian package ships it as
// /usr/lib/xen-pmem. It holds two bundles (the CLI and the daemon, with their shared code in
// chunks), the native packages node cannot bundle (node-udev and koffi, with what they load at
// run time, and nothing else of theirs), and runtime.json naming the launchers.
//
// Why a bundle: every module node loads is a path lookup, an open and a compile. On a host that
// costs little, but in a PV Dom0 under emulation (the lab) loading ~190 modules took 2.7 s of a
// 3.2 s `xen-pmem status`, and copying ~1,900 files of node_modules took most of an install.
//
// Run after tsc (npm run build does both): `node dist/packaging/runtime.js`.

import { build, type BuildOptions } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DAEMON_NODE_FLAGS } from '../src/daemon/node-flags.js';
import { RUNTIME_MANIFEST, type RuntimeManifest } from '../src/install/runtime-manifest.js';

/** dist/packaging/runtime.js → the repository. */
const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));

/** Packages with a compiled part: node loads them from node_modules, not from a bundle. */
const NATIVE_PACKAGES = ['udev', 'koffi'] as const;

/** The lowest Node the code supports; the bundles use no syntax newer than it understands. */
export const NODE_TARGET = 'node18';

/**
 * Dependencies the native packages declare but use only while npm installs them: node-udev
 * builds its addon with node-pre-gyp and node-addon-api's headers, and requires only
 * `bindings` when it runs.
 */
const INSTALL_TIME_ONLY = new Set(['@mapbox/node-pre-gyp', 'node-addon-api']);

/**
 * Files of a native package that only its install step runs: koffi's cnoke.cjs builds koffi from
 * source when npm finds no prebuilt binary, and nothing loads it later.
 */
const INSTALL_TIME_FILES = new Set(['koffi/cnoke.cjs']);

/** Directories of a native package that nothing loads at run time. */
const SKIPPED_DIRS = new Set(['node_modules', 'test', 'tests', 'samples', 'example', 'examples', 'doc', 'docs', 'vendor', 'obj.target', '.deps']);

interface LockPackage {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

export interface RuntimeBuild {
  dir: string;
  files: number;
  bytes: number;
}

/** How every bundle of the project is made: ES modules for node, the native packages left out. */
export function bundleOptions(version = readVersion()): BuildOptions {
  return {
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: NODE_TARGET,
    external: [...NATIVE_PACKAGES],
    // src/version.ts reads package.json at run time only when this is not defined.
    define: { XEN_PMEM_VERSION: JSON.stringify(version) },
    // Bundled CommonJS packages (pino and its helpers) call require() for node's own modules;
    // an ES module has no require of its own, so every output file gets one.
    banner: { js: "import { createRequire as __xenPmemCreateRequire } from 'node:module'; const require = __xenPmemCreateRequire(import.meta.url);" },
    legalComments: 'none',
    logLevel: 'warning',
  };
}

function readVersion(): string {
  return (JSON.parse(readFileSync(join(REPOSITORY, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Builds `outDir` (default dist/runtime) afresh from the compiled tree and node_modules. */
export async function buildRuntime(outDir = join(REPOSITORY, 'dist', 'runtime')): Promise<RuntimeBuild> {
  const pkg = JSON.parse(readFileSync(join(REPOSITORY, 'package.json'), 'utf8')) as { name: string; version: string };
  const partial = `${outDir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });

  await build({
    ...bundleOptions(pkg.version),
    entryPoints: {
      'xen-pmem': join(REPOSITORY, 'dist', 'src', 'cli', 'xen-pmem.js'),
      'xen-pmemd': join(REPOSITORY, 'dist', 'src', 'daemon', 'xen-pmemd.js'),
    },
    outdir: partial,
  });

  const lock = JSON.parse(readFileSync(join(REPOSITORY, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
  for (const path of nativeClosure(lock.packages)) copyPackage(join(REPOSITORY, path), join(partial, path));

  const manifest: RuntimeManifest = {
    name: pkg.name,
    version: pkg.version,
    launchers: {
      'xen-pmem': { script: 'xen-pmem.mjs', nodeFlags: [] },
      'xen-pmemd': { script: 'xen-pmemd.mjs', nodeFlags: [...DAEMON_NODE_FLAGS] },
    },
  };
  writeFileSync(join(partial, RUNTIME_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');

  rmSync(outDir, { recursive: true, force: true });
  renameSync(partial, outDir);
  const files = listFiles(outDir);
  return { dir: outDir, files: files.length, bytes: files.reduce((sum, file) => sum + statSync(file).size, 0) };
}

/**
 * Every npm package whose code ends up in the runtime directory: those esbuild bundles (read from
 * its metafile, nothing written) and the native packages with what they load. debian/copyright
 * must name each one (test/debian.test.ts).
 */
export async function runtimePackages(): Promise<string[]> {
  const result = await build({
    ...bundleOptions(),
    entryPoints: {
      'xen-pmem': join(REPOSITORY, 'dist', 'src', 'cli', 'xen-pmem.js'),
      'xen-pmemd': join(REPOSITORY, 'dist', 'src', 'daemon', 'xen-pmemd.js'),
    },
    outdir: join(REPOSITORY, 'dist', 'runtime.metafile'),
    metafile: true,
    write: false,
  });
  const names = new Set<string>();
  for (const input of Object.keys(result.metafile.inputs)) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) names.add(match[1]!);
  }
  const lock = JSON.parse(readFileSync(join(REPOSITORY, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
  for (const path of nativeClosure(lock.packages)) names.add(path.slice('node_modules/'.length));
  return [...names].sort();
}

/**
 * node_modules paths of the native packages and of every package they need at run time, from
 * package-lock.json. An optional dependency npm did not install here (another platform's koffi
 * binary) is left out.
 */
export function nativeClosure(packages: Record<string, LockPackage>): string[] {
  const wanted = new Set<string>();
  const visit = (name: string): void => {
    const path = `node_modules/${name}`;
    const entry = packages[path];
    if (!entry || wanted.has(path) || INSTALL_TIME_ONLY.has(name)) return;
    if (entry.optional && !existsSync(join(REPOSITORY, path))) return;
    wanted.add(path);
    for (const dependency of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) visit(dependency);
  };
  for (const name of NATIVE_PACKAGES) {
    if (!packages[`node_modules/${name}`]) throw new Error(`package-lock.json has no ${name}: run npm install`);
    visit(name);
  }
  return [...wanted].sort();
}

/** What node needs of a package at run time: its package.json, its JavaScript, its compiled addon. */
export function keepsAtRunTime(relativePath: string): boolean {
  const parts = relativePath.split('/');
  const name = parts[parts.length - 1]!;
  if (parts.slice(0, -1).some((part) => SKIPPED_DIRS.has(part) || part.startsWith('musl'))) return false;
  if (name === 'package.json') return true;
  if (name.endsWith('.node')) return true;
  return /\.(c|m)?js$/.test(name) && !/\.(test|spec)\.(c|m)?js$/.test(name);
}

function copyPackage(source: string, target: string): void {
  if (!existsSync(join(source, 'package.json'))) throw new Error(`${source} is missing: run npm ci`);
  const name = relative(join(REPOSITORY, 'node_modules'), source);
  for (const file of listFiles(source)) {
    const path = relative(source, file);
    if (!keepsAtRunTime(path) || INSTALL_TIME_FILES.has(`${name}/${path}`)) continue;
    mkdirSync(dirname(join(target, path)), { recursive: true });
    copyFileSync(file, join(target, path));
  }
}

function listFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...listFiles(path));
    else if (entry.isFile()) files.push(path);
  }
  return files.sort();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const built = await buildRuntime();
  process.stderr.write(`runtime: ${built.files} files, ${(built.bytes / 1024).toFixed(0)} KiB in ${built.dir}\n`);
}
