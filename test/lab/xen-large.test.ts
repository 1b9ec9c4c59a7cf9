// A large region on the patched hypervisor: one add of a 64 GiB NVDIMM (a sparse image file) from
// the Dom0, preempted by continuations, with the Dom0 free of soft lockups and RCU stalls; beside
// it, in the same boot, Linux building its own memmap over 4 GiB of pmem (an fsdax namespace with
// --map=mem). The figures are diagnostics: cost is measured here, not asserted (docs/hypervisor.md
// keeps the table). XEN_PMEM_LARGE_GIB sets the size for a run on demand.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { GiB, hex, KiB } from '../../src/core/units.js';
import { XEN_LARGE_RESULT, type XenLargeResult } from '../../lab/guest/xen-large.js';
import { prepareNewestPatchedXen } from '../../lab/hypervisor.js';
import { blankImage } from '../../lab/nvdimm-images.js';
import { stderrProgress } from '../../lab/progress.js';
import { readRun, type ScenarioRun } from '../../lab/scenario-run.js';
import { withLab } from '../../lab/vm.js';
import { parseXenPmemLines } from '../../lab/xen-console.js';
import { labAvailability } from './lab-available.js';
import { guestFailure } from './scenario-asserts.js';

const LARGE_GIB = BigInt(process.env.XEN_PMEM_LARGE_GIB ?? '64');
const LARGE = LARGE_GIB * GiB;
const LINUX = 4n * GiB;
/** A pdx group is 256 MiB: the add builds one at a time and may stop between any two. */
const GROUPS = LARGE / (256n * 1024n * 1024n);

interface Collected extends ScenarioRun<XenLargeResult> {
  serial: string;
}

test(`a ${LARGE_GIB} GiB region added to the patched Xen, preemptibly, beside Linux's memmap over ${LINUX / GiB} GiB`, { timeout: 900_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const log = stderrProgress('xen-large');
  const { xen, fallback } = await prepareNewestPatchedXen(log);
  if (fallback !== null) t.diagnostic(`on Xen 4.17 with the series: ${fallback}`);
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-large-'));
  let collected: Collected;
  try {
    blankImage(join(images, 'nv0.img'), LARGE);
    blankImage(join(images, 'nv1.img'), LINUX);
    collected = await withLab({
      artifacts: availability.artifacts,
      xenImage: xen.xenImage,
      nvdimms: [
        { id: 'nv0', imagePath: join(images, 'nv0.img'), sizeBytes: LARGE },
        { id: 'nv1', imagePath: join(images, 'nv1.img'), sizeBytes: LINUX, labelSizeBytes: 128n * KiB },
      ],
      scenario: 'xen-large',
      xenArgs: [...xen.bootArgs],
      env: { LAB_LARGE_BYTES: String(LARGE) },
      timeoutMs: 600_000,
      log,
    }, async (lab) => {
      await lab.waitForFile('done');
      return { ...(await readRun<XenLargeResult>(lab, XEN_LARGE_RESULT)), serial: await readFile(lab.serialLogPath, 'utf8') };
    });
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  const got = collected.result;

  await t.test('the guest program ran to its end', () => {
    assert.equal(collected.exitStatus, '0', guestFailure(collected));
    assert.equal(got?.phase, 'done', guestFailure(collected));
  });
  if (!got?.add || !got.region) return;

  const added = parseXenPmemLines(collected.serial).find((line) => line.kind === 'added' && hex(line.request.spfn) === got.add!.report.spfn);
  await t.test(`Xen took the ${LARGE_GIB} GiB region with the six PFNs sent, over more continuations than it has pdx groups to build`, () => {
    assert.deepEqual([got.add!.rc, got.add!.reason], [0, 'none'], JSON.stringify(got.add));
    assert.ok(added?.kind === 'added', 'no added line on Xen\'s console');
    assert.deepEqual(Object.fromEntries(Object.entries(added.request).map(([key, value]) => [key, hex(value)])), got.add!.report);
    // One continuation at least between any two of its groups: the add never holds the CPU for all of them.
    assert.ok(BigInt(added.continuations) >= GROUPS - 1n, `${added.continuations} continuations for ${GROUPS} pdx groups`);
  });

  await t.test('the Dom0 saw no soft lockup, RCU stall or oops, and Linux built its memmap over the fsdax namespace', () => {
    assert.deepEqual(got.kernelTrouble, []);
    assert.deepEqual(collected.serial.split('\n').filter((line) => /soft lockup|rcu.*stall|Panic|FATAL|Xen BUG|Assertion '/i.test(line)), []);
    assert.ok(got.linux, `no Linux result (guest stopped in phase ${got.phase})`);
  });

  if (added?.kind === 'added' && got.linux) {
    const xenPerGiB = added.ms / Number(LARGE_GIB);
    const linuxGiB = Number(BigInt(got.linux.bytes)) / Number(GiB);
    const linuxPerGiB = got.linux.createMs / linuxGiB;
    t.diagnostic(`Xen ${xen.base}: ${LARGE_GIB} GiB in ${added.ms} ms over ${added.continuations} continuations (${xenPerGiB.toFixed(1)} ms/GiB; `
      + `frame table ${added.chunks.frameTable}, M2P ${added.chunks.m2p} chunks; hypercall wall ${got.add.wallMs} ms). `
      + `Linux: ndctl create-namespace --mode=fsdax --map=mem over ${linuxGiB.toFixed(2)} GiB in ${got.linux.createMs} ms (${linuxPerGiB.toFixed(1)} ms/GiB, the whole command). `
      + `Xen/Linux per GiB: ${(xenPerGiB / linuxPerGiB).toFixed(3)}`);
  }
});
