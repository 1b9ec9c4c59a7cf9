// The PV DomU the lab starts beside Xen's adds (lab/guest/pv-guest.ts): the Dom0 release's own
// kernel and a busybox initramfs whose init counts seconds on the console. Both are put under the
// checkout's dist/, which either Dom0 sees at the same path (the lab cache is not in Debian 13's
// root), and made again only when their inputs changed.

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { LabError } from './errors.js';
import { repositoryDir, type ReleaseArtifacts } from './prepare.js';

const BUSYBOX = '/bin/busybox';

/** PID 1 of the DomU: /proc, a line to say it is up, then a tick a second on hvc0. */
const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc
/bin/busybox mount -t proc proc /proc
echo "xen-pmem pv guest up"
i=0
while true; do
  i=$((i + 1))
  echo "tick $i"
  /bin/busybox sleep 1
done
`;

export interface DomU {
  kernel: string;
  ramdisk: string;
}

export function prepareDomU(release: ReleaseArtifacts): DomU {
  const dir = join(repositoryDir(), 'dist', 'lab', 'domu', release.release);
  mkdirSync(dir, { recursive: true });
  const kernel = join(dir, 'kernel');
  if (!existsSync(kernel) || statSync(kernel).size !== statSync(release.kernelImage).size) copyFileSync(release.kernelImage, kernel);
  const ramdisk = join(dir, 'initramfs.cpio.gz');
  if (!existsSync(ramdisk)) {
    if (!existsSync(BUSYBOX)) throw new LabError('prepare-failed', `${BUSYBOX} is missing (Debian's busybox-static): the PV guest's initramfs needs it`);
    const staging = mkdtempSync(join(tmpdir(), 'xen-pmem-domu-'));
    try {
      mkdirSync(join(staging, 'bin'));
      copyFileSync(BUSYBOX, join(staging, 'bin', 'busybox'));
      writeFileSync(join(staging, 'init'), INIT);
      chmodSync(join(staging, 'init'), 0o755);
      const packed = spawnSync('sh', ['-c', `find . -print0 | cpio --null --quiet -o -H newc -R 0:0 | gzip -1 > '${ramdisk}.tmp' && mv '${ramdisk}.tmp' '${ramdisk}'`], { cwd: staging, encoding: 'utf8' });
      if (packed.status !== 0) throw new LabError('prepare-failed', `packing the PV guest's initramfs failed: ${packed.stderr.trim()}`);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  return { kernel, ramdisk };
}
