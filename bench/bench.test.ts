// Tests of the benchmark's own arithmetic and bookkeeping: if these are wrong, every figure in
// docs/benchmarks.md is. Run: npm run build && node --test dist/bench/bench.test.js

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { eventMix, LatencyTracker, type EventTiming, type PlannedEvent } from './events.js';
import { hotplugTimings, parseMonitor } from './lab-hotplug.js';
import { median, pairedRatios, quantile, seededRandom, spread } from './stats.js';

describe('stats', () => {
  test('quantiles interpolate between ranks, whatever the input order', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1]), 2.5);
    assert.equal(quantile([10, 20, 30, 40, 50], 0.99), 49.6);
    assert.equal(quantile([7], 0.99), 7);
    assert.throws(() => quantile([], 0.5), RangeError);
    assert.throws(() => quantile([1], 1.5), RangeError);
  });

  test('spread gives median, extremes and quartiles', () => {
    assert.deepEqual(spread([5, 1, 4, 2, 3]), { n: 5, median: 3, min: 1, max: 5, q1: 2, q3: 4 });
  });

  test('ratios are paired run by run and need equal counts', () => {
    assert.deepEqual(pairedRatios([2, 9], [1, 3]), [2, 3]);
    assert.throws(() => pairedRatios([1], [1, 2]), RangeError);
  });

  test('the seeded generator repeats itself and stays in [0, 1)', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const drawn = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(drawn, Array.from({ length: 1000 }, () => b()));
    assert.ok(drawn.every((value) => value >= 0 && value < 1));
    assert.notDeepEqual(drawn.slice(0, 5), Array.from({ length: 5 }, seededRandom(43)));
  });
});

function planned(device: string, decides = true): PlannedEvent {
  return { event: { action: 'change', subsystem: 'block', sysname: device, syspath: `/sys/block/${device}` }, device, decides };
}

describe('LatencyTracker', () => {
  test('an event is decided by the first pass that began after it, not the one already running', () => {
    const timings: EventTiming[] = [];
    const tracker = new LatencyTracker((timing) => timings.push(timing));
    tracker.eventSent(planned('pmem0'), 'change', 0, true);
    tracker.passStarted('pmem0', 1);
    tracker.eventSent(planned('pmem0'), 'repeat', 2, false);
    tracker.passEnded('pmem0', 5);
    assert.deepEqual(timings.map((t) => [t.kind, t.decisionMs]), [['change', 5]]);
    tracker.passStarted('pmem0', 6);
    tracker.hypercallMade('pmem0', 7);
    tracker.passEnded('pmem0', 10);
    assert.deepEqual(timings.map((t) => [t.kind, t.decisionMs, t.hypercallMs]), [['change', 5, null], ['repeat', 8, 5]]);
    assert.equal(tracker.undecided(), 0);
    assert.equal(tracker.passes, 2);
    assert.equal(tracker.hypercalls, 1);
  });

  test('ignored events are counted apart, and an event without a pass stays undecided', () => {
    const tracker = new LatencyTracker(() => undefined);
    tracker.eventSent(planned('pmem1', false), 'unplug', 0, true);
    tracker.eventSent(planned('pmem2'), 'change', 0, true);
    assert.equal(tracker.ignored, 1);
    assert.equal(tracker.undecided(), 1);
  });

  test('a second lookup inside one pass does not open another pass', () => {
    const timings: EventTiming[] = [];
    const tracker = new LatencyTracker((timing) => timings.push(timing));
    tracker.eventSent(planned('pmem0'), 'change', 0, true);
    tracker.passStarted('pmem0', 1);
    tracker.passStarted('pmem0', 2);
    tracker.passEnded('pmem0', 3);
    assert.equal(timings.length, 1);
    assert.equal(timings[0]!.decisionMs, 3);
  });
});

describe('eventMix', () => {
  test('plugs every absent device in, never unplugs an absent one, and repeats for a seed', () => {
    const devices = Array.from({ length: 20 }, (_, id) => `pmem${id}`);
    const run = (seed: number) => {
      const present = new Set<string>();
      const kinds: string[] = [];
      let events = 0;
      const mix = eventMix({ seed, devices, partitioned: new Set(['pmem0']), present: new Set() });
      for (let i = 0; i < 400; i++) {
        const burst = mix.next().value!;
        kinds.push(burst.kind);
        for (const change of burst.presence) {
          assert.equal(present.has(change.device), !change.present, `${burst.kind} of ${change.device}`);
          if (change.present) present.add(change.device);
          else present.delete(change.device);
        }
        for (const each of burst.events) {
          if (each.event.action !== 'remove' && each.event.action !== 'unbind') {
            assert.ok(present.has(each.device), `${each.event.action} ${each.event.sysname} for a plugged-in device`);
          }
          events++;
        }
      }
      return { kinds, events, present };
    };
    const first = run(1);
    assert.deepEqual(run(1).kinds, first.kinds);
    assert.ok(first.events > 400);
    for (const kind of ['hotplug', 'unplug', 'change', 'partition', 'repeat', 'storm']) assert.ok(first.kinds.includes(kind), `the mix has ${kind} bursts`);
  });
});

describe('lab timing', () => {
  const monitor = [
    'monitor will print the received events for:',
    'KERNEL[100.250000] add      /devices/LNXSYSTM:00/ndbus0/region1/namespace1.0/block/pmem1 (block)',
    'UDEV  [100.300500] add      /devices/LNXSYSTM:00/ndbus0/region1/namespace1.0/block/pmem1 (block)',
    'UDEV  [100.310000] bind     /devices/LNXSYSTM:00/ndbus0/region1/namespace1.0 (nd)',
  ].join('\n');

  test('reads KERNEL and UDEV lines with their monotonic stamps', () => {
    const events = parseMonitor(monitor);
    assert.deepEqual(events.map((e) => [e.source, e.at, e.action, e.subsystem]), [
      ['KERNEL', 100.25, 'add', 'block'], ['UDEV', 100.3005, 'add', 'block'], ['UDEV', 100.31, 'bind', 'nd'],
    ]);
  });

  test('udevd time is kernel to udev; the daemon time is udev to its decision in the journal', () => {
    const journal = [
      JSON.stringify({ MESSAGE: 'starting', __MONOTONIC_TIMESTAMP: '99000000' }),
      JSON.stringify({ PMEM_DEVICE: 'pmem1', PMEM_STATE: 'unsupported', __MONOTONIC_TIMESTAMP: '100320500' }),
    ].join('\n');
    const timings = hotplugTimings(['pmem1'], parseMonitor(monitor), journal);
    assert.ok(Array.isArray(timings), String(timings));
    assert.equal(timings[0]!.device, 'pmem1');
    assert.ok(Math.abs(timings[0]!.udevdMs - 50.5) < 1e-6, `udevd ${timings[0]!.udevdMs}`);
    assert.ok(Math.abs(timings[0]!.daemonMs - 20) < 1e-6, `daemon ${timings[0]!.daemonMs}`);
    assert.match(String(hotplugTimings(['pmem2'], parseMonitor(monitor), journal)), /no kernel and udev add of pmem2/);
    assert.match(String(hotplugTimings(['pmem1'], parseMonitor(monitor), '')), /no decision for pmem1/);
  });
});
