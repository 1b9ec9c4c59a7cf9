// The PV DomU the lab starts beside Xen's adds (lab/guest/pv-guest.ts): the Dom0 release's own
// kernel and a busybox initramfs whose init counts seconds on the console. Both are put under the
// checkout's dist/, which either Dom0 sees at the same path (the lab cache is not in Debian 13's
// root), and made again only when their inputs changed.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { LabError } from './errors.js';
import { moduleLoadOrder } from './kernel-modules.js';
import { repositoryDir, stageModules, type ReleaseArtifacts } from './prepare.js';

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

/** What each pmem guest writes at the start and at the last 2 MiB of its pmem, and reads back. */
export const PATTERN_BYTES = 2 * 1024 * 1024;

/** The pattern's bytes: SHA-256 in counter mode over a fixed name, the same on every run. */
export function guestPattern(): Buffer {
  const blocks: Buffer[] = [];
  for (let counter = 0; counter * 32 < PATTERN_BYTES; counter++) {
    blocks.push(createHash('sha256').update(`xen-pmem guest pattern ${counter}`).digest());
  }
  return Buffer.concat(blocks).subarray(0, PATTERN_BYTES);
}

/**
 * PID 1 of a guest that is given pmem: the pmem and ext4 modules, then by `xen_pmem_guest=` on
 * its command line: `write` turns the raw namespace into an fsdax one (ndctl), makes an ext4
 * file system on /dev/pmem0, mounts it with DAX and
 * copies the pattern into a file; `read` mounts it with DAX and reads the file; both print the
 * file's digest and where its first extent lies; `plain` (no pmem) just powers off. Each step is
 * one console line the Dom0 reads.
 */
const PMEM_INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
say() { echo "xen-pmem guest: $*"; }
say "up"
mode=plain
for word in $(cat /proc/cmdline); do
  case "$word" in xen_pmem_guest=*) mode=\${word#*=} ;; esac
done
if [ "$mode" = plain ]; then say "done plain"; sleep 1; poweroff -f; fi
while read -r module; do insmod "/modules/$module" || say "insmod $module failed"; done </modules/order
i=0
while [ ! -b /dev/pmem0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b /dev/pmem0 ]; then
  say "no /dev/pmem0"
  cat /proc/iomem | sed 's/^/xen-pmem guest: iomem /'
  dmesg | grep -i -e acpi -e nfit -e pmem -e nvdimm -e nd_ -e persistent -e pci | sed 's/^/xen-pmem guest: dmesg /'
  ls /sys/bus/nd/devices /sys/bus/platform/devices 2>&1 | sed 's/^/xen-pmem guest: sys /'
  say "done failed"; sleep 1; poweroff -f
fi
bytes=$(( $(cat /sys/block/pmem0/size) * 512 ))
say "pmem0 $bytes bytes at $(grep -i 'persistent memory' /proc/iomem | head -n 1 | tr -d ' ')"
mkdir -p /mnt /run /tmp
if [ "$mode" = write ]; then
  # DAX needs struct pages for the range: an fsdax namespace keeps them on the pmem itself. The
  # next boot finds its info block and makes the same device again.
  /usr/bin/ndctl create-namespace --force --reconfig=namespace0.0 --mode=fsdax --map=dev >/dev/null || say "ndctl create-namespace failed"
  i=0
  while [ "$(cat /sys/block/pmem0/queue/dax 2>/dev/null)" != 1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  /usr/sbin/mke2fs -q -F -t ext4 -b 4096 /dev/pmem0 || say "mke2fs failed"
fi
say "pmem0 dax $(cat /sys/block/pmem0/queue/dax) data at $(cat /sys/block/pmem0/device/resource)"
mount -t ext4 -o dax /dev/pmem0 /mnt || say "mount -o dax failed"
say "mounted $(grep ' /mnt ' /proc/mounts)"
dmesg | grep -i dax | sed 's/^/xen-pmem guest: kernel /'
if [ "$mode" = write ]; then
  cp /pattern /mnt/pattern || say "write failed"
  sync
  say "written"
fi
say "read $(sha256sum /mnt/pattern | cut -d' ' -f1)"
# The file's extents: logical block, block on the device, length, in 4 KiB blocks.
/usr/sbin/filefrag -e /mnt/pattern | awk '$1 ~ /^[0-9]+:$/ { gsub(/[.]/, "", $2); gsub(/[.]/, "", $4); gsub(/:/, "", $6); print "xen-pmem guest: extent " $2 " " $4 " " $6 }'
umount /mnt
say "done $mode"
sleep 1
poweroff -f
`;

/** What the guest makes its fsdax namespace and DAX file system with (Debian's ndctl and e2fsprogs, from the host). */
const GUEST_PROGRAMS = ['/usr/bin/ndctl', '/usr/sbin/mke2fs', '/usr/sbin/filefrag'];

/** Copies a program and the shared libraries `ldd` names for it to the same paths under `root`. */
function copyWithLibraries(program: string, root: string): void {
  if (!existsSync(program)) throw new LabError('prepare-failed', `${program} is missing (Debian's ndctl or e2fsprogs): the pmem guest's initramfs needs it`);
  const ldd = spawnSync('ldd', [program], { encoding: 'utf8' });
  if (ldd.status !== 0) throw new LabError('prepare-failed', `ldd ${program} failed: ${ldd.stderr.trim()}`);
  const libraries = [...ldd.stdout.matchAll(/(\/\S+\.so[.\d]*)/g)].map((match) => match[1]!);
  for (const path of [program, ...libraries]) {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    copyFileSync(path, join(root, path));
  }
}

/**
 * The kernel and initramfs of a PVH guest given pmem: `acpiTables` (xen-pmem guest-tables) goes
 * first, uncompressed, so that Linux adds its NFIT and the nfit driver makes /dev/pmem0; the
 * modules come from the release's own tree, in the order modules.dep gives.
 */
export async function preparePmemDomU(release: ReleaseArtifacts, acpiTables: Buffer): Promise<DomU> {
  const dir = join(repositoryDir(), 'dist', 'lab', 'domu', release.release);
  mkdirSync(dir, { recursive: true });
  const kernel = join(dir, 'kernel');
  if (!existsSync(kernel) || statSync(kernel).size !== statSync(release.kernelImage).size) copyFileSync(release.kernelImage, kernel);
  const order = moduleLoadOrder(
    readFileSync(join(release.modulesDir, 'modules.dep'), 'utf8'),
    existsSync(join(release.modulesDir, 'modules.builtin')) ? readFileSync(join(release.modulesDir, 'modules.builtin'), 'utf8') : '',
    // ext4 asks for crc32c through a soft dependency, which modules.dep does not list.
    ['nfit', 'nd_pmem', 'crc32c_generic', 'ext4'],
  );
  // Named by its inputs, so that a changed init or module list makes a new one.
  const digest = createHash('sha256').update(PMEM_INIT).update(order.map((module) => module.path).join('\n')).update(acpiTables).digest('hex').slice(0, 12);
  const ramdisk = join(dir, `pmem-initramfs-${digest}.cpio.gz`);
  if (existsSync(ramdisk)) return { kernel, ramdisk };
  if (!existsSync(BUSYBOX)) throw new LabError('prepare-failed', `${BUSYBOX} is missing (Debian's busybox-static): the guest's initramfs needs it`);
  const staging = mkdtempSync(join(tmpdir(), 'xen-pmem-domu-'));
  try {
    mkdirSync(join(staging, 'bin'));
    mkdirSync(join(staging, 'modules'));
    copyFileSync(BUSYBOX, join(staging, 'bin', 'busybox'));
    writeFileSync(join(staging, 'init'), PMEM_INIT);
    chmodSync(join(staging, 'init'), 0o755);
    writeFileSync(join(staging, 'pattern'), guestPattern());
    for (const program of GUEST_PROGRAMS) copyWithLibraries(program, staging);
    await stageModules(join(staging, 'modules'), release.modulesDir, order.map((module) => module.path));
    // The tables' cpio first and uncompressed, where Linux looks for tables to add.
    writeFileSync(`${ramdisk}.tmp`, acpiTables);
    const packed = spawnSync('sh', ['-c', `find . -print0 | cpio --null --quiet -o -H newc -R 0:0 | gzip -1 >> '${ramdisk}.tmp' && mv '${ramdisk}.tmp' '${ramdisk}'`], { cwd: staging, encoding: 'utf8' });
    if (packed.status !== 0) throw new LabError('prepare-failed', `packing the pmem guest's initramfs failed: ${packed.stderr.trim()}`);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return { kernel, ramdisk };
}
