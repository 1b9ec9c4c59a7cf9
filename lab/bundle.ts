// Bundles the guest programs (dist/lab/guest/*.js) into dist/lab/guest-bundle/*.mjs, which
// lab_node runs in the Dom0. Each module node loads there is a lookup over 9p and a compile under
// emulation: a guest program that imported its ~60 modules one by one took about 6 s to start.
// The native packages (node-udev, koffi) stay outside and are found in the checkout's
// node_modules, or next to a copy of the bundles (see hardening-matrix.ts).
//
// Run after tsc (npm run build does both): `node dist/lab/bundle.js`.

import { build } from 'esbuild';
import { readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { bundleOptions } from '../packaging/runtime.js';

/** dist/lab/bundle.js → dist/lab. */
const DIST_LAB = fileURLToPath(new URL('.', import.meta.url));
export const GUEST_BUNDLE_DIR = join(DIST_LAB, 'guest-bundle');

export async function bundleGuestPrograms(): Promise<string[]> {
  const guestDir = join(DIST_LAB, 'guest');
  const programs = readdirSync(guestDir).filter((name) => name.endsWith('.js')).sort();
  const partial = `${GUEST_BUNDLE_DIR}.partial`;
  rmSync(partial, { recursive: true, force: true });
  await build({
    ...bundleOptions(),
    // One self-contained file per program: with shared chunks a program's "am I the program?"
    // test would see the chunk's URL.
    splitting: false,
    entryPoints: Object.fromEntries(programs.map((name) => [name.slice(0, -'.js'.length), join(guestDir, name)])),
    outdir: partial,
  });
  rmSync(GUEST_BUNDLE_DIR, { recursive: true, force: true });
  renameSync(partial, GUEST_BUNDLE_DIR);
  return programs;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const programs = await bundleGuestPrograms();
  process.stderr.write(`lab: ${programs.length} guest programs bundled in ${GUEST_BUNDLE_DIR}\n`);
}
