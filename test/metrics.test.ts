// The metrics file for node_exporter's textfile collector: its text for a known state, checked by
// promtool; the writer's start, coalescing, refresh and stop; the atomic file write with the modes
// node_exporter's user needs under the unit's UMask=0077.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { METRICS_FILE, MetricsWriter, textfileWriter, unreachableBecause, type MetricsSource } from '../src/daemon/metrics.js';
import type { DaemonState } from '../src/format/records.js';
import { metricsToText } from '../src/format/serializers.js';
import { recordingLogger } from '../fixtures/daemon-host.js';
import { findPromtool } from './helpers/promtool.js';

const REQUEST = { spfn: 0x100000n, epfn: 0x110000n, rsvSpfn: 0x100200n, rsvEpfn: 0x100600n, dataSpfn: 0x100600n, dataEpfn: 0x10fe00n };

function device(name: string, state: DaemonState['devices'][number]['state'], reason: string): DaemonState['devices'][number] {
  return { device: name, devPath: `/dev/${name}`, namespace: 'namespace0.0', mode: 'raw', region: 'region0', state, reason, message: `${name}: ${reason}`, since: '2026-11-21T10:00:00.000Z' };
}

/** A host with four devices: one reported, two rejected for two reasons, one absent. */
const STATE: DaemonState = {
  version: 1,
  pid: 812,
  startedAt: '2026-11-21T10:00:00.000Z',
  updatedAt: '2026-11-21T10:00:05.000Z',
  ready: true,
  capability: { kind: 'pmem-add', xenVersion: '4.17.7-pmem' },
  devices: [device('pmem0', 'reported', 'reported'), device('pmem1', 'rejected', 'bad-checksum'), device('pmem2', 'rejected', 'namespace-mismatch'), device('pmem3', 'absent', 'no-superblock')],
  ledger: [
    { interface: 'pmem-add', device: 'pmem0', uuid: '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c', request: REQUEST, status: 'reported', at: '2026-11-21T10:00:01.000Z' },
    { interface: 'pmem-add', device: 'pmem4', uuid: '11111111-2222-4333-8444-555555555555', request: { ...REQUEST, spfn: 0x110000n, epfn: 0x111000n }, status: 'pending', at: '2026-11-21T10:00:02.000Z' },
  ],
};

const EXPECTED = `# HELP xen_pmem_up Whether xen-pmemd runs: 1 while it does, 0 in the file it writes as it stops.
# TYPE xen_pmem_up gauge
xen_pmem_up 1
# HELP xen_pmem_build_info The version of xen-pmemd that writes this file; always 1.
# TYPE xen_pmem_build_info gauge
xen_pmem_build_info{version="0.1.0"} 1
# HELP xen_pmem_ready Whether the daemon has decided every device present at its start and told systemd it is ready.
# TYPE xen_pmem_ready gauge
xen_pmem_ready 1
# HELP xen_pmem_start_time_seconds When this run of xen-pmemd started, in seconds since the epoch.
# TYPE xen_pmem_start_time_seconds gauge
xen_pmem_start_time_seconds 1795255200
# HELP xen_pmem_devices pmem devices by the state the daemon decided for them.
# TYPE xen_pmem_devices gauge
xen_pmem_devices{state="absent"} 1
xen_pmem_devices{state="rejected"} 2
xen_pmem_devices{state="reported"} 1
xen_pmem_devices{state="unsupported"} 0
xen_pmem_devices{state="retrying"} 0
xen_pmem_devices{state="failed"} 0
xen_pmem_devices{state="removed"} 0
# HELP xen_pmem_rejected_devices pmem devices rejected, by reason code (as xen-pmem status shows it); only reasons some device has.
# TYPE xen_pmem_rejected_devices gauge
xen_pmem_rejected_devices{reason="bad-checksum"} 1
xen_pmem_rejected_devices{reason="namespace-mismatch"} 1
# HELP xen_pmem_reports_total Reports of a pmem region the hypervisor accepted since the host booted, by this daemon and its earlier runs (its ledger).
# TYPE xen_pmem_reports_total counter
xen_pmem_reports_total 1
# HELP xen_pmem_reported_bytes Bytes of pmem in the regions reported to the hypervisor since the host booted.
# TYPE xen_pmem_reported_bytes gauge
xen_pmem_reported_bytes 268435456
# HELP xen_pmem_hypervisor_accepts_reports Whether the hypervisor implements a way to report pmem: 1 yes, 0 no.
# TYPE xen_pmem_hypervisor_accepts_reports gauge
xen_pmem_hypervisor_accepts_reports 1
# HELP xen_pmem_hypervisor_info What the hypervisor was found to implement (unknown before the first question and in a dry run); always 1.
# TYPE xen_pmem_hypervisor_info gauge
xen_pmem_hypervisor_info{capability="pmem-add",xen_version="4.17.7-pmem"} 1
# HELP xen_pmem_last_decision_timestamp_seconds When the daemon last decided a device, in seconds since the epoch.
# TYPE xen_pmem_last_decision_timestamp_seconds gauge
xen_pmem_last_decision_timestamp_seconds 1795255204.25
`;

const scratch = mkdtempSync(join(tmpdir(), 'xen-pmem-metrics-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('the text', () => {
  const view = { up: true, lastDecisionAt: new Date('2026-11-21T10:00:04.250Z'), version: '0.1.0' };

  test('a known state: every state listed, rejections by reason, reports from the ledger, no timestamps', () => {
    assert.equal(metricsToText(STATE, view), EXPECTED);
  });

  test('a Xen without pmem support, before any decision, stopping: 0, the reason, no decision time', () => {
    const text = metricsToText({ ...STATE, ready: false, devices: [], ledger: [], capability: { kind: 'unsupported', reason: 'enosys', message: 'no' } }, { ...view, up: false, lastDecisionAt: null });
    assert.match(text, /^xen_pmem_up 0$/m);
    assert.match(text, /^xen_pmem_ready 0$/m);
    assert.match(text, /^xen_pmem_hypervisor_accepts_reports 0$/m);
    assert.match(text, /^xen_pmem_hypervisor_info\{capability="unsupported",reason="enosys"\} 1$/m);
    assert.match(text, /^xen_pmem_reports_total 0$/m);
    assert.doesNotMatch(text, /xen_pmem_last_decision_timestamp_seconds \d/);
    assert.doesNotMatch(text, /^xen_pmem_rejected_devices\{/m);
  });

  test('a dry run has asked nothing: capability unknown, and no accepts-reports sample', () => {
    const text = metricsToText({ ...STATE, capability: null }, view);
    assert.match(text, /^xen_pmem_hypervisor_info\{capability="unknown"\} 1$/m);
    assert.doesNotMatch(text, /^xen_pmem_hypervisor_accepts_reports \d/m);
  });

  test('label values are escaped', () => {
    const text = metricsToText({ ...STATE, capability: { kind: 'pmem-add', xenVersion: '4.17 "odd"\\build\n' } }, view);
    assert.match(text, /xen_version="4\.17 \\"odd\\"\\\\build\\n"/);
  });

  const promtool = findPromtool();
  test('promtool check metrics accepts the file, with nothing to say', { skip: 'skip' in promtool ? promtool.skip : false }, (t) => {
    const path = (promtool as { path: string }).path;
    for (const [name, text] of [
      ['known state', EXPECTED],
      ['stopping, unsupported, empty', metricsToText({ ...STATE, devices: [], ledger: [], capability: { kind: 'unsupported', reason: 'enosys', message: 'no' } }, { ...view, up: false, lastDecisionAt: null })],
      ['dry run', metricsToText({ ...STATE, capability: null }, view)],
    ] as const) {
      const check = spawnSync(path, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      t.diagnostic(`promtool check metrics (${name}): exit ${check.status}${`${check.stdout}${check.stderr}`.trim() ? `: ${check.stdout}${check.stderr}` : ', no findings'}`);
      assert.equal(check.status, 0, `${name}: ${check.stdout}${check.stderr}`);
      assert.equal(`${check.stdout}${check.stderr}`.trim(), '', name);
    }
    // The checker does object: a counter without _total, a sample without its TYPE's metric.
    const bad = spawnSync(path, ['check', 'metrics'], { input: '# HELP x_reports x\n# TYPE x_reports counter\nx_reports 1\n', encoding: 'utf8' });
    assert.match(`${bad.stdout}${bad.stderr}`, /counter metrics should have "_total" suffix/);
  });
});

/** A source whose snapshot says how many writes happened, and whose changes the test fires. */
function fakeSource(): MetricsSource & { fire(): void; snapshots: number } {
  const listeners: (() => void)[] = [];
  const source = {
    snapshots: 0,
    snapshot: (): DaemonState => { source.snapshots++; return STATE; },
    lastDecisionAt: (): Date | null => null,
    onChange: (listener: () => void): void => { listeners.push(listener); },
    fire: (): void => { for (const listener of listeners) listener(); },
  };
  return source;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the writer', () => {
  test('starts with a file, coalesces a burst into one write, refreshes, and stops with up 0', async () => {
    const source = fakeSource();
    const written: string[] = [];
    const writer = new MetricsWriter({ source, write: async (text) => { written.push(text); }, log: recordingLogger(), version: '0.1.0', timing: { spacingMs: 60, refreshMs: 400 } });
    await writer.start();
    assert.equal(written.length, 1, 'a file as soon as the daemon starts');
    assert.match(written[0]!, /^xen_pmem_up 1$/m);
    for (let i = 0; i < 100; i++) source.fire();
    await sleep(150);
    assert.equal(written.length, 2, `a burst of 100 decisions is one write, got ${written.length}`);
    await sleep(450);
    assert.ok(written.length >= 3, 'the refresh wrote again without any decision');
    const beforeStop = written.length;
    await writer.stop();
    assert.equal(written.length, beforeStop + 1);
    assert.match(written.at(-1)!, /^xen_pmem_up 0$/m);
    source.fire();
    await sleep(100);
    assert.equal(written.length, beforeStop + 1, 'nothing after stop');
  });

  test('a failing write is logged once, not at every decision, and does not throw', async () => {
    const source = fakeSource();
    const log = recordingLogger();
    const writer = new MetricsWriter({ source, write: async () => { throw new Error('EROFS: read-only file system'); }, log, version: '0.1.0', timing: { spacingMs: 10, refreshMs: 10_000 } });
    await writer.start();
    for (let i = 0; i < 3; i++) {
      source.fire();
      await sleep(30);
    }
    await writer.stop();
    assert.deepEqual(log.entries.map((entry) => [entry.level, entry.fields.reason, entry.message]), [['warn', 'metrics-unwritable', 'cannot write the metrics file: EROFS: read-only file system']]);
  });
});

describe('the file', () => {
  test('replaced whole under the unit\'s umask: directory 0755, file 0644, no temporary left, none named *.prom', async () => {
    const dir = join(scratch, 'run', 'metrics');
    const previous = process.umask(0o077);
    try {
      const write = textfileWriter(dir);
      await write('a 1\n');
      await write(EXPECTED);
    } finally {
      process.umask(previous);
    }
    assert.deepEqual(readdirSync(dir), [METRICS_FILE]);
    assert.equal(readFileSync(join(dir, METRICS_FILE), 'utf8'), EXPECTED);
    assert.equal(statSync(dir).mode & 0o777, 0o755);
    assert.equal(statSync(join(dir, METRICS_FILE)).mode & 0o777, 0o644);
  });

  test('a reader never sees a torn file: every read during 200 rewrites is one whole version', async () => {
    const dir = join(scratch, 'torn');
    const write = textfileWriter(dir);
    const versions = [EXPECTED, EXPECTED.replace('xen_pmem_up 1', 'xen_pmem_up 0').repeat(3)];
    await write(versions[0]!);
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        const text = readFileSync(join(dir, METRICS_FILE), 'utf8');
        assert.ok(versions.includes(text), `a torn read of ${text.length} bytes`);
        reads++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    for (let i = 0; i < 200; i++) await write(versions[i % 2]!);
    writing = false;
    await reader;
    assert.ok(reads > 0);
  });

  test('the state directory must let others through, or the daemon says why node_exporter cannot read it', async () => {
    const closed = join(scratch, 'closed');
    const open = join(scratch, 'open');
    for (const [dir, mode] of [[closed, 0o700], [open, 0o711]] as const) {
      spawnSync('mkdir', ['-p', '-m', mode.toString(8), dir]);
    }
    assert.match((await unreachableBecause(closed)) ?? '', /is mode 0700, which lets no other user reach metrics\/xen-pmem\.prom/);
    assert.equal(await unreachableBecause(open), null);
    assert.equal(await unreachableBecause(join(scratch, 'missing')), null);
  });
});
