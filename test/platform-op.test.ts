import { xenMinimumReservedPages } from '../src/core/xen-sizing.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';

import { hex } from '../src/core/units.js';
import { openXencall } from '../src/native/libxencall.js';
import type { HypercallPort } from '../src/xen/ports.js';
import type { PfnRange } from '../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../src/xen/interfaces/pmem-add.js';
import {
  decodePmemAdd,
  describePmemAdd,
  encodePmemAdd,
  PLATFORM_OP_BYTES,
  PLATFORM_OP_OFFSETS,
  XENPF_INTERFACE_VERSION,
  XENPF_PMEM_ADD,
  type PmemAddRequest,
} from '../src/xen/platform-op.js';
import { buildTestHypervisor } from './hypervisor/build.js';
import { seeded, withSeed } from './helpers/seed.js';

/** 256 MiB at 4 GiB: reserved area 2 MiB in, 4 MiB long, data after it. */
const VALID: PmemAddRequest = {
  spfn: 0x100000n,
  epfn: 0x110000n,
  rsvSpfn: 0x100200n,
  rsvEpfn: 0x100600n,
  dataSpfn: 0x100600n,
  dataEpfn: 0x110000n,
};

describe('struct xen_platform_op for XENPF_pmem_add', () => {
  it('is 136 bytes with cmd, interface_version and six u64 at the offsets of the RFC', async () => {
    assert.equal(PLATFORM_OP_BYTES, 136);
    assert.deepEqual(PLATFORM_OP_OFFSETS, {
      cmd: 0,
      interfaceVersion: 4,
      union: 8,
      spfn: 8,
      epfn: 16,
      rsvSpfn: 24,
      rsvEpfn: 32,
      dataSpfn: 40,
      dataEpfn: 48,
    });
    assert.equal(XENPF_PMEM_ADD, 64);
    assert.equal(XENPF_INTERFACE_VERSION, 0x03000001);
  });

  it('encodes every field little-endian at its offset and leaves the rest of the union zero', async () => {
    const request: PmemAddRequest = {
      spfn: 0x0102030405060708n,
      epfn: 0x1112131415161718n,
      rsvSpfn: 0x2122232425262728n,
      rsvEpfn: 0x3132333435363738n,
      dataSpfn: 0x4142434445464748n,
      dataEpfn: 0x5152535455565758n,
    };
    const bytes = encodePmemAdd(request);
    assert.equal(bytes.length, 136);
    assert.deepEqual([...bytes.subarray(0, 4)], [64, 0, 0, 0]);
    assert.deepEqual([...bytes.subarray(4, 8)], [0x01, 0x00, 0x00, 0x03]);
    // The low byte of each field comes first: 0x08 at 8, 0x18 at 16, ... 0x58 at 48.
    assert.deepEqual([8, 16, 24, 32, 40, 48].map((offset) => bytes[offset]), [0x08, 0x18, 0x28, 0x38, 0x48, 0x58]);
    assert.deepEqual([8, 16, 24, 32, 40, 48].map((offset) => bytes[offset + 7]), [0x01, 0x11, 0x21, 0x31, 0x41, 0x51]);
    assert.ok(bytes.subarray(56).every((byte) => byte === 0));
  });

  it('decodes what it encodes, for any six u64', async () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(u64, u64, u64, u64, u64, u64, (spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn) => {
        const request = { spfn, epfn, rsvSpfn, rsvEpfn, dataSpfn, dataEpfn };
        const decoded = decodePmemAdd(encodePmemAdd(request));
        assert.ok(decoded.ok);
        assert.equal(decoded.cmd, XENPF_PMEM_ADD);
        assert.equal(decoded.interfaceVersion, XENPF_INTERFACE_VERSION);
        assert.deepEqual(decoded.request, request);
      }),
      seeded(100),
    );
  });

  it('refuses to decode a buffer of the wrong size with a sentence naming both sizes', async () => {
    const decoded = decodePmemAdd(Buffer.alloc(128));
    assert.equal(decoded.ok, false);
    assert.ok(!decoded.ok && decoded.reason === 'wrong-size');
    assert.match(!decoded.ok ? decoded.message : '', /136 bytes.*128/);
  });

  it('refuses to encode a PFN that does not fit u64', async () => {
    assert.throws(() => encodePmemAdd({ ...VALID, dataEpfn: 1n << 64n }), /data_epfn 18446744073709551616/);
    assert.throws(() => encodePmemAdd({ ...VALID, spfn: -1n }), RangeError);
  });

  it('describes all six PFNs in hex', async () => {
    assert.equal(
      describePmemAdd(VALID),
      'spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000',
    );
  });
});

describe('checkPmemAddLikeXen', () => {
  it('accepts a valid layout', async () => {
    assert.deepEqual(checkPmemAddLikeXen(VALID, []), { ok: true });
  });

  it('computes the rule 4 minimum from 32 + 8 bytes per page', async () => {
    assert.equal(xenMinimumReservedPages(65536n), 640n); // 256 MiB
    assert.equal(xenMinimumReservedPages(1n << 28n), 2621440n); // 1 TiB
    assert.equal(xenMinimumReservedPages(127n), 0n);
  });

  const cases: [number, string, PmemAddRequest, PfnRange[], RegExp][] = [
    [1, 'empty-range', { ...VALID, epfn: VALID.spfn }, [], /region \[0x100000, 0x100000\) is empty/],
    [1, 'empty-range', { ...VALID, dataSpfn: 0x110000n }, [], /data range \[0x110000, 0x110000\) is empty/],
    [2, 'outside-region', { ...VALID, rsvSpfn: 0xfff00n }, [], /reserved range \[0xfff00, 0x100600\) is not inside the region \[0x100000, 0x110000\)/],
    [2, 'outside-region', { ...VALID, dataEpfn: 0x110001n }, [], /data range \[0x100600, 0x110001\)/],
    [3, 'reserved-data-overlap', { ...VALID, dataSpfn: 0x1005ffn }, [], /reserved range \[0x100200, 0x100600\) overlaps the data range \[0x1005ff, 0x110000\)/],
    [4, 'reserved-too-small', { ...VALID, rsvEpfn: 0x10047fn }, [], /has 0x27f pages .* 0x10000 pages needs at least 0x280/],
    [5, 'overlaps-added-region', VALID, [{ spfn: 0x10fe00n, epfn: 0x120000n }], /overlaps \[0x10fe00, 0x120000\), which was already added/],
    [6, 'region-not-2mib-aligned', { ...VALID, spfn: 0x100100n }, [], /region \[0x100100, 0x110000\) must start and end on a 2 MiB boundary/],
  ];
  for (const [rule, reason, request, added, message] of cases) {
    it(`reports rule ${rule} (${reason}) with the numbers in hex, e.g. /${message.source.split(' ')[0]}.../`, async () => {
      const verdict = checkPmemAddLikeXen(request, added);
      assert.equal(verdict.ok, false);
      assert.ok(!verdict.ok);
      assert.equal(verdict.rule, rule);
      assert.equal(verdict.reason, reason);
      assert.match(verdict.message, message);
    });
  }

  it('reports the first broken rule when several are broken', async () => {
    const verdict = checkPmemAddLikeXen({ ...VALID, spfn: 0x100100n, rsvEpfn: 0x100201n }, [VALID]);
    assert.ok(!verdict.ok);
    assert.equal(verdict.rule, 4);
  });
});

/**
 * A request for each outcome, in the order they run against one hypervisor: the valid one first,
 * so that rule 5 has a region to overlap. PFNs far from the random requests' (below 0x1000).
 */
const EVERY_OUTCOME: PmemAddRequest[] = [
  { spfn: 0x10000n, epfn: 0x10400n, rsvSpfn: 0x10000n, rsvEpfn: 0x10010n, dataSpfn: 0x10010n, dataEpfn: 0x10400n },
  { spfn: 0x20000n, epfn: 0x20000n, rsvSpfn: 0x20000n, rsvEpfn: 0x20010n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x1fff0n, rsvEpfn: 0x20010n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x20000n, rsvEpfn: 0x20010n, dataSpfn: 0x2000fn, dataEpfn: 0x20400n },
  { spfn: 0x20000n, epfn: 0x20400n, rsvSpfn: 0x20000n, rsvEpfn: 0x20001n, dataSpfn: 0x20010n, dataEpfn: 0x20400n },
  { spfn: 0x10200n, epfn: 0x10600n, rsvSpfn: 0x10200n, rsvEpfn: 0x10210n, dataSpfn: 0x10210n, dataEpfn: 0x10600n },
  { spfn: 0x20001n, epfn: 0x20400n, rsvSpfn: 0x20001n, rsvEpfn: 0x20011n, dataSpfn: 0x20011n, dataEpfn: 0x20400n },
];

describe('the test hypervisor applies the same rules in C', () => {
  let port: HypercallPort;
  let workdir: string;

  before(() => {
    workdir = mkdtempSync(join(tmpdir(), 'xen-pmem-rules-'));
    process.env.TEST_XEN_MODE = 'rfc';
    process.env.TEST_XEN_STATE = join(workdir, 'state');
    process.env.TEST_XEN_LOG = join(workdir, 'log');
    const opened = openXencall(buildTestHypervisor());
    assert.ok(!('error' in opened), 'the test hypervisor opens');
    port = opened as HypercallPort;
  });

  after(() => {
    port?.close();
    rmSync(workdir, { recursive: true, force: true });
  });

  it('agrees with checkPmemAddLikeXen on the first broken rule of random requests', async () => {
    // PFNs near 2 MiB boundaries and small sizes, so that every rule, and the overlap with
    // earlier adds, is hit often; the C side keeps its added regions in the state file.
    const base = fc.integer({ min: 0, max: 7 }).map((n) => BigInt(n) * 512n);
    const jitter = fc.oneof(fc.constant(0n), fc.bigInt({ min: -3n, max: 3n }));
    const length = fc.bigInt({ min: 0n, max: 2048n });
    const request = fc
      .record({ base, jitterStart: jitter, jitterEnd: jitter, size: fc.integer({ min: 0, max: 4 }), rsvAt: length, rsvLength: fc.bigInt({ min: 0n, max: 48n }), gap: jitter, dataLength: length })
      .map(({ base, jitterStart, jitterEnd, size, rsvAt, rsvLength, gap, dataLength }): PmemAddRequest => {
        const spfn = base + (jitterStart > 0n ? jitterStart : 0n);
        const epfn = base + BigInt(size) * 512n + jitterEnd;
        const rsvSpfn = spfn + rsvAt % 64n;
        const rsvEpfn = rsvSpfn + rsvLength;
        const dataSpfn = rsvEpfn + gap;
        return { spfn, epfn: epfn < 0n ? 0n : epfn, rsvSpfn, rsvEpfn, dataSpfn: dataSpfn < 0n ? 0n : dataSpfn, dataEpfn: dataSpfn + dataLength };
      });

    const added: PfnRange[] = [];
    const seenRules = new Set<number>();
    await fc.assert(
      fc.asyncProperty(request, async (req) => {
        const verdict = checkPmemAddLikeXen(req, added);
        const result = await port.platformOp(encodePmemAdd(req));
        const lastLine = readFileSync(process.env.TEST_XEN_LOG!, 'utf8').trimEnd().split('\n').at(-1) ?? '';
        const cRule = Number(/rule=(\d+)/.exec(lastLine)?.[1]);
        const tsRule = verdict.ok ? 0 : verdict.rule;
        seenRules.add(tsRule);
        assert.equal(cRule, tsRule, `C and TypeScript disagree on ${describePmemAdd(req)}`);
        if (verdict.ok) {
          assert.equal(result.rc, 0);
          added.push({ spfn: req.spfn, epfn: req.epfn });
        } else {
          assert.equal(result.rc, -1);
          assert.equal(result.errno, 22, `EINVAL for ${hex(req.spfn)}`);
        }
      }),
      seeded(400),
    );
    // The generator must reach every outcome, or the agreement above proves little.
    assert.deepEqual([...seenRules].sort(), [0, 1, 2, 3, 4, 5, 6]);
  });
});
