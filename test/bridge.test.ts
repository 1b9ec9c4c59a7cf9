// The bridge over the real koffi path, against the test hypervisor (test/hypervisor/). The
// library reads TEST_XEN_* on every call, so each test sets its mode and files first.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { DEFAULT_LIBXENCALL, openXencall } from '../src/native/libxencall.js';
import type { HypercallResult, HypercallPort } from '../src/xen/ports.js';
import { HypercallBridge, type BridgeAnswer } from '../src/xen/bridge.js';
import { decodePmemAdd, PLATFORM_OP_BYTES, pmemAddProbe, type PmemAddRequest } from '../src/xen/platform-op.js';
import { buildTestHypervisor } from './hypervisor/build.js';

const EINVAL = 22;
const ENOMEM = 12;
const EAGAIN = 11;
const EIO = 5;

/** 256 MiB at 4 GiB: reserved area 2 MiB in, 4 MiB long, data after it. */
const REGION: PmemAddRequest = {
  spfn: 0x100000n,
  epfn: 0x110000n,
  rsvSpfn: 0x100200n,
  rsvEpfn: 0x100600n,
  dataSpfn: 0x100600n,
  dataEpfn: 0x110000n,
};

let library: string;
let workdir: string;
let opened: HypercallPort[] = [];

function useMode(mode: string, extra: Record<string, string> = {}): void {
  process.env.TEST_XEN_MODE = mode;
  for (const [name, value] of Object.entries(extra)) process.env[name] = value;
}

function openTestHypervisor(): HypercallPort {
  const port = openXencall(library);
  if ('error' in port) assert.fail(`the test hypervisor did not open: ${port.message}`);
  opened.push(port);
  return port;
}

function bridge(dryRun = false): HypercallBridge {
  return new HypercallBridge(openTestHypervisor(), { dryRun });
}

function logLines(): string[] {
  const path = process.env.TEST_XEN_LOG!;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => line !== '');
}

/** pmem_add calls that carried a real region, i.e. not the all-zero probe. */
function regionAdds(): string[] {
  return logLines().filter((line) => line.startsWith('platform_op cmd=64 ') && !line.includes(' spfn=0x0 '));
}

function probes(): string[] {
  return logLines().filter((line) => line.startsWith('platform_op cmd=64 spfn=0x0 '));
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
  useMode('rfc');
});

afterEach(() => {
  for (const port of opened) port.close();
  opened = [];
  rmSync(workdir, { recursive: true, force: true });
});

after(() => {
  for (const name of ['TEST_XEN_MODE', 'TEST_XEN_STATE', 'TEST_XEN_LOG', 'TEST_XEN_DELAY_MS']) delete process.env[name];
});

describe('capability probe', () => {
  it('proves pmem_add on the RFC hypervisor and names its version', async () => {
    const capability = await bridge().capability();
    assert.deepEqual(capability, { kind: 'pmem-add', xenVersion: '4.8-pmem-rfc' });
    assert.equal(probes().length, 1);
    assert.match(probes()[0]!, /ret=-22 EINVAL rule=1/);
  });

  it('probes once: later adds reuse the answer', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION, []), 'reported');
    assertKind(await hypercalls.report({ ...REGION, spfn: 0x120000n, epfn: 0x130000n, rsvSpfn: 0x120200n, rsvEpfn: 0x120600n, dataSpfn: 0x120600n, dataEpfn: 0x130000n }, []), 'reported');
    assert.equal(probes().length, 1);
    assert.equal(logLines().filter((line) => line.startsWith('xen_version')).length, 2);
  });

  it('reports ENOSYS like Xen 4.17 as unsupported/enosys and sends no region', async () => {
    useMode('enosys');
    const answer = assertKind(await bridge().report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'enosys');
    assert.match(answer.message, /^Xen 4\.17\.7 does not implement XENPF_pmem_add \(platform op 64\)/);
    assert.equal(regionAdds().length, 0);
  });

  it('never reports when op 64 is XENPF_get_dom0_console that succeeds and writes the union', async () => {
    useMode('dom0-console');
    const hypercalls = bridge();
    const capability = await hypercalls.capability();
    assert.equal(capability.kind, 'unsupported');
    assert.ok(capability.kind === 'unsupported' && capability.reason === 'cmd-64-is-another-operation');
    assert.match(capability.message, /Xen 4\.19\.1 .* write into the request at byte 8 .*XENPF_get_dom0_console/);
    const answer = assertKind(await hypercalls.report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'cmd-64-is-another-operation');
    assert.equal(regionAdds().length, 0, 'no region is ever sent to an op 64 that is not pmem_add');
  });

  it('treats ENODEV (get_dom0_console on a host without a video console) as another operation', async () => {
    useMode('dom0-console-headless');
    const answer = assertKind(await bridge().report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'cmd-64-is-another-operation');
    assert.match(answer.message, /with ENODEV/);
  });

  it('reports a denied probe as probe-failed and asks again next time', async () => {
    useMode('eperm');
    const hypercalls = bridge();
    const answer = assertKind(await hypercalls.report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'probe-failed');
    assert.match(answer.message, /refused platform op 64 with EPERM/);
    await hypercalls.report(REGION, []);
    assert.equal(probes().length, 2);
    assert.equal(regionAdds().length, 0);
  });
});

describe('pmemAdd over the RFC hypervisor', () => {
  it('reports a valid region with one hypercall carrying its six PFNs', async () => {
    assertKind(await bridge().report(REGION, []), 'reported');
    assert.deepEqual(regionAdds().map((line) => line.replace(/ mode=.*/, '')), [
      'platform_op cmd=64 spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000',
    ]);
    assert.match(regionAdds()[0]!, /ret=0 OK/);
  });

  const invalid: [number, string, PmemAddRequest, RegExp][] = [
    [1, 'empty-range', { ...REGION, rsvEpfn: REGION.rsvSpfn }, /reserved range \[0x100200, 0x100200\) is empty/],
    [2, 'outside-region', { ...REGION, dataEpfn: 0x110200n }, /data range \[0x100600, 0x110200\) is not inside the region \[0x100000, 0x110000\)/],
    [3, 'reserved-data-overlap', { ...REGION, dataSpfn: 0x100400n }, /overlaps the data range \[0x100400, 0x110000\)/],
    [4, 'reserved-too-small', { ...REGION, rsvEpfn: 0x100300n, dataSpfn: 0x100300n }, /has 0x100 pages .* needs at least 0x280/],
    [6, 'region-not-2mib-aligned', { ...REGION, epfn: 0x110001n }, /\[0x100000, 0x110001\) must start and end on a 2 MiB boundary/],
  ];
  for (const [rule, reason, request, explanation] of invalid) {
    it(`explains an EINVAL for rule ${rule} (${reason}) in the hypervisor's view`, async () => {
      const answer = assertKind(await bridge().report(request, []), 'rejected');
      assert.equal(answer.errno, EINVAL);
      assert.equal(answer.reason, reason);
      assert.match(answer.message, new RegExp(`rule ${rule} fails`));
      assert.match(answer.message, explanation);
      assert.match(regionAdds()[0]!, new RegExp(`ret=-22 EINVAL rule=${rule}$`), 'the hypervisor refused it by the same rule');
    });
  }

  it('explains an EINVAL for rule 5 by the region it already reported', async () => {
    const hypercalls = bridge();
    assertKind(await hypercalls.report(REGION, []), 'reported');
    const overlapping = { ...REGION, spfn: 0x10fe00n, epfn: 0x120000n, rsvSpfn: 0x10fe00n, rsvEpfn: 0x110200n, dataSpfn: 0x110200n, dataEpfn: 0x120000n };
    const answer = assertKind(await hypercalls.report(overlapping, [REGION]), 'rejected');
    assert.equal(answer.reason, 'overlaps-added-region');
    assert.match(answer.message, /rule 5 fails: the region \[0x10fe00, 0x120000\) overlaps \[0x100000, 0x110000\)/);
  });

  it('rejects the same region after a restart: new port, same hypervisor state', async () => {
    assertKind(await bridge().report(REGION, []), 'reported');
    for (const port of opened) port.close();
    const afterRestart = assertKind(await bridge().report(REGION, []), 'rejected');
    assert.equal(afterRestart.errno, EINVAL);
    assert.equal(afterRestart.reason, 'overlaps-earlier-add');
    assert.match(afterRestart.message, /\[0x100000, 0x110000\) overlaps one already added, possibly by an earlier run/);
    assert.equal(regionAdds().length, 2);
  });

  it('answers retry on ENOMEM, then reported when asked again', async () => {
    useMode('enomem-once');
    const hypercalls = bridge();
    const first = assertKind(await hypercalls.report(REGION, []), 'retry');
    assert.equal(first.errno, ENOMEM);
    assert.equal(first.reason, 'enomem');
    assert.match(first.message, /spfn=0x100000 .* with ENOMEM; nothing was added/);
    assertKind(await hypercalls.report(REGION, []), 'reported');
    assert.equal(regionAdds().length, 2);
  });

  it('answers retry on EAGAIN every time the hypervisor says so', async () => {
    useMode('eagain');
    const hypercalls = bridge();
    for (let attempt = 0; attempt < 2; attempt++) {
      const answer = assertKind(await hypercalls.report(REGION, []), 'retry');
      assert.equal(answer.errno, EAGAIN);
    }
  });

  it('waits for a slow hypervisor: every hypercall takes TEST_XEN_DELAY_MS', async () => {
    useMode('slow', { TEST_XEN_DELAY_MS: '40' });
    const started = performance.now();
    assertKind(await bridge().report(REGION, []), 'reported');
    const elapsed = performance.now() - started;
    const calls = logLines().length;
    assert.equal(calls, 4, 'two xen_version, the probe, the add');
    assert.ok(elapsed >= calls * 40, `${calls} calls took ${elapsed.toFixed(0)} ms`);
  });
});

describe('dry run', () => {
  it('makes no hypercall at all and names all six PFNs in hex', async () => {
    const answer = assertKind(await bridge(true).report(REGION, []), 'dry-run');
    assert.equal(logLines().length, 0);
    assert.equal(existsSync(process.env.TEST_XEN_LOG!), false);
    for (const pfn of ['0x100000', '0x110000', '0x100200', '0x100600']) assert.ok(answer.message.includes(pfn), pfn);
    assert.match(answer.message, /spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100600 data_spfn=0x100600 data_epfn=0x110000/);
    assert.match(answer.message, /would accept it/);
  });

  it('says which rule the hypervisor would apply to a bad request', async () => {
    const answer = assertKind(await bridge(true).report({ ...REGION, spfn: 0x100100n }, []), 'dry-run');
    assert.match(answer.message, /would refuse it \(rule 6: /);
    assert.equal(logLines().length, 0);
  });
});

describe('opening libxencall', () => {
  it('comes back as not-dom0, without a throw, when xencall_open fails', async () => {
    useMode('not-dom0');
    const port = openXencall(library);
    assert.ok('error' in port);
    assert.equal(port.error, 'not-dom0');
    assert.match(port.message, /xencall_open failed with ENOENT: this is not a Xen Dom0/);
  });

  it('comes back as library-missing for a library that does not exist', async () => {
    const port = openXencall(join(workdir, 'libxencall-absent.so'));
    assert.ok('error' in port);
    assert.equal(port.error, 'library-missing');
    assert.match(port.message, /cannot load .*libxencall-absent\.so/);
  });

  it("Debian's real libxencall on this machine answers not-dom0", (t) => {
    if (existsSync('/dev/xen/privcmd')) return t.skip('this machine is a Xen Dom0: the real library would open');
    const port = openXencall();
    if ('error' in port && port.error === 'library-missing') {
      return t.skip(`${DEFAULT_LIBXENCALL} is not installed (apt-get install libxencall1)`);
    }
    assert.ok('error' in port, 'xencall_open must fail outside a Dom0');
    assert.equal(port.error, 'not-dom0');
    assert.match(port.message, /not a Xen Dom0/);
  });

  it('a bridge without a port says why, as not-dom0', async () => {
    const hypercalls = new HypercallBridge(null, { dryRun: false, unavailable: 'xencall_open failed with ENOENT' });
    const answer = assertKind(await hypercalls.report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'not-dom0');
    assert.equal(answer.message, 'xencall_open failed with ENOENT');
  });
});

/** An in-process port for answers the test hypervisor has no mode for. */
function scriptedPort(answers: { platformOp: (op: Buffer) => HypercallResult }): HypercallPort & { ops: Buffer[] } {
  const ops: Buffer[] = [];
  return {
    ops,
    async platformOp(op) {
      ops.push(Buffer.from(op));
      return answers.platformOp(op);
    },
    async xenVersion(cmd, argBytes) {
      const after = Buffer.alloc(argBytes);
      if (cmd === 1) after.write('-scripted');
      return { rc: cmd === 0 ? (4 << 16) | 8 : 0, errno: 0, after };
    },
    close() {},
  };
}

const isProbe = (op: Buffer) => {
  const decoded = decodePmemAdd(op);
  return decoded.ok && decoded.request.spfn === 0n && decoded.request.epfn === 0n;
};

describe('bridge policy on answers no test mode produces', () => {
  it('takes only an untouched buffer as proof: EINVAL with a changed byte is another operation', async () => {
    const port = scriptedPort({
      platformOp: (op) => {
        const after = Buffer.from(op);
        after[100] = after[100]! ^ 0xff;
        return { rc: -1, errno: EINVAL, after };
      },
    });
    const capability = await new HypercallBridge(port, { dryRun: false }).capability();
    assert.ok(capability.kind === 'unsupported');
    assert.equal(capability.reason, 'cmd-64-is-another-operation');
    assert.match(capability.message, /byte 100/);
  });

  it('fills the unused union with a position-dependent canary and zero PFNs', async () => {
    const probe = pmemAddProbe();
    assert.equal(probe.length, PLATFORM_OP_BYTES);
    assert.ok(isProbe(probe));
    assert.ok(probe.subarray(8, 56).every((byte) => byte === 0));
    assert.ok(probe.subarray(56).every((byte, i) => byte === ((0xa5 ^ (56 + i)) & 0xff)));
  });

  it('maps an unexpected errno on the add to error', async () => {
    const port = scriptedPort({
      platformOp: (op) => (isProbe(op) ? { rc: -1, errno: EINVAL, after: Buffer.from(op) } : { rc: -1, errno: EIO, after: Buffer.from(op) }),
    });
    const answer = assertKind(await new HypercallBridge(port, { dryRun: false }).report(REGION, []), 'error');
    assert.equal(answer.errno, EIO);
    assert.equal(answer.reason, 'eio');
    assert.match(answer.message, /with EIO/);
  });

  it('turns an exception inside the native call into error, never a throw', async () => {
    const port = scriptedPort({
      platformOp: (op) => {
        if (isProbe(op)) return { rc: -1, errno: EINVAL, after: Buffer.from(op) };
        throw new TypeError('koffi: unexpected pointer');
      },
    });
    const answer = assertKind(await new HypercallBridge(port, { dryRun: false }).report(REGION, []), 'error');
    assert.equal(answer.reason, 'exception');
    assert.match(answer.message, /koffi: unexpected pointer/);
  });

  it('turns an exception during the probe into unsupported/probe-failed', async () => {
    const port = scriptedPort({
      platformOp: () => {
        throw new Error('segfault guard');
      },
    });
    const answer = assertKind(await new HypercallBridge(port, { dryRun: false }).report(REGION, []), 'unsupported');
    assert.equal(answer.reason, 'probe-failed');
    assert.match(answer.message, /segfault guard/);
  });
});
