// The controller's parts on their own: the pure event router and the daemon's lifecycle.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Lifecycle, type Component } from '../src/daemon/lifecycle.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { routeEvent } from '../src/daemon/controller.js';
import type { Outcome } from '../src/daemon/decide.js';
import { STATUS_SPACING_MS, StatusPublisher } from '../src/daemon/status-publisher.js';
import { recordingLogger, recordingNotifier } from '../fixtures/daemon-host.js';

function event(subsystem: string, sysname: string, action = 'change'): DeviceEvent {
  return { action, subsystem, sysname, syspath: `/sys/devices/x/${sysname}` };
}

describe('the event router', () => {
  const cases: [DeviceEvent, ReturnType<typeof routeEvent>][] = [
    [event('block', 'pmem0', 'add'), { kind: 'device', key: 'pmem0', removal: false }],
    [event('block', 'pmem1.2', 'remove'), { kind: 'device', key: 'pmem1.2', removal: true }],
    [event('block', 'pmem0p3', 'remove'), { kind: 'device', key: 'pmem0', removal: false }],
    [event('block', 'sda'), null],
    [event('block', 'pmem0s'), null],
    [event('nd', 'namespace0.0', 'bind'), { kind: 'namespace', sysname: 'namespace0.0', syspath: '/sys/devices/x/namespace0.0', gone: false }],
    [event('nd', 'namespace0.0', 'unbind'), { kind: 'namespace', sysname: 'namespace0.0', syspath: '/sys/devices/x/namespace0.0', gone: true }],
    [event('nd', 'namespace2.1', 'remove'), { kind: 'namespace', sysname: 'namespace2.1', syspath: '/sys/devices/x/namespace2.1', gone: true }],
    [event('nd', 'region0'), null],
    [event('nd', 'pfn0.0'), null],
  ];
  for (const [input, expected] of cases) {
    test(`${input.subsystem} ${input.action} ${input.sysname}`, () => {
      assert.deepEqual(routeEvent(input), expected);
    });
  }
});

describe('the lifecycle', () => {
  function component(name: string, calls: string[], fails: 'start' | 'stop' | null = null): Component {
    return {
      name,
      async start() {
        calls.push(`start ${name}`);
        if (fails === 'start') throw new Error(`${name} broke`);
      },
      async stop() {
        calls.push(`stop ${name}`);
        if (fails === 'stop') throw new Error(`${name} broke`);
      },
    };
  }

  test('starts in order, says READY after the last, stops in reverse between STOPPING and the end of the watchdog', async () => {
    const calls: string[] = [];
    const notifier = recordingNotifier();
    const lifecycle = new Lifecycle([component('a', calls), component('b', calls), component('c', calls)], recordingLogger(), notifier, () => 'pmem devices: 1 reported');
    await lifecycle.start();
    assert.deepEqual(calls, ['start a', 'start b', 'start c']);
    assert.deepEqual(notifier.sent, ['READY=1\nSTATUS=pmem devices: 1 reported']);
    await lifecycle.stop();
    assert.deepEqual(calls.slice(3), ['stop c', 'stop b', 'stop a']);
    assert.deepEqual(notifier.sent.slice(1), ['STOPPING=1']);
  });

  test('a component that fails is logged on its own; the others start and stop; a failed start is not stopped', async () => {
    const calls: string[] = [];
    const log = recordingLogger();
    const lifecycle = new Lifecycle([component('a', calls), component('metrics', calls, 'start'), component('c', calls, 'stop')], log, recordingNotifier(), () => '');
    await lifecycle.start();
    await lifecycle.stop();
    assert.deepEqual(calls, ['start a', 'start metrics', 'start c', 'stop c', 'stop a']);
    assert.deepEqual(log.entries.map((entry) => [entry.level, entry.fields.component, entry.message]), [
      ['error', 'metrics', 'metrics did not start: metrics broke'],
      ['error', 'c', 'c did not stop cleanly: c broke'],
    ]);
  });
});

describe('STATUS= from the status publisher', () => {
  const absent: Outcome = { state: 'absent', reason: 'no-superblock', catalog: 'absent', severity: 'info', message: 'absent' };
  const rejected: Outcome = { state: 'rejected', reason: 'bad-checksum', catalog: 'rejected-device', severity: 'error', message: 'rejected' };

  function publisher(): { status: StatusPublisher; sent: string[] } {
    const notifier = recordingNotifier();
    const status = new StatusPublisher(
      { saveState: async () => {}, log: recordingLogger(), notifier, now: () => new Date() },
      { ledger: () => [], capability: () => null },
      null,
    );
    return { status, sent: notifier.sent };
  }

  test('nothing during coldplug; after it, a burst of changes sends one line with the last summary', async () => {
    const { status, sent } = publisher();
    status.publish('pmem0', absent, null);
    status.publish('pmem1', absent, null);
    await status.markReady();
    await new Promise((resolve) => setTimeout(resolve, STATUS_SPACING_MS + 50));
    assert.deepEqual(sent, []);
    status.publish('pmem0', rejected, null);
    status.publish('pmem2', absent, null);
    status.publish('pmem1', rejected, null);
    assert.deepEqual(sent, [], 'not at once');
    await new Promise((resolve) => setTimeout(resolve, STATUS_SPACING_MS + 50));
    assert.deepEqual(sent, ['STATUS=pmem devices: 1 absent, 2 rejected']);
    await status.stop();
  });

  test('a line still due when the daemon stops is dropped (STOPPING=1 follows)', async () => {
    const { status, sent } = publisher();
    await status.markReady();
    status.publish('pmem0', absent, null);
    await status.stop();
    await new Promise((resolve) => setTimeout(resolve, STATUS_SPACING_MS + 50));
    assert.deepEqual(sent, []);
  });
});
