// The bridge over the real koffi path, against the test hypervisor (test/hypervisor/). The
// library reads TEST_XEN_* on every call, so each test sets its mode and files first.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { DEFAULT_LIBXENCALL, openXencall } from '../src/native/libxencall.js';
import type { HypercallResult, HypercallPort, PortOpening } from '../src/xen/ports.js';
import { HypercallBridge, type BridgeAnswer } from '../src/xen/bridge.js';
import type { PmemReport } from '../src/xen/interface.js';
import { decodeHeader, encodeRegion, OFFSETS, PLATFORM_OP_BYTES, PROBE_INDEX, reasonNumberOf, type XenpfPmemReason } from '../src/xen/xenpf-pmem.js';
import { buildTestHypervisor } from './hypervisor/build.js';
import { forgetXenInProcess } from '../fixtures/daemon-host.js';
import { REPORT_256MIB_AT_4GIB } from './helpers/reports.js';

const { EINVAL, ENOMEM, EBUSY, EIO, ENOENT, ENOSPC, EPERM, EOPNOTSUPP, EEXIST, ENOSYS } = {
  EINVAL: 22, ENOMEM: 12, EBUSY: 16, EIO: 5, ENOENT: 2, ENOSPC: 28, EPERM: 1, EOPNOTSUPP: 95, EEXIST: 17, ENOSYS: 38,
};

const REGION = REPORT_256MIB_AT_4GIB;
const SECOND: PmemReport = { spfn: 0x120000n, epfn: 0x130000n, rsvSpfn: 0x120200n, rsvEpfn: 0x120600n, dataSpfn: 0x120600n, dataEpfn: 0x130000n };

let library: string;
let workdir: string;
let bridges: HypercallBridge[] = [];

function useMode(mode: string, extra: Record<string, string> = {}): void {
  process.env.TEST_XEN_MODE = mode;
  for (const [name, value] of Object.entries(extra)) process.env[name] = value;
}

function bridge(): HypercallBridge {
  const made = new HypercallBridge(() => openXencall(library));
  bridges.push(made);
  return made;
}

function logLines(): string[] {
  const path = process.env.TEST_XEN_LOG!;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => line !== '');
}

/** XENPF_pmem adds the hypervisor was sent. */
function regionAdds(): string[] {
  return logLines().filter((line) => line.startsWith('platform_op cmd=67 sub=add '));
}

function probes(): string[] {
  return logLines().filter((line) => line.startsWith('platform_op cmd=67 sub=region index=0xffffffff '));
}

function assertKind<K extends BridgeAnswer['kind']>(answer: BridgeAnswer, kind: K): Extract<BridgeAnswer, { kind: K }> {
  assert.equal(answer.kind, kind, `expected ${kind}, got ${JSON.stringify(answer)}`);
  return answer as Extract<BridgeAnswer, { kind: K }>;
}

before(() => {
  library = buildTestHypervisor();
});

beforeEach(() => {
  workdir = mkdtempSync(join(tmpdir(), 'xen-pmem-bridge-'));
  process.env.TEST_XEN_STATE = join(workdir, 'state');
  process.env.TEST_XEN_LOG = join(workdir, 'log');
  delete process.env.TEST_XEN_DELAY_MS;
  useMode('pmem');
});

afterEach(() => {
  for (const each of bridges) each.close();
  bridges = [];
  rmSync(workdir, { recursive: true, force: true });
});

after(() => {
  forgetXenInProcess();
});

describe('capability probe', () => {
  it('proves XENPF_pmem by its exact answer to region 0xffffffff and names the version', async () => {
    const capability = await bridge().capability();
    assert.deepEqual(capability, { kind: 'xenpf-pmem', xenVersion: '4.17.7-pmem' });
    assert.equal(probes().length, 1);
    assert.match(probes()[0]!, /ret=-2 ENOENT reason=21$/);
  });

  it('probes once: later adds reuse the answer', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION), 'reported');
    assertKind(await hypercalls.report(SECOND), 'reported');
    assert.equal(probes().length, 1);
    assert.equal(logLines().filter((line) => line.startsWith('xen_version')).length, 2);
  });

  it('answers upstream Xen 4.17 (every platform op ENOSYS) as unsupported/enosys, naming its version, and sends no region', async () => {
    useMode('enosys');
    const answer = assertKind(await bridge().report(REGION), 'unsupported');
    assert.equal(answer.reason, 'enosys');
    assert.match(answer.message, /^Xen 4\.17\.7 does not implement XENPF_pmem \(platform op 67\)/);
    assert.equal(regionAdds().length, 0);
  });

  it('answers upstream Xen 4.20 (op 64 is XENPF_get_dom0_console, op 67 ENOSYS) the same way, and never sends op 64', async () => {
    useMode('dom0-console');
    const hypercalls = bridge();
    const capability = await hypercalls.capability();
    assert.ok(capability.kind === 'unsupported');
    assert.equal(capability.reason, 'enosys');
    assert.match(capability.message, /^Xen 4\.20\.4 does not implement XENPF_pmem \(platform op 67\)/);
    assertKind(await hypercalls.report(REGION), 'unsupported');
    assert.equal(regionAdds().length, 0);
    assert.ok(logLines().every((line) => !line.startsWith('platform_op cmd=64')), 'op 64 is never sent');
  });

  it('reports a denied probe as probe-failed and asks again next time', async () => {
    useMode('eperm');
    const hypercalls = bridge();
    const answer = assertKind(await hypercalls.report(REGION), 'unsupported');
    assert.equal(answer.reason, 'probe-failed');
    assert.match(answer.message, /refused platform op 67 with EPERM/);
    await hypercalls.report(REGION);
    assert.equal(logLines().filter((line) => line.startsWith('platform_op cmd=67 mode=eperm')).length, 2);
    assert.equal(regionAdds().length, 0);
  });
});

describe('XENPF_pmem add over the test hypervisor', () => {
  it('reports a valid region with one hypercall carrying its six PFNs', async () => {
    assertKind(await bridge().report(REGION), 'reported');
    assert.deepEqual(regionAdds().map((line) => line.replace(/ mode=.*/, '')), [
      'platform_op cmd=67 sub=add spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000',
    ]);
    assert.match(regionAdds()[0]!, /ret=0 OK reason=0 rule=0$/);
  });

  const refused: [number, string, number, PmemReport][] = [
    [1, 'empty-range', EINVAL, { ...REGION, rsvEpfn: REGION.rsvSpfn }],
    [2, 'outside-region', EINVAL, { ...REGION, dataEpfn: 0x110200n }],
    [3, 'reserved-data-overlap', EINVAL, { ...REGION, dataSpfn: 0x100400n }],
    [4, 'reserved-too-small', ENOSPC, { ...REGION, rsvEpfn: 0x100300n, dataSpfn: 0x100300n }],
    [6, 'region-not-2mib-aligned', EINVAL, { ...REGION, epfn: 0x110001n }],
  ];
  for (const [rule, reason, errno, request] of refused) {
    it(`reads rule ${rule}'s refusal by the reason Xen wrote (${reason})`, async () => {
      const answer = assertKind(await bridge().report(request), 'rejected');
      assert.equal(answer.errno, errno);
      assert.equal(answer.reason, reason);
      assert.match(answer.message, /Xen answered XENPF_pmem add spfn=0x100000 /);
      assert.match(regionAdds()[0]!, new RegExp(`reason=${reasonNumberOf(reason as XenpfPmemReason)} rule=${rule}$`));
    });
  }

  it('reads an overlap with a different region Xen holds as overlaps-added-region', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION), 'reported');
    const overlapping = { ...REGION, spfn: 0x10fe00n, epfn: 0x120000n, rsvSpfn: 0x10fe00n, rsvEpfn: 0x110200n, dataSpfn: 0x110200n, dataEpfn: 0x120000n };
    const answer = assertKind(await hypercalls.report(overlapping), 'rejected');
    assert.equal(answer.reason, 'overlaps-added-region');
    assert.match(answer.message, /EINVAL overlaps_added_region/);
  });

  it('takes EEXIST already_added after a restart as reported, already there', async () => {
    assertKind(await bridge().report(REGION), 'reported');
    for (const each of bridges) each.close();
    const afterRestart = assertKind(await bridge().report(REGION), 'reported');
    assert.equal(afterRestart.already, true);
    assert.match(regionAdds()[1]!, /ret=-17 EEXIST reason=7 rule=5$/);
  });

  it('answers retry on ENOMEM no_memory, then reported when asked again', async () => {
    useMode('enomem-once');
    const hypercalls = bridge();
    const first = assertKind(await hypercalls.report(REGION), 'retry');
    assert.equal(first.errno, ENOMEM);
    assert.equal(first.reason, 'no-memory');
    assert.match(first.message, /spfn=0x100000 .* with ENOMEM no_memory: Xen's own memory ran short/);
    assertKind(await hypercalls.report(REGION), 'reported');
    assert.equal(regionAdds().length, 2);
  });

  it('answers retry on EBUSY busy, then reported when asked again', async () => {
    useMode('ebusy-once');
    const hypercalls = bridge();
    const first = assertKind(await hypercalls.report(REGION), 'retry');
    assert.equal(first.errno, EBUSY);
    assert.equal(first.reason, 'busy');
    assertKind(await hypercalls.report(REGION), 'reported');
  });

  it('waits for a slow hypervisor: every call takes TEST_XEN_DELAY_MS, in order', async () => {
    useMode('slow', { TEST_XEN_DELAY_MS: '20' });
    assertKind(await bridge().report(REGION), 'reported');
    assert.deepEqual(logLines().map((line) => line.split(' ').slice(0, 3).join(' ')),
      ['xen_version cmd=0 mode=slow', 'xen_version cmd=1 mode=slow', 'platform_op cmd=67 sub=region', 'platform_op cmd=67 sub=add']);
  });
});

describe('what Xen holds', () => {
  it('lists every region with its layout, its tables\' chunks and its free data frames', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION), 'reported');
    assertKind(await hypercalls.report(SECOND), 'reported');
    const held = await hypercalls.held();
    assert.equal(held.kind, 'answered');
    const regions = held.kind === 'answered' ? held.value : [];
    assert.deepEqual(regions.map((region) => region.layout), [REGION, SECOND]);
    assert.equal(regions[0]!.freeFrames, REGION.dataEpfn - REGION.dataSpfn);
    assert.deepEqual([regions[0]!.frameTableChunks, regions[0]!.m2pChunks, regions[0]!.compatM2pChunks], [1, 1, 1]);
  });

  it('lists nothing on a hypervisor that holds nothing, with one region query', async () => {
    const held = await bridge().held();
    assert.deepEqual(held, { kind: 'answered', value: [] });
    assert.equal(logLines().filter((line) => line.includes('sub=region index=0x0 ')).length, 1);
  });

  it('lists no owner runs: the stand-in has no domains (DOMID_INVALID)', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION), 'reported');
    assert.deepEqual(await hypercalls.owners({ spfn: REGION.dataSpfn, epfn: REGION.dataEpfn }), { kind: 'answered', value: [] });
  });

  it('says why it cannot list on a hypervisor without XENPF_pmem', async () => {
    useMode('enosys');
    const held = await bridge().held();
    assert.equal(held.kind, 'unavailable');
    assert.ok(held.kind === 'unavailable' && held.reason === 'enosys');
  });

  it('answers an unknown sub-operation with EOPNOTSUPP bad_command, abi written', async () => {
    const opened = openXencall(library);
    assert.equal(opened.kind, 'opened');
    const port = (opened as Extract<PortOpening, { kind: 'opened' }>).port;
    const op = encodeRegion(0);
    op.writeUInt32LE(9, OFFSETS.sub);
    const result = await port.platformOp(op);
    port.close();
    assert.equal(result.rc, -1);
    assert.equal(result.errno, EOPNOTSUPP);
    assert.deepEqual(decodeHeader(result.after), { cmd: 67, sub: 9, abi: 1, reason: 27 });
  });
});

describe('opening libxencall', () => {
  it('comes back as not-dom0, without a throw, when xencall_open fails', () => {
    useMode('not-dom0');
    const opened = openXencall(library);
    assert.ok(opened.kind === 'unavailable');
    assert.equal(opened.reason, 'not-dom0');
    assert.match(opened.message, /xencall_open failed with ENOENT: this is not a Xen Dom0/);
  });

  it('comes back as library-missing for a library that does not exist', () => {
    const opened = openXencall(join(workdir, 'libxencall-absent.so'));
    assert.ok(opened.kind === 'unavailable');
    assert.equal(opened.reason, 'library-missing');
    assert.match(opened.message, /cannot load .*libxencall-absent\.so/);
  });

  it("Debian's real libxencall on this machine answers not-dom0", (t) => {
    if (existsSync('/dev/xen/privcmd')) return t.skip('this machine is a Xen Dom0: the real library would open');
    const opened = openXencall();
    if (opened.kind === 'unavailable' && opened.reason === 'library-missing') {
      return t.skip(`${DEFAULT_LIBXENCALL} is not installed (apt-get install libxencall1)`);
    }
    assert.ok(opened.kind === 'unavailable', 'xencall_open must fail outside a Dom0');
    assert.equal(opened.reason, 'not-dom0');
    assert.match(opened.message, /not a Xen Dom0/);
  });

  it('a bridge without a port says why, as not-dom0, and lists nothing', async () => {
    const hypercalls = new HypercallBridge(() => ({ kind: 'unavailable', reason: 'not-dom0', message: 'xencall_open failed with ENOENT' }));
    const answer = assertKind(await hypercalls.report(REGION), 'unsupported');
    assert.equal(answer.reason, 'not-dom0');
    assert.equal(answer.message, 'xencall_open failed with ENOENT');
    assert.deepEqual(await hypercalls.held(), { kind: 'unavailable', reason: 'not-dom0', message: 'xencall_open failed with ENOENT' });
  });

  it('opens nothing until it is asked (a dry run asks nothing)', () => {
    let opens = 0;
    new HypercallBridge(() => { opens++; return { kind: 'unavailable', reason: 'not-dom0', message: 'no' }; });
    assert.equal(opens, 0);
  });
});

/** An in-process port for answers the test hypervisor has no mode for. */
function scriptedPort(answer: (op: Buffer) => HypercallResult): PortOpening {
  return {
    kind: 'opened',
    port: {
      async platformOp(op) {
        return answer(Buffer.from(op));
      },
      async xenVersion(cmd, argBytes) {
        const after = Buffer.alloc(argBytes);
        if (cmd === 1) after.write('.4');
        return { rc: cmd === 0 ? (4 << 16) | 20 : 0, errno: 0, after };
      },
      close() {},
    },
  };
}

/** Xen's answer: rc, errno, and abi and reason written into the buffer. */
function xenAnswer(op: Buffer, errno: number, reason: number, abi = 1): HypercallResult {
  op.writeUInt16LE(abi, OFFSETS.abi);
  op.writeUInt16LE(reason, OFFSETS.reason);
  return { rc: errno === 0 ? 0 : -1, errno, after: op };
}

const isProbe = (op: Buffer) => decodeHeader(op).sub === 2 && op.readUInt32LE(OFFSETS.union) === PROBE_INDEX;

/** A port whose probe proves XENPF_pmem and whose add answers `errno` and `reason`. */
function answeringAdd(errno: number, reason: XenpfPmemReason): HypercallBridge {
  return new HypercallBridge(() => scriptedPort((op) => (isProbe(op) ? xenAnswer(op, ENOENT, 21) : xenAnswer(op, errno, reasonNumberOf(reason)))));
}

describe('reading each answer of the spec by its errno and reason', () => {
  const rows: [number, XenpfPmemReason, BridgeAnswer['kind']][] = [
    [EEXIST, 'already-added', 'reported'],
    [ENOSPC, 'reserved-too-small', 'rejected'],
    [ENOSPC, 'reserved-exhausted', 'rejected'],
    [EINVAL, 'beyond-frame-table', 'rejected'],
    [EINVAL, 'pdx-hole', 'rejected'],
    [EINVAL, 'not-pmem', 'rejected'],
    [EINVAL, 'firmware-memory', 'rejected'],
    [EINVAL, 'read-only-mmio', 'rejected'],
    [EINVAL, 'known-memory', 'rejected'],
    [EINVAL, 'overlaps-added-region', 'rejected'],
    [EPERM, 'not-permitted', 'rejected'],
    [EBUSY, 'mapped', 'retry'],
    [EBUSY, 'other-domain-access', 'retry'],
    [EBUSY, 'busy', 'retry'],
    [ENOMEM, 'no-memory', 'retry'],
    [EOPNOTSUPP, 'unsupported-caller', 'unsupported'],
  ];
  for (const [errno, reason, kind] of rows) {
    it(`${reason} (errno ${errno}) is ${kind}${kind === 'reported' ? '' : ` with reason ${reason}`}`, async () => {
      const answer = await answeringAdd(errno, reason).report(REGION);
      assert.equal(answer.kind, kind);
      if (answer.kind === 'reported') assert.equal(answer.already, true);
      else {
        assert.ok('reason' in answer);
        assert.equal(answer.reason, reason);
        assert.match(answer.message, /spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000/);
      }
    });
  }

  it('never takes an answer without abi 1 as success', async () => {
    const hypercalls = new HypercallBridge(() => scriptedPort((op) => (isProbe(op) ? xenAnswer(op, ENOENT, 21) : { rc: 0, errno: 0, after: op })));
    const answer = assertKind(await hypercalls.report(REGION), 'error');
    assert.equal(answer.reason, 'abi-mismatch');
  });

  it('maps an EEXIST with another reason, or an unexpected errno, to error', async () => {
    assertKind(await answeringAdd(EEXIST, 'busy').report(REGION), 'error');
    const answer = assertKind(await new HypercallBridge(() => scriptedPort((op) => (isProbe(op) ? xenAnswer(op, ENOENT, 21) : xenAnswer(op, EIO, 0)))).report(REGION), 'error');
    assert.equal(answer.errno, EIO);
    assert.equal(answer.reason, 'eio');
  });
});

describe('the probe takes nothing but its exact answer', () => {
  const probeRows: [string, (op: Buffer) => HypercallResult, string][] = [
    ['success', (op) => xenAnswer(op, 0, 0), 'op-67-is-another-operation'],
    ['ENOENT without abi', (op) => ({ rc: -1, errno: ENOENT, after: op }), 'op-67-is-another-operation'],
    ['ENOENT with another reason', (op) => xenAnswer(op, ENOENT, 22), 'op-67-is-another-operation'],
    ['ENOENT with abi 2', (op) => xenAnswer(op, ENOENT, 21, 2), 'op-67-is-another-operation'],
    ['EINVAL', (op) => ({ rc: -1, errno: EINVAL, after: op }), 'probe-failed'],
    ['ENOSYS', (op) => ({ rc: -1, errno: ENOSYS, after: op }), 'enosys'],
  ];
  for (const [what, answer, reason] of probeRows) {
    it(`${what} is unsupported/${reason}`, async () => {
      const capability = await new HypercallBridge(() => scriptedPort(answer)).capability();
      assert.ok(capability.kind === 'unsupported');
      assert.equal(capability.reason, reason);
      assert.match(capability.message, /^Xen 4\.20\.4 /);
    });
  }

  it('turns an exception inside the native call into error, never a throw', async () => {
    const hypercalls = new HypercallBridge(() => scriptedPort((op) => {
      if (isProbe(op)) return xenAnswer(op, ENOENT, 21);
      throw new TypeError('koffi: unexpected pointer');
    }));
    const answer = assertKind(await hypercalls.report(REGION), 'error');
    assert.equal(answer.reason, 'exception');
    assert.match(answer.message, /koffi: unexpected pointer/);
  });

  it('turns an exception during the probe into unsupported/probe-failed', async () => {
    const hypercalls = new HypercallBridge(() => scriptedPort(() => { throw new Error('segfault guard'); }));
    const answer = assertKind(await hypercalls.report(REGION), 'unsupported');
    assert.equal(answer.reason, 'probe-failed');
    assert.match(answer.message, /segfault guard/);
  });

  it('keeps every answer inside the 136 bytes', () => {
    assert.equal(encodeRegion(PROBE_INDEX).length, PLATFORM_OP_BYTES);
  });
});
