// The generator of hostile XENPF_pmem requests the lab sends to the patched hypervisor
// (lab/hostile-requests.ts): the same requests for the same seed, every kind, every part of the
// memory map, and planner layouts on 2 MiB boundaries.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HOSTILE_KINDS, hostileRequests, parseIomem } from '../lab/hostile-requests.js';
import { TEST_SEED, withSeed } from './helpers/seed.js';

/** The top of /proc/iomem in the lab's PV Dom0 (QEMU's i440FX with two NVDIMMs), indented lines kept. */
const IOMEM = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
7ffe0000-7fffffff : Reserved
80000000-febfffff : PCI Bus 0000:00
fed00000-fed003ff : HPET 0
fee00000-fee00fff : Local APIC
fffc0000-ffffffff : Reserved
100000000-10fffffff : Persistent Memory
  100000000-10fffffff : namespace0.0
110000000-12fffffff : Persistent Memory
`;

test('parseIomem keeps the top-level ranges, end exclusive', () => {
  const map = parseIomem(IOMEM);
  assert.equal(map.length, 13);
  assert.deepEqual(map[1], { start: 0x1000n, end: 0x9fc00n, name: 'System RAM' });
  assert.deepEqual(map.at(-1), { start: 0x110000000n, end: 0x130000000n, name: 'Persistent Memory' });
});

test('the same seed gives the same requests; every kind and every map entry come up', () => {
  const map = parseIomem(IOMEM);
  const show = (value: unknown): string => JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString(16) : v));
  const requests = hostileRequests(map, TEST_SEED, 2000);
  assert.equal(show(requests), show(hostileRequests(map, TEST_SEED, 2000)), withSeed('deterministic'));
  assert.notEqual(show(requests), show(hostileRequests(map, TEST_SEED + 1, 2000)));
  assert.deepEqual([...new Set(requests.map((r) => r.kind))].sort(), [...HOSTILE_KINDS].sort());
  const targets = new Set(requests.map((r) => r.target));
  for (const entry of map) assert.ok(targets.has(entry.name), withSeed(`no request aimed at ${entry.name}`));
});

test('planner layouts start on 2 MiB in the entry they aim at; each rule kind breaks its rule', () => {
  const map = parseIomem(IOMEM);
  for (const { kind, target, request } of hostileRequests(map, TEST_SEED, 1100)) {
    if (request.kind !== 'add') continue;
    const r = request.report;
    if (kind === 'planner') {
      assert.equal(r.spfn % 0x200n, 0n, withSeed(`planner layout at ${r.spfn.toString(16)}`));
      assert.ok(map.some((entry) => entry.name === target && r.spfn <= (entry.end - 1n) >> 12n), withSeed(`${target}: ${r.spfn.toString(16)}`));
      assert.ok(r.spfn < r.rsvSpfn || r.spfn === r.rsvSpfn);
    }
    if (kind === 'rule-1') assert.ok(r.dataEpfn === r.dataSpfn || r.epfn === r.spfn);
    if (kind === 'rule-3') assert.ok(r.dataSpfn < r.rsvEpfn);
    if (kind === 'rule-4') assert.equal(r.rsvEpfn - r.rsvSpfn, 1n);
    if (kind === 'rule-6') assert.notEqual(r.spfn % 0x200n, 0n);
  }
});
