// promtool, Prometheus' own checker of the text format, from Debian's `prometheus` package. The
// package is a server that would be started by its maintainer scripts, and promtool a single
// binary in it, so the binary is taken out of the downloaded .deb (apt-get download, dpkg-deb -x)
// into a cache instead of installing the server. A promtool on PATH is used as it is.

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PROMTOOL_CACHE = process.env.XEN_PMEM_PROMTOOL_CACHE ?? '/var/cache/xen-pmem-promtool';

/** The path of a promtool, or why there is none here. */
export function findPromtool(): { path: string } | { skip: string } {
  if (spawnSync('promtool', ['--version']).status === 0) return { path: 'promtool' };
  const cached = join(PROMTOOL_CACHE, 'promtool');
  if (existsSync(cached)) return { path: cached };
  const work = mkdtempSync(join(tmpdir(), 'xen-pmem-promtool-'));
  try {
    let download = spawnSync('apt-get', ['download', 'prometheus'], { cwd: work, encoding: 'utf8' });
    if (download.status !== 0 && process.getuid?.() === 0) {
      spawnSync('apt-get', ['update'], { stdio: 'ignore' });
      download = spawnSync('apt-get', ['download', 'prometheus'], { cwd: work, encoding: 'utf8' });
    }
    const deb = readdirSync(work).find((name) => name.endsWith('.deb'));
    if (download.status !== 0 || deb === undefined) {
      return { skip: `promtool is not installed and Debian's prometheus package could not be downloaded (apt-get download prometheus: ${(download.stderr ?? '').trim().split('\n').at(-1) || `exit ${download.status}`})` };
    }
    const unpacked = join(work, 'x');
    const extract = spawnSync('dpkg-deb', ['-x', join(work, deb), unpacked], { encoding: 'utf8' });
    if (extract.status !== 0 || !existsSync(join(unpacked, 'usr/bin/promtool'))) return { skip: `dpkg-deb could not unpack promtool from ${deb}: ${extract.stderr}` };
    try {
      mkdirSync(PROMTOOL_CACHE, { recursive: true });
      // Copied beside its place, then renamed: a cache that another run is reading stays whole.
      copyFileSync(join(unpacked, 'usr/bin/promtool'), `${cached}.partial`);
      chmodSync(`${cached}.partial`, 0o755);
      renameSync(`${cached}.partial`, cached);
    } catch (error) {
      return { skip: `cannot keep promtool in ${PROMTOOL_CACHE}: ${(error as Error).message}` };
    }
    return { path: cached };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
