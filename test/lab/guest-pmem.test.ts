// A guest gets persistent memory and finds its bytes again after the host reboots: two boots of
// the patched hypervisor over the same NVDIMM image file (lab/guest-chain.ts runs them,
// lab/guest/guest-pmem.ts is the Dom0's side). In each the daemon reports the NVDIMM and `xen-pmem
// attach` gives a PVH guest 1 GiB of its data area; the first boot's guest puts a DAX file system
// on it and writes a file, the second boot's reads it back, and the host finds the file's bytes
// in the image file. Between them: a second guest is refused frames another holds, the Dom0
// cannot map them as I/O frames, and a guest's end frees its range for the next.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GiB, hex } from '../../src/core/units.js';
import { PATTERN_BYTES } from '../../lab/domu.js';
import { fileLayout, guestLine as line, runGuestChain, sha256 } from '../../lab/guest-chain.js';
import { prepareNewestPatchedXen } from '../../lab/hypervisor.js';
import { stderrProgress } from '../../lab/progress.js';
import { labAvailability } from './lab-available.js';
import { guestFailure } from './scenario-asserts.js';

/** Sparse: the guests touch 1 GiB of it; the second guest of the first boot is given all of its data area. */
const NVDIMM = BigInt(process.env.XEN_PMEM_GUEST_NVDIMM_GIB ?? '8') * GiB;
const GUEST = 1n * GiB;

test('a PVH guest is given 1 GiB of pmem, writes to it, and a guest after a host reboot reads it back', { timeout: 1_500_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  const log = stderrProgress('guest-pmem');
  const { xen, fallback } = await prepareNewestPatchedXen(log);
  if (xen.variant !== 'debian') t.diagnostic(`Xen built with the matrix's ${xen.variant} configuration: ${xen.xenImage}`);
  if (fallback !== null) t.diagnostic(`on Xen 4.17 with the series: ${fallback}`);
  const { boots, fileBytes, pattern } = await runGuestChain({ artifacts: availability.artifacts, xen, nvdimmBytes: NVDIMM, guestBytes: GUEST, log });

  const [first, second] = boots;

  await t.test('both boots ran to their end', () => {
    for (const boot of boots) {
      assert.equal(boot.exitStatus, '0', guestFailure(boot));
      assert.equal(boot.result?.phase, 'done', guestFailure(boot));
    }
    assert.equal(boots.length, 2);
  });
  if (!first?.result || first.result.phase !== 'done') return;
  const got = first.result;
  const dataSpfn = BigInt(got.layout!.pfns.dataSpfn!);
  const guestRun = { spfn: hex(dataSpfn), epfn: hex(dataSpfn + GUEST / 4096n) };

  await t.test('xen-pmem attach gave the first guest 1 GiB, which its Linux found as /dev/pmem0 at 4 GiB', () => {
    const a = got.guests.find((guest) => guest.name === 'pmem-a')!;
    assert.equal(a.attach?.status, 0, a.attach?.stderr);
    assert.deepEqual(got.owners['pmem-a holds']?.map(({ spfn, epfn }) => ({ spfn, epfn })), [guestRun]);
    assert.match(line(first, 'pmem-a', 'pmem0') ?? '', new RegExp(`pmem0 ${GUEST} bytes at 100000000-13fffffff`), a.console.join('\n'));
  });

  await t.test('a second guest is refused the frames the first holds, and the Dom0 cannot map them as I/O frames', () => {
    assert.equal(got.heldElsewhere?.status, 2, got.heldElsewhere?.stdout);
    assert.match(got.heldElsewhere?.stderr ?? '', /EBUSY held/);
    assert.equal(got.ioMapping.length, 3);
    for (const mapping of got.ioMapping) assert.notEqual(mapping.errno, 0, `frame ${mapping.frame} mapped as an I/O frame`);
  });

  await t.test('Xen refuses, with the reason, what no guest may be given and a domain that may not take pmem', () => {
    assert.deepEqual(got.refusals.map(({ label, rc, errno, reason }) => [label, rc, errno, reason]), [
      ['the reserved range', -1, 22, 'not-data'],
      ['the region\'s first frames (GPT, super block)', -1, 22, 'not-data'],
      ['past the data range\'s end', -1, 22, 'not-data'],
      ['free frames to the Dom0', -1, 95, 'unsupported-domain'],
      ['free frames over the guest\'s RAM', -1, 16, 'gfn-in-use'],
      ['free frames to no domain', -1, 3, 'no-such-domain'],
    ]);
  });

  await t.test('the guest\'s end gives the range back: the next guest is given the whole data area, and its end frees it', () => {
    assert.deepEqual(got.owners['pmem-a gone'], []);
    assert.deepEqual([got.wholeArea?.rc, got.wholeArea?.reason], [0, 'none'], JSON.stringify(got.wholeArea));
    assert.equal(got.owners['pmem-b holds']?.length, 1);
    assert.equal(got.owners['pmem-b holds']![0]!.spfn, hex(dataSpfn));
    assert.equal(got.owners['pmem-b holds']![0]!.epfn, got.layout!.pfns.dataEpfn);
    assert.deepEqual(got.owners['pmem-b gone'], []);
  });

  await t.test('the first guest made an ext4 file system on it, mounted it with DAX, and read back the file it wrote', () => {
    const console = got.guests.find((guest) => guest.name === 'pmem-a')!.console.join('\n');
    assert.match(line(first, 'pmem-a', 'mounted') ?? '', /^xen-pmem guest: mounted \/dev\/pmem0 \/mnt ext4 \S*\bdax\b/, console);
    assert.ok(line(first, 'pmem-a', 'written'), console);
    assert.equal(line(first, 'pmem-a', 'read'), `xen-pmem guest: read ${pattern}`, console);
  });

  await t.test('after the host rebooted, a new guest given the same range mounted it with DAX and read the same file', () => {
    assert.equal(second?.result?.phase, 'done', second ? guestFailure(second) : 'no second boot');
    const console = second?.result?.guests.find((guest) => guest.name === 'pmem-c')?.console.join('\n');
    assert.match(line(second, 'pmem-c', 'mounted') ?? '', /\bdax\b/, console);
    assert.equal(line(second, 'pmem-c', 'read'), `xen-pmem guest: read ${pattern}`, console);
  });

  await t.test('the file\'s bytes are in the NVDIMM\'s image file, where its extents say, past the data area\'s offset', () => {
    const file = fileLayout(first!);
    assert.ok(file, 'the writing guest named no extents or no start of its pmem0');
    assert.equal(file.extents.reduce((total, extent) => total + extent.blocks, 0n), BigInt(PATTERN_BYTES / 4096), 'the extents cover the file');
    assert.ok(fileBytes);
    assert.equal(sha256(fileBytes), pattern);
  });

  await t.test('no Dom0 kernel trouble, no Xen crash', () => {
    for (const boot of boots) {
      assert.deepEqual(boot.result?.kernelTrouble ?? [], []);
      assert.deepEqual(boot.serial.split('\n').filter((each) => /Panic|FATAL|Xen BUG|Assertion '/i.test(each)), []);
    }
  });

  const c = second?.result?.guests.find((guest) => guest.name === 'pmem-c');
  const plain = second?.result?.guests.find((guest) => guest.name === 'plain');
  const whole = got.wholeArea;
  const wholeGiB = whole ? Number(BigInt(whole.frames) * 4096n) / Number(GiB) : 0;
  t.diagnostic(`Xen ${xen.base}: xen-pmem attach of 1 GiB ${got.guests[0]?.attach?.ms} ms (first boot), ${c?.attach?.ms} ms (second), the whole command; `
    + `one assign of the whole data area (${wholeGiB.toFixed(2)} GiB) ${whole?.wallMs} ms (${whole ? (whole.wallMs / wholeGiB).toFixed(0) : '?'} ms/GiB, the hypercall alone). `
    + `Guest runs, unpause to done: write ${got.guests[0]?.runMs} ms, read ${c?.runMs} ms; a guest without pmem, create to done: ${plain?.runMs} ms`);
});
