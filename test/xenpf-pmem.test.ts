// XENPF_pmem's struct (src/xen/xenpf-pmem.ts), the hypervisor's rules (checkPmemAddLikeXen) and
// the test hypervisor's C rules agreeing with them on random requests and on one example each.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';

import { hex } from '../src/core/units.js';
import { xenMinimumReservedPages } from '../src/core/xen-sizing.js';
import { openXencall } from '../src/native/libxencall.js';
import type { HypercallPort } from '../src/xen/ports.js';
import type { PmemReport } from '../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../src/xen/interfaces/xenpf-pmem.js';
import {
  decodeAdd, decodeHeader, decodeOwner, decodeRegion, describeLayout, encodeAdd, encodeOwner, encodeRegion,
  OFFSETS, PLATFORM_OP_BYTES, reasonCodeOf, reasonNumberOf, XENPF_INTERFACE_VERSION, XENPF_PMEM, XENPF_PMEM_REASONS,
} from '../src/xen/xenpf-pmem.js';
import { buildTestHypervisor } from './hypervisor/build.js';
import { seeded, withSeed } from './helpers/seed.js';
import { REPORT_256MIB_AT_4GIB } from './helpers/reports.js';

const VALID = REPORT_256MIB_AT_4GIB;

describe('struct xen_platform_op for XENPF_pmem', () => {
  it('is 136 bytes: cmd 67, interface_version, then struct xenpf_pmem at 8 with its union at 16', () => {
    assert.equal(PLATFORM_OP_BYTES, 136);
    assert.equal(XENPF_PMEM, 67);
    assert.equal(XENPF_INTERFACE_VERSION, 0x03000001);
    assert.deepEqual(
      [OFFSETS.sub, OFFSETS.abi, OFFSETS.reason, OFFSETS.union, OFFSETS.regionNr, OFFSETS.regionLayout, OFFSETS.frameTableChunks, OFFSETS.m2pChunks, OFFSETS.compatM2pChunks, OFFSETS.freeFrames, OFFSETS.ownerSpfn, OFFSETS.ownerEpfn, OFFSETS.ownerDomid],
      [8, 12, 14, 16, 20, 24, 72, 76, 80, 88, 24, 32, 40],
    );
  });

  it('encodes an add: sub-operation 1 and the six PFNs little-endian at 16..63, the rest zero', () => {
    const request: PmemReport = {
      spfn: 0x0102030405060708n, epfn: 0x1112131415161718n, rsvSpfn: 0x2122232425262728n,
      rsvEpfn: 0x3132333435363738n, dataSpfn: 0x4142434445464748n, dataEpfn: 0x5152535455565758n,
    };
    const bytes = encodeAdd(request);
    assert.equal(bytes.length, 136);
    assert.deepEqual([...bytes.subarray(0, 4)], [67, 0, 0, 0]);
    assert.deepEqual([...bytes.subarray(4, 8)], [0x01, 0x00, 0x00, 0x03]);
    assert.deepEqual([...bytes.subarray(8, 16)], [1, 0, 0, 0, 0, 0, 0, 0], 'sub-operation add; abi and reason zero');
    assert.deepEqual([16, 24, 32, 40, 48, 56].map((offset) => bytes[offset]), [0x08, 0x18, 0x28, 0x38, 0x48, 0x58]);
    assert.deepEqual([16, 24, 32, 40, 48, 56].map((offset) => bytes[offset + 7]), [0x01, 0x11, 0x21, 0x31, 0x41, 0x51]);
    assert.ok(bytes.subarray(64).every((byte) => byte === 0));
  });

  it('decodes what it encodes, for any six u64', () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(u64, u64, u64, u64, u64, u64, (spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn) => {
        const request = { spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn };
        const bytes = encodeAdd(request);
        assert.deepEqual(decodeAdd(bytes), request);
        assert.deepEqual(decodeHeader(bytes), { cmd: 67, sub: 1, abi: 0, reason: 0 });
      }),
      seeded(100),
    );
  });

  it('encodes the region and owner queries, and reads their answers at the header\'s offsets', () => {
    const region = encodeRegion(0xffffffff);
    assert.deepEqual(decodeHeader(region), { cmd: 67, sub: 2, abi: 0, reason: 0 });
    assert.equal(region.readUInt32LE(16), 0xffffffff);
    region.writeUInt32LE(3, 20);
    region.writeBigUInt64LE(0x100000n, 24);
    region.writeBigUInt64LE(0x110000n, 32);
    region.writeUInt32LE(2, 72);
    region.writeBigUInt64LE(0xfa00n, 88);
    const decoded = decodeRegion(region);
    assert.equal(decoded.nrRegions, 3);
    assert.equal(decoded.layout.spfn, 0x100000n);
    assert.equal(decoded.layout.epfn, 0x110000n);
    assert.equal(decoded.frameTableChunks, 2);
    assert.equal(decoded.freeFrames, 0xfa00n);

    const owner = encodeOwner(0x100600n);
    assert.deepEqual(decodeHeader(owner), { cmd: 67, sub: 3, abi: 0, reason: 0 });
    assert.equal(owner.readBigUInt64LE(16), 0x100600n);
    owner.writeBigUInt64LE(0x100600n, 24);
    owner.writeBigUInt64LE(0x100800n, 32);
    owner.writeUInt16LE(7, 40);
    assert.deepEqual(decodeOwner(owner), { spfn: 0x100600n, epfn: 0x100800n, domid: 7 });
  });

  it('refuses to encode a PFN that does not fit u64', () => {
    assert.throws(() => encodeAdd({ ...VALID, dataEpfn: 1n << 64n }), /data_epfn 18446744073709551616/);
    assert.throws(() => encodeAdd({ ...VALID, spfn: -1n }), RangeError);
  });

  it('describes all six PFNs in hex', () => {
    assert.equal(describeLayout(VALID), 'spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000');
  });

  it('names every XENPF_PMEM_R_* of the header, 0 to 28, and an unknown one by its number', () => {
    assert.equal(XENPF_PMEM_REASONS.length, 29);
    assert.equal(reasonCodeOf(4), 'reserved-too-small');
    assert.equal(reasonCodeOf(16), 'mapped');
    assert.equal(reasonCodeOf(17), 'reserved-exhausted');
    assert.equal(reasonCodeOf(21), 'no-such-region');
    assert.equal(reasonCodeOf(27), 'bad-command');
    assert.equal(reasonCodeOf(28), 'gfn-in-use');
    assert.equal(reasonCodeOf(99), 'xen-reason-99');
    assert.equal(reasonNumberOf('already-added'), 7);
  });
});

describe('checkPmemAddLikeXen', () => {
  it('accepts a valid layout', () => {
    assert.deepEqual(checkPmemAddLikeXen(VALID, []), { ok: true });
  });

  it('computes the rule 4 minimum from 32 + 8 bytes per page', () => {
    assert.equal(xenMinimumReservedPages(65536n), 640n); // 256 MiB
    assert.equal(xenMinimumReservedPages(1n << 28n), 2621440n); // 1 TiB
    assert.equal(xenMinimumReservedPages(127n), 0n);
  });

  const other = { ...VALID, spfn: 0x10fe00n, epfn: 0x120000n, rsvSpfn: 0x10fe00n, rsvEpfn: 0x110000n, dataSpfn: 0x110000n, dataEpfn: 0x120000n };
  const cases: [number, string, string, PmemReport, PmemReport[], RegExp][] = [
    [1, 'empty-range', 'EINVAL', { ...VALID, epfn: VALID.spfn }, [], /region \[0x100000, 0x100000\) is empty/],
    [1, 'empty-range', 'EINVAL', { ...VALID, dataSpfn: 0x110000n }, [], /data range \[0x110000, 0x110000\) is empty/],
    [2, 'outside-region', 'EINVAL', { ...VALID, rsvSpfn: 0xfff00n }, [], /reserved range \[0xfff00, 0x100600\) is not inside the region \[0x100000, 0x110000\)/],
    [2, 'outside-region', 'EINVAL', { ...VALID, dataEpfn: 0x110001n }, [], /data range \[0x100600, 0x110001\)/],
    [3, 'reserved-data-overlap', 'EINVAL', { ...VALID, dataSpfn: 0x1005ffn }, [], /reserved range \[0x100200, 0x100600\) overlaps the data range \[0x1005ff, 0x110000\)/],
    [4, 'reserved-too-small', 'ENOSPC', { ...VALID, rsvEpfn: 0x10047fn }, [], /has 0x27f pages .* 0x10000 pages needs at least 0x280/],
    [5, 'overlaps-added-region', 'EINVAL', VALID, [other], /overlaps \[0x10fe00, 0x120000\), which was already added/],
    [5, 'already-added', 'EEXIST', VALID, [VALID], /was already added with exactly these ranges/],
    [6, 'region-not-2mib-aligned', 'EINVAL', { ...VALID, spfn: 0x100100n }, [], /region \[0x100100, 0x110000\) must start and end on a 2 MiB boundary/],
  ];
  const ERRNO: Record<string, number> = { EINVAL: 22, ENOSPC: 28, EEXIST: 17 };
  for (const [rule, reason, errno, request, added, message] of cases) {
    it(`reports rule ${rule} (${reason}, ${errno}) with the numbers in hex, e.g. /${message.source.split(' ')[0]}.../`, () => {
      const verdict = checkPmemAddLikeXen(request, added);
      assert.ok(!verdict.ok);
      assert.equal(verdict.rule, rule);
      assert.equal(verdict.reason, reason);
      assert.equal(verdict.errno, ERRNO[errno]);
      assert.equal(verdict.xenReason, reasonNumberOf(verdict.reason as never));
      assert.match(verdict.message, message);
    });
  }

  it('reports the first broken rule when several are broken', () => {
    const verdict = checkPmemAddLikeXen({ ...VALID, spfn: 0x100100n, rsvEpfn: 0x100201n }, [VALID]);
    assert.ok(!verdict.ok);
    assert.equal(verdict.rule, 4);
  });
});

/**
 * A request for each outcome, in the order they run against one hypervisor: the valid one first,
 * so that rule 5 has a region to overlap and one to repeat. PFNs far from the random requests'.
 */
const FIRST: PmemReport = { spfn: 0x10000n, epfn: 0x10400n, rsvSpfn: 0x10000n, rsvEpfn: 0x10010n, dataSpfn: 0x10010n, dataEpfn: 0x10400n };
const EVERY_OUTCOME: PmemReport[] = [
  FIRST,
  { spfn: 0x20000n, epfn: 0x20000n, rsvSpfn: 0x20000n, rsvEpfn: 0x20010n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x1fff0n, rsvEpfn: 0x20010n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x20000n, rsvEpfn: 0x20010n, dataSpfn: 0x2000fn, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x20000n, rsvEpfn: 0x20001n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x10200n, epfn: 0x10600n, rsvSpfn: 0x10200n, rsvEpfn: 0x10210n, dataSpfn: 0x10210n, dataEpfn: 0x10600n },
  FIRST,
  { spfn: 0x20001n, epfn: 0x20400n, rsvSpfn: 0x20001n, rsvEpfn: 0x20011n, dataSpfn: 0x20011n, dataEpfn: 0x20400n },
];
const ERRNO_NAME: Record<number, string> = { 0: 'OK', 17: 'EEXIST', 22: 'EINVAL', 28: 'ENOSPC' };

describe('the test hypervisor applies the same rules in C', () => {
  let port: HypercallPort;
  let workdir: string;
  const added: PmemReport[] = [];
  const seen = new Set<string>();

  before(() => {
    workdir = mkdtempSync(join(tmpdir(), 'xen-pmem-rules-'));
    process.env.TEST_XEN_MODE = 'pmem';
    process.env.TEST_XEN_STATE = join(workdir, 'state');
    process.env.TEST_XEN_LOG = join(workdir, 'log');
    const opened = openXencall(buildTestHypervisor());
    assert.equal(opened.kind, 'opened', 'the test hypervisor opens');
    port = (opened as Extract<typeof opened, { kind: 'opened' }>).port;
  });

  after(() => {
    port?.close();
    rmSync(workdir, { recursive: true, force: true });
  });

  /** Sends one add to both sides; asserts the same rule, reason and errno. */
  async function compare(req: PmemReport): Promise<void> {
    const verdict = checkPmemAddLikeXen(req, added);
    const result = await port.platformOp(encodeAdd(req));
    const lastLine = readFileSync(process.env.TEST_XEN_LOG!, 'utf8').trimEnd().split('\n').at(-1) ?? '';
    const cRule = Number(/ rule=(\d+)/.exec(lastLine)?.[1]);
    const cReason = Number(/ reason=(\d+)/.exec(lastLine)?.[1]);
    const header = decodeHeader(result.after);
    const ts = verdict.ok ? { rule: 0, reason: 0, errno: 0 } : { rule: verdict.rule, reason: verdict.xenReason, errno: verdict.errno };
    seen.add(verdict.ok ? 'ok' : verdict.reason);
    const what = withSeed(`C and TypeScript disagree on ${describeLayout(req)}`);
    assert.equal(cRule, ts.rule, what);
    assert.equal(cReason, ts.reason, what);
    assert.equal(header.abi, 1, 'abi written back');
    assert.equal(header.reason, ts.reason, 'the reason written back');
    if (verdict.ok) {
      assert.equal(result.rc, 0);
      added.push(req);
    } else {
      assert.equal(result.rc, -1);
      assert.equal(ERRNO_NAME[result.errno], ERRNO_NAME[ts.errno], `${ERRNO_NAME[ts.errno]} for ${hex(req.spfn)}`);
    }
  }

  it('agrees with checkPmemAddLikeXen on one example of each outcome', async () => {
    for (const req of EVERY_OUTCOME) await compare(req);
    assert.deepEqual([...seen].sort(), ['already-added', 'empty-range', 'ok', 'outside-region', 'overlaps-added-region', 'region-not-2mib-aligned', 'reserved-data-overlap', 'reserved-too-small']);
  });

  it('agrees with checkPmemAddLikeXen on the first broken rule of random requests', async () => {
    // PFNs near 2 MiB boundaries and small sizes, so that every rule, and the overlap with
    // earlier adds, is hit often; the C side keeps its added regions in the state file.
    const base = fc.integer({ min: 0, max: 7 }).map((n) => BigInt(n) * 512n);
    const jitter = fc.oneof(fc.constant(0n), fc.bigInt({ min: -3n, max: 3n }));
    const length = fc.bigInt({ min: 0n, max: 2048n });
    const request = fc
      .record({ base, jitterStart: jitter, jitterEnd: jitter, size: fc.integer({ min: 0, max: 4 }), rsvAt: length, rsvLength: fc.bigInt({ min: 0n, max: 48n }), gap: jitter, dataLength: length })
      .map(({ base, jitterStart, jitterEnd, size, rsvAt, rsvLength, gap, dataLength }): PmemReport => {
        const spfn = base + (jitterStart > 0n ? jitterStart : 0n);
        const epfn = base + BigInt(size) * 512n + jitterEnd;
        const rsvSpfn = spfn + rsvAt % 64n;
        const rsvEpfn = rsvSpfn + rsvLength;
        const dataSpfn = rsvEpfn + gap;
        return { spfn, epfn: epfn < 0n ? 0n : epfn, rsvSpfn, rsvEpfn, dataSpfn: dataSpfn < 0n ? 0n : dataSpfn, dataEpfn: dataSpfn + dataLength };
      });
    await fc.assert(fc.asyncProperty(request, compare), seeded(400));
  });
});
