// Debian 13's lintian on the host: a tree of Debian 13's lintian and its dependencies in the lab
// cache (made once by mmdebstrap, lab/dom0-root.ts), a package copied into it, lintian run in a
// chroot of it. The same options and the same reading as the host's own lintian
// (packaging/deb.ts), so the package is checked by both releases' rules.

import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { parseLintian, type LintianReport } from '../packaging/deb.js';
import { ensureTree, LINTIAN_TREE } from './dom0-root.js';
import { labCacheDir } from './prepare.js';
import type { ProgressLog } from './progress.js';
import { runCommand } from './run-command.js';

export interface TrixieLintianReport extends LintianReport {
  /** lintian's version in the tree, e.g. 2.122.0+deb13u1. */
  version: string;
}

export async function lintianOnDebian13(deb: string, log: ProgressLog = () => {}): Promise<TrixieLintianReport> {
  const tree = await ensureTree(labCacheDir(), LINTIAN_TREE, log);
  const inside = `/tmp/xen-pmem-lintian-${process.pid}`;
  await mkdir(join(tree.root, inside), { recursive: true });
  try {
    await copyFile(deb, join(tree.root, inside, basename(deb)));
    const run = await runCommand('chroot', [
      tree.root, 'lintian', '--fail-on', 'error,warning', '--show-overrides', '--tag-display-limit', '0', `${inside}/${basename(deb)}`,
    ], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C.UTF-8', HOME: '/tmp' } });
    const output = `${run.stdout}${run.stderr}`.trim();
    return { status: run.code, output, tags: parseLintian(output), version: tree.packages.lintian ?? '?' };
  } finally {
    await rm(join(tree.root, inside), { recursive: true, force: true });
  }
}
