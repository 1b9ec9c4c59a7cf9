// Which xen-pmemd the benchmarks run: the installed one. `install.js install` and the Debian
// package both run dist/runtime's bundle (packaging/runtime.ts) with the node flags of its
// runtime.json, not the compiled tree under dist/src, which loads each of ~60 modules on its own.
// The replaying daemon of item 4 and the coldplug's daemon over a fixture tree are bundled here
// with the same options, so they run the same code.

import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bundleOptions } from '../packaging/runtime.js';
import { RUNTIME_MANIFEST, type RuntimeManifest } from '../src/install/runtime-manifest.js';

const DIST = fileURLToPath(new URL('..', import.meta.url));

export interface DaemonCommand {
  script: string;
  nodeFlags: string[];
}

/** dist/runtime's xen-pmemd, as its launcher starts it; npm run build makes it. */
export function installedDaemon(): DaemonCommand {
  const runtime = join(DIST, 'runtime');
  const manifest = JSON.parse(readFileSync(join(runtime, RUNTIME_MANIFEST), 'utf8')) as RuntimeManifest;
  const launcher = manifest.launchers['xen-pmemd'];
  if (!launcher) throw new Error(`${join(runtime, RUNTIME_MANIFEST)} names no xen-pmemd launcher`);
  return { script: join(runtime, launcher.script), nodeFlags: launcher.nodeFlags };
}

/**
 * The installed xen-pmemd over a fixture tree: bench/fixture-daemon.ts bundled like the runtime
 * (under dist/, so node finds the native packages in the repository's node_modules), with the
 * installed launcher's node flags. The daemon itself has no option that points it at another sysfs.
 */
export function fixtureDaemon(): Promise<DaemonCommand> {
  // Bundled once per process: every coldplug run starts the same file.
  fixtureBundle ??= (async () => {
    const outdir = join(DIST, 'bench-runtime');
    await build({ ...bundleOptions(), entryPoints: { 'fixture-daemon': join(DIST, 'bench', 'fixture-daemon.js') }, outdir });
    return { script: join(outdir, 'fixture-daemon.mjs'), nodeFlags: installedDaemon().nodeFlags };
  })();
  return fixtureBundle;
}

let fixtureBundle: Promise<DaemonCommand> | null = null;

/**
 * bench/replay-daemon.ts bundled like the runtime (under dist/, so node finds koffi in the
 * repository's node_modules), with the installed launcher's node flags.
 */
export async function replayDaemon(): Promise<DaemonCommand> {
  const outdir = join(DIST, 'bench-runtime');
  await build({ ...bundleOptions(), entryPoints: { 'replay-daemon': join(DIST, 'bench', 'replay-daemon.js') }, outdir });
  return { script: join(outdir, 'replay-daemon.mjs'), nodeFlags: installedDaemon().nodeFlags };
}
