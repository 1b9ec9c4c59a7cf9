// The daemon's pure decision, state by state and reason by reason. Models come from fixture sysfs
// trees through the real device model, verdicts from the real validator, and every hypervisor
// answer that can be produced by the test hypervisor comes through the real koffi bridge.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { MiB, PAGE_BYTES } from '../src/core/units.js';
import { judge, type Verdict } from '../src/core/validate.js';
import type { Config } from '../src/daemon/config.js';
import { configSchema } from '../src/daemon/config-schema.js';
import {
  admit, dryRunOutcome, interpretAnswer, judgeForXen, mapToPhysical, removalOutcome,
  type Judgement, type LedgerEntry, type Outcome, type PhysicalLayout, type XenHoldings,
} from '../src/daemon/decide.js';
import { openDevice } from '../src/io/device.js';
import { scanDevice } from '../src/io/scan.js';
import { isSupportedPmem, listPmemNamespaces, type PmemNamespaceModel, type SupportedPmemNamespace } from '../src/sysfs/model.js';
import { HypercallBridge, type BridgeAnswer, type Capability } from '../src/xen/bridge.js';
import type { PmemReport } from '../src/xen/interface.js';
import { checkPmemAddLikeXen } from '../src/xen/interfaces/xenpf-pmem.js';
import { makeDaemonHost, show, type DaemonHost, forgetXenInProcess } from '../fixtures/daemon-host.js';
import type { CatalogName } from '../src/daemon/catalog.js';
import { ENTRIES_OF_STATE } from './helpers/catalog-families.js';
import { freshDevice, withBothCopies } from './helpers/fixtures.js';
import type { SysfsTreeSpec } from '../fixtures/sysfs-tree.js';

const REGION_START = 0x1_0000_0000n;
const REGION_SIZE = 256n * MiB;
const NAMESPACE_UUID = '7c0f6a52-3d4e-4b1a-9e8f-0a1b2c3d4e5f';
const OTHER_UUID = '11111111-2222-4333-8444-555555555555';
const PMEM: Capability = { kind: 'xenpf-pmem', xenVersion: '4.17.7-pmem' };

/** What Xen holds for judgeForXen: this ledger, and the regions Xen listed that it does not explain. */
function holdings(ledger: LedgerEntry[] = [], listed: PmemReport[] = []): XenHoldings {
  return { ledger, listed, check: checkPmemAddLikeXen };
}

const hosts: DaemonHost[] = [];
async function host(label: string, spec: SysfsTreeSpec): Promise<DaemonHost> {
  const made = await makeDaemonHost(label, spec);
  hosts.push(made);
  return made;
}
after(async () => {
  await Promise.all(hosts.map((each) => each.cleanup()));
  forgetXenInProcess();
});

function config(raw: unknown = {}): Config {
  return configSchema.parse(raw);
}

function supported(model: PmemNamespaceModel | undefined): SupportedPmemNamespace {
  assert.ok(model, 'the fixture has the namespace');
  assert.ok(isSupportedPmem(model), `supported model, got ${show(model.unsupported)}`);
  return model;
}

/**
 * Every outcome names a catalog entry of its state's family: its journal line's MESSAGE_ID. A
 * rejection also names the one its reason belongs to, as `rejectedAs` says for the step at hand.
 */
function catalogued<T extends Outcome | null>(outcome: T, rejectedAs?: (reason: string) => CatalogName): T {
  if (outcome) {
    assert.ok(ENTRIES_OF_STATE[outcome.state].includes(outcome.catalog), `${outcome.state}/${outcome.reason} is explained by ${outcome.catalog}`);
    if (outcome.state === 'rejected' && rejectedAs) assert.equal(outcome.catalog, rejectedAs(outcome.reason), outcome.reason);
  }
  return outcome;
}

/** judgeForXen's rejections, by reason: the physical map, the ledger, Xen's rules, else the super block. */
function judgedRejection(reason: string): CatalogName {
  if (['region-misaligned', 'outside-nd-region', 'area-misaligned'].includes(reason)) return 'rejected-physical-map';
  if (reason === 'overlaps-reported') return 'rejected-overlap';
  if (/^xen-rule-\d+$/.test(reason)) return 'rejected-xen-rule';
  return 'rejected-superblock';
}

function outcomeOf(judgement: Judgement): Outcome {
  assert.equal(judgement.kind, 'outcome', `expected an outcome, got ${judgement.kind}`);
  return catalogued((judgement as Extract<Judgement, { kind: 'outcome' }>).outcome, judgedRejection);
}

function reportOf(judgement: Judgement): Extract<Judgement, { kind: 'report' }> {
  assert.equal(judgement.kind, 'report', `expected a report, got ${show(judgement.kind === 'outcome' ? judgement.outcome : null)}`);
  return judgement as Extract<Judgement, { kind: 'report' }>;
}

function validVerdict(size: bigint, namespaceUuid: string | null = NAMESPACE_UUID): Extract<Verdict, { status: 'valid' }> {
  const verdict = judge({ ...freshDevice(size, { namespaceUuid }).input, namespaceUuid });
  assert.equal(verdict.status, 'valid', show(verdict));
  return verdict as Extract<Verdict, { status: 'valid' }>;
}

function layoutOf(model: SupportedPmemNamespace, verdict: Extract<Verdict, { status: 'valid' }>): PhysicalLayout {
  const mapped = mapToPhysical(model, verdict);
  assert.ok(!('reason' in mapped), `maps: ${show(mapped)}`);
  return mapped;
}

function ledgerEntry(layout: PhysicalLayout, status: LedgerEntry['status'], device = 'pmem0'): LedgerEntry {
  return { interface: 'xenpf-pmem', device, uuid: layout.uuid, request: { ...layout.request }, status, at: '2026-11-21T10:00:00.000Z' };
}

// A labelled raw namespace filling a 256 MiB region at 4 GiB: block byte 0 at 0x100000000.
let model: SupportedPmemNamespace;
before(async () => {
  const fixture = await host('decide', {
    regions: [{ id: 0, start: REGION_START, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'raw', uuid: NAMESPACE_UUID }] }],
  });
  model = supported((await listPmemNamespaces(fixture.roots))[0]);
});

describe('admit: before any I/O', () => {
  test('a supported device with the default config is admitted', async () => {
    assert.equal(admit(model, config(), 'PV'), null);
  });

  const refusals: [string, unknown, RegExp][] = [
    ['allow by namespace UUID (another UUID)', { allow: { namespaces: [OTHER_UUID] } }, /not in the config's allow list \(namespace 7c0f6a52-3d4e-4b1a-9e8f-0a1b2c3d4e5f, region0, pmem0\)/],
    ['allow by region (another region)', { allow: { regions: ['region1'] } }, /not in the config's allow list/],
    ['allow by device (another device)', { allow: { devices: ['pmem1'] } }, /not in the config's allow list/],
    ['deny by namespace UUID', { deny: { namespaces: [NAMESPACE_UUID.toUpperCase()] } }, /denied by config \(deny\.namespaces: 7c0f6a52-3d4e-4b1a-9e8f-0a1b2c3d4e5f\)/],
    ['deny by region', { deny: { regions: ['region0'] } }, /denied by config \(deny\.regions: region0\)/],
    ['deny by device', { deny: { devices: ['pmem0'] } }, /denied by config \(deny\.devices: pmem0\)/],
    ['deny wins over allow', { allow: { devices: ['pmem0'] }, deny: { regions: ['region0'] } }, /denied by config \(deny\.regions: region0\)/],
  ];
  for (const [name, raw, message] of refusals) {
    test(`rejected, not-allowed: ${name}`, async () => {
      const outcome = catalogued(admit(model, config(raw), 'PV'));
      assert.ok(outcome, 'refused');
      assert.equal(outcome.catalog, 'rejected-config');
      assert.equal(outcome.state, 'rejected');
      assert.equal(outcome.reason, 'not-allowed');
      assert.equal(outcome.severity, 'notice');
      assert.match(outcome.message, /^pmem0: not reported to Xen: /);
      assert.match(outcome.message, message);
    });
  }

  const admissions: [string, unknown][] = [
    ['allow by namespace UUID, any case', { allow: { namespaces: [NAMESPACE_UUID.toUpperCase()] } }],
    ['allow by region', { allow: { regions: ['region0'] } }],
    ['allow by device', { allow: { devices: ['pmem0'] } }],
    ['a deny entry for another device', { deny: { devices: ['pmem1'], namespaces: [OTHER_UUID] } }],
  ];
  for (const [name, raw] of admissions) {
    test(`admitted: ${name}`, async () => {
      assert.equal(admit(model, config(raw), 'PV'), null);
    });
  }

  test('fsdax in a PV Dom0: rejected before any I/O, with the command that makes it raw; admitted in a PVH Dom0 and outside Xen', async () => {
    const fixture = await host('decide-fsdax', {
      regions: [{ id: 0, start: REGION_START, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'fsdax' }] }],
    });
    const fsdax = (await listPmemNamespaces(fixture.roots))[0]!;
    assert.equal(fsdax.mode, 'fsdax');
    const outcome = catalogued(admit(fsdax, config(), 'PV'));
    assert.deepEqual([outcome?.state, outcome?.reason, outcome?.catalog, outcome?.severity], ['rejected', 'fsdax-in-pv-dom0', 'rejected-device', 'error']);
    assert.match(outcome!.message, /^pmem0: not reported to Xen: namespace0\.0 is in fsdax mode and this Dom0 is a PV guest, where unbinding its pfn device before the report crashes Linux; make it a raw namespace \(ndctl create-namespace -f -e namespace0\.0 -m raw\)/);
    assert.equal(admit(fsdax, config(), 'PVH'), null);
    assert.equal(admit(fsdax, config(), null), null);
  });

  test('rejected with the model\'s own reason: sector and devdax modes, which do not map linearly', async () => {
    const fixture = await host('decide-modes', {
      regions: [
        { id: 0, start: REGION_START, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'sector' }] },
        { id: 1, start: REGION_START + REGION_SIZE, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'devdax' }] },
      ],
    });
    const models = await listPmemNamespaces(fixture.roots);
    const outcomes = models.map((each) => catalogued(admit(each, config(), 'PV')));
    assert.deepEqual(outcomes.map((each) => each?.catalog), ['rejected-device', 'rejected-device']);
    assert.deepEqual(outcomes.map((each) => [each?.state, each?.reason, each?.severity]), [
      ['rejected', 'sector-mode', 'warn'],
      ['rejected', 'devdax-mode', 'warn'],
    ]);
    assert.match(outcomes[0]!.message, /^namespace0\.0: not usable for Xen: namespace0\.0 is in sector mode \(BTT, btt0\.0, block device pmem0s\)/);
    assert.match(outcomes[1]!.message, /^namespace1\.0: not usable for Xen: namespace1\.0 is in devdax mode/);
  });
});

describe('judgeForXen: from a scan verdict to what to do', () => {
  test('absent: no super block', async () => {
    const blank: Verdict = { status: 'absent', message: 'no xen-pmem super block at 0x100000 or 0xff00000', partitions: [] };
    const outcome = outcomeOf(judgeForXen(model, blank, holdings(), PMEM));
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['absent', 'no-superblock', 'info']);
    assert.match(outcome.message, /^pmem0: no xen-pmem super block \(no xen-pmem super block at 0x100000 or 0xff00000\)$/);
    assert.equal(outcome.layout, undefined);
  });

  test('rejected: an invalid super block carries the validator\'s reason', () => {
    // A super block written for a device 2 MiB larger: the copies are intact, the binding is not.
    const fixture = freshDevice(REGION_SIZE + 2n * MiB, { namespaceUuid: NAMESPACE_UUID });
    const verdict = judge({ ...withBothCopies(fixture, {}), deviceSize: REGION_SIZE, namespaceUuid: NAMESPACE_UUID });
    assert.equal(verdict.status, 'invalid');
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings(), PMEM));
    assert.equal(outcome.state, 'rejected');
    assert.equal(outcome.reason, verdict.status === 'invalid' ? verdict.reason : '');
    assert.equal(outcome.severity, 'error');
    assert.match(outcome.message, new RegExp(`^pmem0: super block rejected \\[${outcome.reason}\\]: `));
  });

  test('rejected: a super block bound to another namespace', async () => {
    const verdict = judge({ ...freshDevice(REGION_SIZE, { namespaceUuid: OTHER_UUID }).input, namespaceUuid: NAMESPACE_UUID });
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings(), PMEM));
    assert.deepEqual([outcome.state, outcome.reason], ['rejected', 'namespace-mismatch']);
  });

  test('rejected: a region whose start is not 2 MiB aligned', async () => {
    const shifted: SupportedPmemNamespace = { ...model, block: { ...model.block, physStart: REGION_START + PAGE_BYTES } };
    const outcome = outcomeOf(judgeForXen(shifted, validVerdict(REGION_SIZE), holdings(), PMEM));
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['rejected', 'region-misaligned', 'error']);
    assert.match(outcome.message, /region 0x100001000-0x110000fff \(start 0x100001000, size 0x10000000\) is not in whole 2 MiB superpages/);
  });

  test('rejected: a region whose size is not 2 MiB aligned', async () => {
    const size = REGION_SIZE - 4n * PAGE_BYTES;
    const short: SupportedPmemNamespace = { ...model, block: { ...model.block, size } };
    const outcome = outcomeOf(judgeForXen(short, validVerdict(size), holdings(), PMEM));
    assert.deepEqual([outcome.state, outcome.reason], ['rejected', 'region-misaligned']);
    assert.match(outcome.message, /size 0xfffc000\)/);
  });

  test('rejected: overlap with a range this daemon already reported for another device', async () => {
    const layout = layoutOf(model, validVerdict(REGION_SIZE));
    // Another reservation whose region ends 2 MiB into ours.
    const other: LedgerEntry = {
      interface: 'xenpf-pmem', device: 'pmem7', uuid: OTHER_UUID, status: 'reported', at: '2026-11-21T10:00:00.000Z',
      request: { spfn: 0xffe00n, epfn: 0x100200n, rsvSpfn: 0xffe00n, rsvEpfn: 0xfff00n, dataSpfn: 0xfff00n, dataEpfn: 0x100200n },
    };
    const outcome = outcomeOf(judgeForXen(model, validVerdict(REGION_SIZE), holdings([other]), PMEM));
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['rejected', 'overlaps-reported', 'error']);
    assert.match(outcome.message, /region 0x100000000-0x10fffffff overlaps \[0xffe00, 0x100200\) reported for pmem7 \(reservation 11111111-2222-4333-8444-555555555555\)/);
    assert.deepEqual(outcome.layout?.request, layout.request);
  });

  test('rejected: a pending entry of another device counts as reported too', async () => {
    const layout = layoutOf(model, validVerdict(REGION_SIZE));
    const other: LedgerEntry = { ...ledgerEntry(layout, 'pending', 'pmem3'), uuid: OTHER_UUID };
    const outcome = outcomeOf(judgeForXen(model, validVerdict(REGION_SIZE), holdings([other]), PMEM));
    assert.equal(outcome.reason, 'overlaps-reported');
  });

  // Super blocks the validator never produces, to reach the last line of defence: Xen's own rules
  // applied before any hypercall.
  const broken: [number, string, (size: bigint) => Partial<Extract<Verdict, { status: 'valid' }>['superblock']>][] = [
    [2, 'the data area runs past the region', (size) => ({ dataSize: size })],
    // The planner's data area starts at 14 MiB; 14 MiB reserved from 2 MiB run to 16 MiB.
    [3, 'the reserved area runs into the data area', () => ({ reservedSize: 14n * MiB })],
    [4, 'the reserved area is below the rule-4 floor', () => ({ reservedSize: PAGE_BYTES })],
  ];
  for (const [rule, what, change] of broken) {
    test(`rejected before any hypercall: Xen rule ${rule} (${what})`, async () => {
      const verdict = validVerdict(REGION_SIZE);
      const bent = { ...verdict, superblock: { ...verdict.superblock, ...change(REGION_SIZE) } };
      const outcome = outcomeOf(judgeForXen(model, bent, holdings(), PMEM));
      assert.equal(outcome.state, 'rejected');
      assert.equal(outcome.reason, `xen-rule-${rule}`);
      assert.match(outcome.message, new RegExp(`^pmem0: Xen would refuse this layout \\(rule ${rule}\\): `));
    });
  }

  test('report: a valid layout with Xen proven to implement pmem_add', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const report = reportOf(judgeForXen(model, verdict, holdings(), PMEM));
    assert.equal(report.confirming, false);
    assert.equal(report.layout.uuid, verdict.superblock.uuid);
  });

  test('reported, reported-earlier: the ledger says this very layout was reported', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const layout = layoutOf(model, verdict);
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings([ledgerEntry(layout, 'reported')]), PMEM));
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['reported', 'reported-earlier', 'info']);
    assert.match(outcome.message, /region 0x100000000-0x10fffffff was reported to Xen at 2026-11-21T10:00:00\.000Z; Xen keeps it until reboot/);
    assert.deepEqual(outcome.layout, layout);
  });

  test('reported-earlier needs the same reservation: a re-setup at the same place overlaps instead', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const layout = layoutOf(model, verdict);
    const stale = { ...ledgerEntry(layout, 'reported'), uuid: OTHER_UUID };
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings([stale]), PMEM));
    assert.deepEqual([outcome.state, outcome.reason], ['rejected', 'overlaps-reported']);
  });

  test('a pending ledger entry for this layout is confirmed by a new add', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const layout = layoutOf(model, verdict);
    const report = reportOf(judgeForXen(model, verdict, holdings([ledgerEntry(layout, 'pending')]), PMEM));
    assert.equal(report.confirming, true);
  });

  test('reported-earlier: Xen lists exactly this layout although the ledger is gone', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const layout = layoutOf(model, verdict);
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings([], [layout.request]), PMEM));
    assert.deepEqual([outcome.state, outcome.reason], ['reported', 'reported-earlier']);
    assert.match(outcome.message, /Xen already holds region 0x100000000-0x10fffffff with exactly this layout/);
  });

  test('rejected: Xen lists a region that overlaps this one with another layout', async () => {
    const verdict = validVerdict(REGION_SIZE);
    const layout = layoutOf(model, verdict);
    const outcome = outcomeOf(judgeForXen(model, verdict, holdings([], [{ ...layout.request, rsvEpfn: layout.request.rsvEpfn + 0x200n, dataSpfn: layout.request.dataSpfn + 0x200n }]), PMEM));
    assert.deepEqual([outcome.state, outcome.reason], ['rejected', 'overlaps-reported']);
    assert.match(outcome.message, /overlaps \[0x100000, 0x110000\), which Xen holds with another layout/);
  });

  test('a dry run (no capability) judges by the rules and reports nothing', async () => {
    const report = reportOf(judgeForXen(model, validVerdict(REGION_SIZE), holdings(), null));
    const outcome = dryRunOutcome('pmem0', report.layout, 'XENPF_pmem add spfn=0x100000');
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['unsupported', 'dry-run', 'notice']);
    assert.match(outcome.message, /^pmem0: dry run, would report region 0x100000000-0x10fffffff .*: no hypercall made: XENPF_pmem add spfn=0x100000$/);
  });

});

describe('unsupported: what the hypervisor probe says, through the real bridge', () => {
  let fixture: DaemonHost;
  beforeEach(async () => {
    fixture = await host('decide-xen', { regions: [] });
    fixture.useXenInProcess();
  });

  const modes: [string, string, RegExp][] = [
    ['enosys', 'enosys', /Xen 4\.17\.7 does not implement XENPF_pmem \(platform op 67\)/],
    ['dom0-console', 'enosys', /Xen 4\.20\.4 does not implement XENPF_pmem \(platform op 67\)/],
  ];
  for (const [mode, reason, message] of modes) {
    test(`unsupported, ${reason}: test hypervisor in mode ${mode}`, async () => {
      fixture.useXenInProcess({ mode });
      const capability = await fixture.openBridge().capability();
      const outcome = outcomeOf(judgeForXen(model, validVerdict(REGION_SIZE), holdings(), capability));
      assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['unsupported', reason, 'warn']);
      assert.match(outcome.message, /^pmem0: valid layout, region 0x100000000-0x10fffffff, not reported: /);
      assert.match(outcome.message, message);
      assert.ok(outcome.layout, 'the layout is kept for status');
      assert.equal(fixture.regionAdds().length, 0, 'no region reached the hypervisor');
    });
  }

  test('unsupported, not-dom0: libxencall cannot open', async () => {
    fixture.useXenInProcess({ mode: 'not-dom0' });
    const capability = await fixture.openBridge().capability();
    const outcome = outcomeOf(judgeForXen(model, validVerdict(REGION_SIZE), holdings(), capability));
    assert.deepEqual([outcome.state, outcome.reason], ['unsupported', 'not-dom0']);
    assert.match(outcome.message, /xencall_open failed with ENOENT: this is not a Xen Dom0/);
  });
});

describe('interpretAnswer: what Xen\'s answer means, answers from the real bridge', () => {
  let fixture: DaemonHost;
  let layout: PhysicalLayout;
  beforeEach(async () => {
    fixture = await host('decide-answer', { regions: [] });
    fixture.useXenInProcess();
    layout = layoutOf(model, validVerdict(REGION_SIZE));
  });

  function expectOutcome(answer: BridgeAnswer, confirming: boolean, expected: [string, string, string]): Outcome {
    const outcome = catalogued(interpretAnswer('pmem0', layout, answer, confirming), () => 'rejected-by-xen');
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], expected, outcome.message);
    assert.equal(outcome.layout, layout);
    assert.match(outcome.message, /region 0x100000000-0x10fffffff \(reserved 0x100200000-0x100dfffff, data 0x100e00000-0x10fdfffff\)/);
    return outcome;
  }

  test('reported: Xen took the region', async () => {
    const answer = await fixture.openBridge().report(layout.request);
    const outcome = expectOutcome(answer, false, ['reported', 'reported', 'notice']);
    assert.match(outcome.message, /^pmem0: reported region /);
    assert.equal(fixture.xenRegions().length, 1);
  });

  test('reported-earlier: Xen answers EEXIST already_added for exactly this region', async () => {
    await fixture.openBridge().report(layout.request);
    const answer = await fixture.openBridge().report(layout.request);
    const outcome = expectOutcome(answer, false, ['reported', 'reported-earlier', 'notice']);
    assert.match(outcome.message, /Xen already holds region .* with exactly this layout \(EEXIST already_added\)/);
    assert.equal(fixture.xenRegions().length, 1, 'Xen still holds exactly one region');
  });

  test('reported, reported-before-restart: EEXIST while confirming a pending entry is the proof', async () => {
    await fixture.openBridge().report(layout.request);
    const answer = await fixture.openBridge().report(layout.request);
    const outcome = expectOutcome(answer, true, ['reported', 'reported-before-restart', 'notice']);
    assert.match(outcome.message, /already added to Xen by a run that stopped before recording it/);
    assert.equal(fixture.xenRegions().length, 1, 'Xen still holds exactly one region');
  });

  test('rejected while confirming: a refusal is a refusal, whatever the ledger says', async () => {
    const starved = { ...layout.request, rsvEpfn: layout.request.rsvSpfn + 1n };
    const answer = await fixture.openBridge().report(starved);
    assert.equal(answer.kind, 'rejected');
    const outcome = interpretAnswer('pmem0', { ...layout, request: starved }, answer, true);
    assert.deepEqual([outcome.state, outcome.reason], ['rejected', 'reserved-too-small'], outcome.message);
    assert.match(outcome.message, /ENOSPC reserved_too_small/);
    assert.equal(fixture.xenRegions().length, 0);
  });

  const retries: [string, string][] = [['enomem-once', 'no-memory'], ['ebusy-once', 'busy']];
  for (const [mode, reason] of retries) {
    test(`retrying, ${reason}: test hypervisor in mode ${mode}`, async () => {
      fixture.useXenInProcess({ mode });
      const answer = await fixture.openBridge().report(layout.request);
      const outcome = expectOutcome(answer, false, ['retrying', reason, 'warn']);
      assert.match(outcome.message, /^pmem0: Xen could not take region /);
      assert.equal(fixture.xenRegions().length, 0, 'nothing was added');
    });
  }

  test('retrying, mapped: a domain still maps the region (no hypervisor mode answers it, so the answer is written out)', () => {
    const answer: BridgeAnswer = { kind: 'retry', errno: 16, reason: 'mapped', message: 'Xen answered XENPF_pmem add with EBUSY mapped' };
    expectOutcome(answer, false, ['retrying', 'mapped', 'warn']);
  });

  test('failed, eperm: the platform op refused as a whole after the probe proved XENPF_pmem', async () => {
    const bridge = fixture.openBridge();
    assert.equal((await bridge.capability()).kind, 'xenpf-pmem');
    fixture.useXenInProcess({ mode: 'eperm' });
    const answer = await bridge.report(layout.request);
    const outcome = expectOutcome(answer, false, ['failed', 'eperm', 'error']);
    assert.match(outcome.message, /^pmem0: reporting region .* failed: Xen answered XENPF_pmem add .* with EPERM before XENPF_pmem answered/);
  });

  test('failed: an answer the spec does not list, also while confirming', () => {
    const answer: BridgeAnswer = { kind: 'error', errno: 5, reason: 'eio', message: 'Xen answered XENPF_pmem add with EIO' };
    expectOutcome(answer, false, ['failed', 'eio', 'error']);
    expectOutcome(answer, true, ['failed', 'eio', 'error']);
  });

  test('unsupported answers from the bridge stay unsupported (upstream Xen without op 67)', async () => {
    fixture.useXenInProcess({ mode: 'dom0-console' });
    const answer = await fixture.openBridge().report(layout.request);
    expectOutcome(answer, false, ['unsupported', 'enosys', 'warn']);
    expectOutcome(answer, true, ['unsupported', 'enosys', 'warn']);
    assert.equal(fixture.regionAdds().length, 0);
  });
});

describe('removalOutcome', () => {
  test('removed: a device that was never reported', async () => {
    for (const previous of [undefined, { state: 'absent' as const, reason: 'no-superblock', message: '' }, { state: 'rejected' as const, reason: 'bad-checksum', message: '', layout: undefined }]) {
      const outcome = catalogued(removalOutcome('pmem0', previous));
      assert.deepEqual([outcome.state, outcome.reason, outcome.severity, outcome.message], ['removed', 'removed', 'info', 'pmem0: removed']);
      assert.equal(outcome.catalog, 'removed');
    }
  });

  test('removed, removed-while-reported: an error, because Xen still manages that memory', async () => {
    const layout = layoutOf(model, validVerdict(REGION_SIZE));
    const outcome = catalogued(removalOutcome('pmem0', { state: 'reported', reason: 'reported', message: 'pmem0: reported', layout }));
    assert.deepEqual([outcome.state, outcome.reason, outcome.severity], ['removed', 'removed-while-reported', 'error']);
    assert.equal(outcome.catalog, 'removed-after-report');
    assert.equal(outcome.layout, layout);
    assert.match(outcome.message, /^pmem0: removed after its region 0x100000000-0x10fffffff was reported to Xen; .*reboot the host/);
  });

  test('a device that was unsupported when removed is only removed', async () => {
    const layout = layoutOf(model, validVerdict(REGION_SIZE));
    assert.equal(removalOutcome('pmem0', { state: 'unsupported', reason: 'enosys', message: '', layout }).reason, 'removed');
  });

  test('a reported device whose driver the daemon unbound stays reported, with a note', async () => {
    const layout = layoutOf(model, validVerdict(REGION_SIZE));
    const unbound = { device: 'namespace0.0', driver: 'nd_pmem' };
    const outcome = catalogued(removalOutcome('pmem0', { state: 'reported', reason: 'reported', message: 'pmem0: reported it', layout, interface: 'xenpf-pmem', unbound }, true));
    assert.deepEqual([outcome.state, outcome.reason, outcome.message, outcome.severity], ['reported', 'reported', 'pmem0: reported it', 'info']);
    assert.deepEqual(outcome.unbound, unbound);
    assert.deepEqual(outcome.notes, ['Xen holds this region; the Dom0 no longer sees the device (namespace0.0 unbound from nd_pmem before the report)']);
    // Its namespace gone too: the NVDIMM went away, and that is an error again.
    assert.equal(removalOutcome('pmem0', { state: 'reported', reason: 'reported', message: '', layout, unbound }, false).reason, 'removed-while-reported');
  });
});

describe('mapToPhysical: six PFNs from fixture trees, computed by hand', () => {
  test('raw: block byte 0 is the namespace resource', async () => {
    const fixture = await host('decide-raw', {
      regions: [{ id: 0, start: REGION_START, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'raw' }] }],
    });
    const prepared = await fixture.prepare('pmem0');
    const raw = supported((await listPmemNamespaces(fixture.roots))[0]);
    const verdict = await scanOf(prepared.devPath);
    // 256 MiB at 0x1_0000_0000: 0x10000 pages from PFN 0x100000. The planner puts the reserved
    // area at 2 MiB (PFN +0x200), 12 MiB long (65,536 pages: two 2 MiB chunks each for page_info,
    // M2P and compat M2P, 6 chunks = 0xc00 pages), and the data after it, from 14 MiB (PFN +0xe00)
    // up to the 2 MiB boundary below the backup copy at 255 MiB (254 MiB = PFN +0xfe00): 240 MiB.
    assert.equal(prepared.superblock.reservedOffset, 2n * MiB);
    assert.equal(prepared.superblock.reservedSize, 12n * MiB);
    assert.equal(prepared.superblock.dataOffset, 14n * MiB);
    assert.equal(prepared.superblock.dataSize, 240n * MiB);
    const layout = layoutOf(raw, verdict);
    assert.deepEqual(layout.request, {
      spfn: 0x100000n, epfn: 0x110000n,
      rsvSpfn: 0x100200n, rsvEpfn: 0x100e00n,
      dataSpfn: 0x100e00n, dataEpfn: 0x10fe00n,
    });
    assert.deepEqual(layout.region, { start: 0x1_0000_0000n, size: 0x1000_0000n });
    assert.deepEqual(layout.reserved, { start: 0x1_0020_0000n, size: 0xc0_0000n });
    assert.deepEqual(layout.data, { start: 0x1_00e0_0000n, size: 0xf00_0000n });
    assert.equal(layout.uuid, prepared.superblock.uuid);
  });

  test('fsdax: block byte 0 is the pfn device\'s resource, after the kernel\'s memmap', async () => {
    const fixture = await host('decide-fsdax', {
      regions: [{ id: 0, start: REGION_START, size: REGION_SIZE, namespaces: [{ id: 0, mode: 'fsdax', map: 'dev' }] }],
    });
    const fsdax = supported((await listPmemNamespaces(fixture.roots))[0]);
    // The kernel keeps 8 KiB of info block and 64 bytes of struct page for each of the
    // (256 MiB - 8 KiB) / 4 KiB = 65,534 pages: 0x402080 bytes, rounded up to 2 MiB = 6 MiB. So
    // the block device starts at 0x100600000 and holds 250 MiB.
    assert.equal(fsdax.block.physStart, 0x1_0060_0000n);
    assert.equal(fsdax.block.size, 250n * MiB);
    const prepared = await fixture.prepare('pmem0');
    const verdict = await scanOf(prepared.devPath);
    // 250 MiB = 64,000 pages, within one 2 MiB chunk of each table: 6 chunks, 12 MiB reserved again
    // (PFN +0x200..+0xe00 of the block device); data from 14 MiB to the 2 MiB boundary below the
    // backup at 249 MiB: 248 MiB - 14 MiB = 234 MiB.
    assert.equal(prepared.superblock.reservedSize, 12n * MiB);
    assert.equal(prepared.superblock.dataSize, 234n * MiB);
    const layout = layoutOf(fsdax, verdict);
    assert.deepEqual(layout.request, {
      spfn: 0x100600n, epfn: 0x110000n,
      rsvSpfn: 0x100800n, rsvEpfn: 0x101400n,
      dataSpfn: 0x101400n, dataEpfn: 0x10fe00n,
    });
  });

  test('a block range outside its nd region is refused', async () => {
    const outside: SupportedPmemNamespace = { ...model, region: { ...model.region, size: REGION_SIZE - 2n * MiB } };
    const mapped = mapToPhysical(outside, validVerdict(REGION_SIZE));
    assert.ok('reason' in mapped);
    assert.equal(mapped.reason, 'outside-nd-region');
    assert.match(mapped.message, /block range 0x100000000-0x10fffffff is not inside region0 0x100000000-0x10fdfffff/);
  });
});

async function scanOf(devPath: string): Promise<Extract<Verdict, { status: 'valid' }>> {
  const reader = await openDevice(devPath, 'read');
  try {
    const verdict = await scanDevice(reader, { namespaceUuid: null });
    assert.equal(verdict.status, 'valid', show(verdict));
    return verdict as Extract<Verdict, { status: 'valid' }>;
  } finally {
    await reader.close();
  }
}
