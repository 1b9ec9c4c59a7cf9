// The controller's parts on their own: the pure event router and the daemon's lifecycle.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Lifecycle, type Component } from '../src/daemon/lifecycle.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { routeEvent } from '../src/daemon/router.js';
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
