// The one set of serializers: a range and a layout in each of their forms, and --human.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { DeviceRecord, PhysicalLayout } from '../src/format/records.js';
import {
  layoutText, layoutToFields, layoutToJson, rangeToJson, recordToJson, storedJson,
} from '../src/format/serializers.js';

const LAYOUT: PhysicalLayout = {
  region: { start: 0x1_0000_0000n, size: 0x1000_0000n },
  reserved: { start: 0x1_0020_0000n, size: 0x40_0000n },
  data: { start: 0x1_0060_0000n, size: 0xf80_0000n },
  request: { spfn: 0x100000n, epfn: 0x110000n, rsvSpfn: 0x100200n, rsvEpfn: 0x100600n, dataSpfn: 0x100600n, dataEpfn: 0x10fe00n },
  uuid: '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c',
};

describe('a range in its four forms', () => {
  test('text, JSON (and --human), stored, journal fields', () => {
    assert.equal(layoutText(LAYOUT), 'region 0x100000000-0x10fffffff (reserved 0x100200000-0x1005fffff, data 0x100600000-0x10fdfffff)');
    assert.deepEqual(rangeToJson(LAYOUT.region), { start: '0x100000000', size: 268435456 });
    assert.deepEqual(rangeToJson(LAYOUT.region, { human: true }), { start: '0x100000000', size: '256.00 MiB' });
    assert.equal(storedJson(LAYOUT.region), '{"start":"0x100000000","size":"0x10000000"}');
    const fields = layoutToFields(LAYOUT);
    assert.deepEqual([fields.regionStart, fields.regionSize, fields.rsvSpfn], [0x1_0000_0000n, 0x1000_0000n, 0x100200n]);
  });

  test('a layout in status JSON: ranges and the six PFNs in hex', () => {
    assert.deepEqual(layoutToJson(LAYOUT), {
      uuid: LAYOUT.uuid,
      region: { start: '0x100000000', size: 268435456 },
      reserved: { start: '0x100200000', size: 4194304 },
      data: { start: '0x100600000', size: 260046848 },
      pfns: { spfn: '0x100000', epfn: '0x110000', rsvSpfn: '0x100200', rsvEpfn: '0x100600', dataSpfn: '0x100600', dataEpfn: '0x10fe00' },
    });
  });
});

describe('a device record in status JSON', () => {
  const record: DeviceRecord = {
    device: 'pmem0', devPath: '/dev/pmem0', namespace: 'namespace0.0', mode: 'raw', region: 'region0',
    state: 'reported', reason: 'reported', message: 'pmem0: reported', since: '2026-11-21T10:00:01.000Z',
    layout: LAYOUT, interface: 'pmem-add',
  };

  test('names the interface of its report; --human gives the sizes in binary units', () => {
    const json = recordToJson(record) as { interface: string; layout: { data: unknown } };
    assert.equal(json.interface, 'pmem-add');
    assert.deepEqual(json.layout.data, { start: '0x100600000', size: 260046848 });
    const human = recordToJson(record, { human: true }) as { layout: { data: unknown; reserved: unknown } };
    assert.deepEqual(human.layout.data, { start: '0x100600000', size: '248.00 MiB' });
    assert.deepEqual(human.layout.reserved, { start: '0x100200000', size: '4.00 MiB' });
  });
});
