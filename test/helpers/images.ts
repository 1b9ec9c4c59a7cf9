// Sparse image files and the real sfdisk, for tests that exercise the on-disk layout without a
// pmem device. Images are sparse, so a 1 TiB one costs a few KiB of disk.

import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory under the system temp dir, removed by the returned function. */
export function makeScratchDir(label: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `xen-pmem-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Creates (or resets) a sparse, all-zero file of `size` bytes. */
export function makeSparseImage(path: string, size: bigint): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, 0);
    ftruncateSync(fd, Number(size));
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Changes an image's size in place: the tail is cut off or zero-extended. */
export function resizeImage(path: string, size: bigint): void {
  const fd = openSync(path, 'r+');
  try {
    ftruncateSync(fd, Number(size));
  } finally {
    closeSync(fd);
  }
}

/** Copies an image keeping it sparse (a plain copy of a 1 TiB image would write 1 TiB). */
export function copySparseImage(from: string, to: string): string {
  const result = spawnSync('cp', ['--sparse=always', from, to], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`cp ${from} ${to} failed: ${result.stderr}`);
  return to;
}

export interface SfdiskResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real sfdisk on an image; `script` goes to its stdin. */
export function sfdisk(args: string[], script?: string): SfdiskResult {
  const result = spawnSync('sfdisk', args, { input: script ?? '', encoding: 'utf8' });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** Writes a partition table from a script and fails loudly if sfdisk refuses it. */
export function writeTable(path: string, script: string): void {
  const result = sfdisk(['--quiet', '--no-reread', '--no-tell-kernel', path], script);
  if (result.code !== 0) throw new Error(`sfdisk refused the script for ${path}: ${result.stderr.trim()}\n${script}`);
}

export interface SfdiskPartition {
  node: string;
  start: number;
  size: number;
  type: string;
  uuid?: string;
  name?: string;
}

export interface SfdiskTable {
  label: string;
  unit: string;
  firstlba?: number;
  lastlba?: number;
  sectorsize?: number;
  partitions?: SfdiskPartition[];
}

/** The table as `sfdisk -J` reports it (sectors), or null when sfdisk finds none. */
export function sfdiskJson(path: string): SfdiskTable | null {
  const result = sfdisk(['-J', path]);
  if (result.code !== 0) return null;
  return (JSON.parse(result.stdout) as { partitiontable: SfdiskTable }).partitiontable;
}

/** The table as `sfdisk -d` dumps it: a script sfdisk accepts back. */
export function sfdiskDump(path: string): string {
  const result = sfdisk(['-d', path]);
  if (result.code !== 0) throw new Error(`sfdisk -d ${path} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;
}
