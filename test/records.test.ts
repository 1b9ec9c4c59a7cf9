// One definition per record: a device record with every field set goes from the daemon to
// state.json and back through the schema the CLI reads it with, and out of `status --json`,
// without losing a field. A field added to DeviceRecord makes this file fail to compile until the
// record below has it (`Required<DeviceRecord>`); forgetting it in the schema fails the build
// (SameShape in src/daemon/state-store.ts) and this round trip; forgetting it in recordToJson
// fails the last check.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { loadStateSchemas, parseState } from '../src/daemon/state-store.js';
import { DEVICE_STATES, STATE_VERSION, type DaemonState, type DeviceRecord } from '../src/format/records.js';
import { recordToJson, stateToText } from '../src/format/serializers.js';

before(() => loadStateSchemas());

const REQUEST = { spfn: 0x100000n, epfn: 0x110000n, rsvSpfn: 0x100200n, rsvEpfn: 0x100e00n, dataSpfn: 0x100e00n, dataEpfn: 0x10fe00n };

/** Every field of a device record, the optional ones included. */
const FULL: Required<DeviceRecord> = {
  device: 'pmem0',
  devPath: '/dev/pmem0',
  namespace: 'namespace0.0',
  mode: 'raw',
  region: 'region0',
  state: 'reported',
  reason: 'reported',
  message: 'pmem0: reported region 0x100000000-0x10fffffff to Xen',
  since: '2026-12-06T04:00:00.000Z',
  layout: {
    region: { start: 0x1_0000_0000n, size: 0x1000_0000n },
    reserved: { start: 0x1_0020_0000n, size: 0xc0_0000n },
    data: { start: 0x1_00e0_0000n, size: 0xf00_0000n },
    request: REQUEST,
    uuid: '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c',
  },
  interface: 'xenpf-pmem',
  nextAttempt: '2026-12-06T04:00:01.000Z',
  notes: ['Xen holds this region; the Dom0 no longer sees the device (namespace0.0 unbound from nd_pmem before the report)'],
  unbound: { device: 'namespace0.0', driver: 'nd_pmem' },
};

const STATE: DaemonState = {
  version: STATE_VERSION,
  pid: 4242,
  startedAt: '2026-12-06T03:59:00.000Z',
  updatedAt: '2026-12-06T04:00:02.000Z',
  ready: true,
  capability: { kind: 'xenpf-pmem', xenVersion: '4.17.7-pmem' },
  devices: [FULL],
  ledger: [{ interface: 'xenpf-pmem', device: 'pmem0', uuid: FULL.layout.uuid, request: REQUEST, status: 'reported', at: '2026-12-06T04:00:00.500Z' }],
};

describe('a device record from the daemon to the CLI', () => {
  test('state.json keeps every field of every record, and the ledger\'s', () => {
    const read = parseState(stateToText(STATE));
    assert.equal(read.kind, 'loaded', read.kind === 'unreadable' ? read.message : '');
    assert.deepEqual(read.kind === 'loaded' ? read.state : null, STATE);
  });

  test('status --json shows every field of the record', () => {
    const read = parseState(stateToText(STATE));
    const record = read.kind === 'loaded' ? read.state.devices[0]! : FULL;
    const json = recordToJson(record);
    assert.deepEqual(Object.keys(FULL).filter((key) => !(key in json)), [], 'fields status --json drops');
  });

  test('the states are listed once, and the schema refuses any other', () => {
    assert.deepEqual([...DEVICE_STATES], ['absent', 'rejected', 'reported', 'unsupported', 'retrying', 'failed', 'removed']);
    const odd = stateToText({ ...STATE, devices: [{ ...FULL, state: 'vanished' as never }] });
    assert.equal(parseState(odd).kind, 'unreadable');
  });
});
