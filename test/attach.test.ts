// `xen-pmem attach`: which frames of a reported data area a guest gets and where (the pure
// planGuestPmem), the XENPF_PMEM_assign struct, and the command against the test hypervisor,
// which checks the frames as Xen does and has no guest to give them to; and who holds what, as
// `xen-pmem status` reads it from Xen.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { DEFAULT_GUEST_ADDRESS, planGuestPmem } from '../src/core/guest-frames.js';
import { GiB, MiB } from '../src/core/units.js';
import { xenpfPmem } from '../src/xen/interfaces/xenpf-pmem.js';
import type { HypercallPort } from '../src/xen/ports.js';
import { decodeAssignDone, encodeAssign, OFFSETS, SUB_OP, XENPF_PMEM_REASONS } from '../src/xen/xenpf-pmem.js';
import { forgetXenInProcess, type DaemonHost } from '../fixtures/daemon-host.js';
import { commandOnHost, reportedHost } from './helpers/reported-host.js';
import { hasCommand } from '../fixtures/images.js';

const DATA = { dataSpfn: 0x101e00n, dataEpfn: 0x17fe00n };

describe('planGuestPmem', () => {
  test('1 GiB from the start of the data area at 4 GiB: frames and guest frames', () => {
    assert.deepEqual(planGuestPmem({ ...DATA, offset: 0n, size: GiB, guestAddress: DEFAULT_GUEST_ADDRESS }), {
      ok: true, frames: { mfn: 0x101e00n, gfn: 0x100000n, nr: 0x40000n },
    });
  });

  test('no size: the rest of the data area from the offset', () => {
    const plan = planGuestPmem({ ...DATA, offset: 2n * MiB, size: null, guestAddress: 8n * GiB });
    assert.ok(plan.ok);
    assert.deepEqual([plan.frames.mfn, plan.frames.nr, plan.frames.gfn], [0x102000n, 0x17fe00n - 0x102000n, 0x200000n]);
  });

  test('refusals, each with its reason and the numbers', () => {
    const cases: Array<[Partial<Parameters<typeof planGuestPmem>[0]>, string, RegExp]> = [
      [{ offset: 1n }, 'unaligned', /offset 0x1 is not a multiple of 4 KiB/],
      [{ size: 4097n }, 'unaligned', /size 0x1001/],
      [{ guestAddress: 0x100000800n }, 'unaligned', /guest address 0x100000800/],
      [{ size: 2n * GiB }, 'outside-data', /2\.00 GiB from offset 0x0 does not fit the data area of 1\.97 GiB \(frames \[0x101e00, 0x17fe00\)\)/],
      [{ offset: 0x7e000n * 4096n, size: null }, 'empty', /nothing to give/],
      [{ guestAddress: 1n << 52n }, 'address-overflow', /beyond 52 bits/],
    ];
    for (const [change, reason, message] of cases) {
      const plan = planGuestPmem({ ...DATA, offset: 0n, size: GiB, guestAddress: DEFAULT_GUEST_ADDRESS, ...change });
      assert.equal(plan.ok, false, JSON.stringify(change, (_, v) => typeof v === 'bigint' ? String(v) : v));
      if (!plan.ok) {
        assert.equal(plan.reason, reason);
        assert.match(plan.message, message);
      }
    }
  });
});

describe('struct xenpf_pmem_assign', () => {
  test('mfn, gfn, nr, done and domid at the offsets of Xen\'s header; done comes back', () => {
    const buf = encodeAssign({ mfn: 0x101e00n, gfn: 0x100000n, nr: 0x40000n, domid: 7 });
    assert.equal(buf.readUInt32LE(OFFSETS.sub), SUB_OP.assign);
    assert.deepEqual([buf.readBigUInt64LE(16), buf.readBigUInt64LE(24), buf.readBigUInt64LE(32), buf.readBigUInt64LE(40), buf.readUInt16LE(48)], [0x101e00n, 0x100000n, 0x40000n, 0n, 7]);
    buf.writeBigUInt64LE(0x200n, OFFSETS.assignDone);
    assert.equal(decodeAssignDone(buf), 0x200n);
    assert.throws(() => encodeAssign({ mfn: 0n, gfn: 0n, nr: 1n, domid: 0x10000 }), RangeError);
    assert.equal(XENPF_PMEM_REASONS[28], 'gfn-in-use');
  });
});

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk)';

describe('xen-pmem attach', { skip }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    forgetXenInProcess();
  });

  function attach(host: DaemonHost, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return commandOnHost(host, 'attach', args);
  }

  test('--dry-run names the frames and the guest address, and sends nothing', async () => {
    const host = await reportedHost('attach', cleanups);
    const result = await attach(host, ['--dry-run', '--size', '128M', 'guest', 'pmem0']);
    assert.deepEqual([result.code, result.stderr], [0, '']);
    assert.equal(result.stdout, 'would give guest 128.00 MiB of pmem0\'s data area (frames [0x100e00, 0x108e00)) at guest address 0x100000000\n');
  });

  test('the frames go to Xen, which checks them: in a data range, then the domain (the test hypervisor has none)', async () => {
    const host = await reportedHost('attach', cleanups);
    const result = await attach(host, ['--size', '128M', '7', 'pmem0']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /^xen-pmem attach: Xen answered XENPF_pmem assign of 32768 frames from 0x100e00 at GFN 0x100000 to domain 7 with ESRCH no_such_domain: there is no such domain \(no-such-domain\)\n$/);
  });

  test('only a reported device, by name or UUID, and only what fits its data area', async () => {
    const host = await reportedHost('attach', cleanups);
    assert.match((await attach(host, ['7', 'pmem1'])).stderr, /pmem1 is absent \(.*\), not reported: Xen gives guests only what it holds/);
    assert.match((await attach(host, ['7', 'pmem9'])).stderr, /xen-pmemd knows no device pmem9/);
    assert.match((await attach(host, ['7', 'pmem0', '--size', '1G'])).stderr, /pmem0: 1\.00 GiB from offset 0x0 does not fit the data area of 240\.00 MiB/);
    assert.match((await attach(host, ['7', 'pmem0', '--size', 'lots'])).stderr, /--size "lots" is not a size/);
    assert.match((await attach(host, ['pmem0'])).stderr, /expected DOMAIN and DEVICE, got 1 arguments/);
  });
});

describe('owners: Xen\'s runs, as status shows them', () => {
  test('one guest\'s frames that Xen answers in runs of 2^20 are one run; another holder starts a new one', async () => {
    // What Xen holds here: [0x100000, 0x250000) by domain 5 (answered in runs of at most 2^20
    // frames), then [0x250000, 0x260000) by domain 6, then nothing.
    const answers: Array<[bigint, bigint, number]> = [[0x100000n, 0x200000n, 5], [0x200000n, 0x250000n, 5], [0x250000n, 0x260000n, 6], [0n, 0n, 0x7ff4]];
    const port = {
      async platformOp(buf: Buffer) {
        const after = Buffer.from(buf);
        const [spfn, epfn, domid] = answers.shift()!;
        after.writeUInt16LE(1, OFFSETS.abi);
        after.writeBigUInt64LE(spfn, OFFSETS.ownerSpfn);
        after.writeBigUInt64LE(epfn, OFFSETS.ownerEpfn);
        after.writeUInt16LE(domid, OFFSETS.ownerDomid);
        return { rc: 0, errno: 0, after };
      },
      async xenVersion() { return { rc: 0, errno: 0, after: Buffer.alloc(0) }; },
      close() {},
    };
    const owners = await xenpfPmem.owners(port as unknown as HypercallPort, { spfn: 0x100000n, epfn: 0x300000n });
    assert.deepEqual(owners, { kind: 'answered', value: [{ spfn: 0x100000n, epfn: 0x250000n, domid: 5 }, { spfn: 0x250000n, epfn: 0x260000n, domid: 6 }] });
  });
});
