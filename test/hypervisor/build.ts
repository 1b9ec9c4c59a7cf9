// Compiles the test hypervisor next to this file's compiled form
// (dist/test/hypervisor/libtest-xencall.so). `node dist/test/hypervisor/build.js` builds it and
// prints its path (for XEN_PMEM_LIBXENCALL). `node --test dist/test/` runs every file under a
// `test` folder, this one included, so run that way it checks the library's exported symbols.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/test/hypervisor → the repository root, three levels up. */
const SOURCE = resolve(here, '../../../test/hypervisor/test-xencall.c');
export const TEST_HYPERVISOR_LIBRARY = join(here, 'libtest-xencall.so');

/** Builds the library when it is missing or older than its source; returns its path. */
export function buildTestHypervisor(): string {
  const upToDate =
    existsSync(TEST_HYPERVISOR_LIBRARY) &&
    statSync(TEST_HYPERVISOR_LIBRARY).mtimeMs >= statSync(SOURCE).mtimeMs;
  if (upToDate) return TEST_HYPERVISOR_LIBRARY;

  // Test files run in parallel processes: each compiles to its own name and renames, so no
  // process ever loads a half-written library.
  const partial = `${TEST_HYPERVISOR_LIBRARY}.${process.pid}.tmp`;
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', partial, SOURCE], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    rmSync(partial, { force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`cc could not build the test hypervisor from ${SOURCE}:\n${stderr}`);
  }
  renameSync(partial, TEST_HYPERVISOR_LIBRARY);
  return TEST_HYPERVISOR_LIBRARY;
}

/** What src/native/libxencall.ts binds; Debian's libxencall1 exports all of them too. */
export const BOUND_SYMBOLS = [
  'xencall_open',
  'xencall_close',
  'xencall_alloc_buffer',
  'xencall_free_buffer',
  'xencall1',
  'xencall2',
] as const;

function definedSymbols(library: string): Set<string> {
  const listing = execFileSync('nm', ['-D', '--defined-only', library], { encoding: 'utf8' });
  return new Set(listing.split('\n').map((line) => line.split(' ').at(-1)?.replace(/@.*/, '') ?? ''));
}

const runDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runDirectly && process.env.NODE_TEST_CONTEXT === undefined) {
  console.log(buildTestHypervisor());
} else if (runDirectly) {
  test('the test hypervisor builds with -Wall -Werror and exports what the daemon binds', (t) => {
    const exported = definedSymbols(buildTestHypervisor());
    for (const symbol of BOUND_SYMBOLS) assert.ok(exported.has(symbol), `${symbol} is exported`);
    const debian = '/usr/lib/x86_64-linux-gnu/libxencall.so.1';
    if (!existsSync(debian)) return t.skip(`${debian} is missing (apt-get install libxencall1)`);
    const real = definedSymbols(debian);
    for (const symbol of BOUND_SYMBOLS) assert.ok(real.has(symbol), `Debian's libxencall1 exports ${symbol}`);
  });
}
