// A guest given persistent memory, from the host's side: two boots of the patched hypervisor over
// one NVDIMM image file (lab/guest/guest-pmem.ts is the Dom0's side). The image is prepared with
// `xen-pmem setup` and the guest's ACPI tables made with `xen-pmem guest-tables`, as an operator
// would; the first boot's guest writes a file on a DAX file system, the second boot's reads it,
// and the host finds the file's bytes in the image. test/lab/guest-pmem.test.ts judges the run;
// the demo tells it.

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { GiB } from '../src/core/units.js';
import { guestPattern, PATTERN_BYTES, preparePmemDomU } from './domu.js';
import { LabError } from './errors.js';
import { GUEST_PMEM_RESULT, type GuestPmemResult } from './guest/guest-pmem.js';
import { dom0ForBase, type PatchedXen } from './hypervisor.js';
import { preparedImage, readImageBytes, runXenPmem } from './nvdimm-images.js';
import type { LabArtifacts } from './prepare.js';
import type { ProgressLog } from './progress.js';
import { readRun, type ScenarioRun } from './scenario-run.js';
import { withLab } from './vm.js';

/** Where the guests see their pmem: above their RAM (256 MiB), as `xen-pmem attach` does by default. */
export const GUEST_ADDRESS = 4n * GiB;

export interface GuestBoot extends ScenarioRun<GuestPmemResult> {
  serial: string;
}

export interface GuestChain {
  boots: GuestBoot[];
  /** The file's bytes read from the image file where the writing guest said they are; null when it did not say. */
  fileBytes: Buffer | null;
  /** sha256 of what the guests write. */
  pattern: string;
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A guest's console line that begins `xen-pmem guest: <prefix>`. */
export function guestLine(boot: GuestBoot | undefined, name: string, prefix: string): string | undefined {
  return boot?.result?.guests.find((guest) => guest.name === name)?.console.find((each) => each.startsWith(`xen-pmem guest: ${prefix}`));
}

/**
 * Where the pattern's file lies, as the writing guest said: the guest-physical address of its
 * /dev/pmem0's first byte (after the fsdax namespace's struct pages), and filefrag's extents
 * (logical block, block on the device, length; 4 KiB blocks).
 */
export function fileLayout(boot: GuestBoot): { pmemStart: bigint; extents: Array<{ logical: bigint; physical: bigint; blocks: bigint }> } | null {
  const lines = boot.result?.guests.find((guest) => guest.name === 'pmem-a')?.console ?? [];
  const extents = lines.map((line) => /^xen-pmem guest: extent (\d+) (\d+) (\d+)$/.exec(line)).filter((each) => each !== null)
    .map((match) => ({ logical: BigInt(match[1]!), physical: BigInt(match[2]!), blocks: BigInt(match[3]!) }));
  const start = lines.map((line) => /^xen-pmem guest: pmem0 dax 1 data at (0x[0-9a-f]+)$/.exec(line)).find((each) => each !== null);
  return extents.length > 0 && start ? { pmemStart: BigInt(start[1]!), extents } : null;
}

export async function runGuestChain(options: {
  artifacts: LabArtifacts;
  xen: PatchedXen;
  /** The NVDIMM's size (a sparse file); the first boot's second guest is given all of its data area. */
  nvdimmBytes: bigint;
  /** What each guest with pmem is given. */
  guestBytes: bigint;
  log: ProgressLog;
}): Promise<GuestChain> {
  const { artifacts, xen, nvdimmBytes, guestBytes, log } = options;
  // The toolstack in the Dom0 must be the hypervisor's own release's.
  const dom0 = dom0ForBase(xen.base);
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-guest-'));
  const boots: GuestBoot[] = [];
  let fileBytes: Buffer | null = null;
  try {
    const tablesFile = join(images, 'tables.cpio');
    const tables = runXenPmem(['guest-tables', '--size', String(guestBytes), '--at', String(GUEST_ADDRESS), '--output', tablesFile]);
    if (tables.code !== 0) throw new LabError('bad-options', `${tables.command} failed (exit ${tables.code}): ${tables.stderr.trim()}`);
    const domU = await preparePmemDomU(artifacts.releases[dom0], await readFile(tablesFile));
    const image = join(images, 'nv0.img');
    preparedImage(image, nvdimmBytes);
    for (const boot of ['first', 'second']) {
      log(`${boot} boot: the daemon reports the NVDIMM, then guests are given its pmem`);
      boots.push(await withLab({
        artifacts,
        dom0,
        xenImage: xen.xenImage,
        cpu: 'svm',
        nvdimms: [{ id: 'nv0', imagePath: image, sizeBytes: nvdimmBytes }],
        scenario: 'guest-pmem',
        xenArgs: [...xen.bootArgs],
        env: { LAB_GUEST_BOOT: boot, LAB_DOMU_KERNEL: domU.kernel, LAB_DOMU_RAMDISK: domU.ramdisk, LAB_GUEST_BYTES: String(guestBytes) },
        timeoutMs: 600_000,
        log,
      }, async (lab) => {
        await lab.waitForFile('done');
        return { ...(await readRun<GuestPmemResult>(lab, GUEST_PMEM_RESULT)), serial: await readFile(lab.serialLogPath, 'utf8') };
      }));
      // A reboot proves persistence only of what the first boot's guest wrote.
      if (boots.at(-1)!.result?.phase !== 'done' || !guestLine(boots[0], 'pmem-a', 'written')) break;
    }
    const layout = boots[0]?.result?.layout;
    const file = boots[0] && fileLayout(boots[0]);
    if (layout && file) {
      // The NVDIMM is one raw namespace: the region starts at byte 0 of the image file, and the
      // guest's range at the data area's first frame. The file's bytes, extent by extent.
      const dataOffset = (BigInt(layout.pfns.dataSpfn!) - BigInt(layout.pfns.spfn!)) * 4096n;
      fileBytes = Buffer.alloc(PATTERN_BYTES);
      for (const extent of file.extents) {
        const at = dataOffset + (file.pmemStart - GUEST_ADDRESS) + extent.physical * 4096n;
        readImageBytes(image, at, Number(extent.blocks * 4096n)).copy(fileBytes, Number(extent.logical * 4096n));
      }
    }
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  return { boots, fileBytes, pattern: sha256(guestPattern()) };
}
