// Child process for items 3 and 4: the controller in this process with the real sysfs reader,
// device reader, state store, logger (JSON lines to /dev/null) and the real HypercallBridge over
// koffi into the test hypervisor; only the udev source is replaced by the synthetic event mix.
//
//   node --expose-gc dist/bench/event-worker.js latency '<host JSON>' EVENTS SEED
//   node --expose-gc dist/bench/event-worker.js memory  '<host JSON>' EVENTS SEED CHECKPOINT BUDGET_MS
//
// latency: every device starts unplugged and arrives by hotplug events, so each prepared one is
// reported by an event; prints per-event timings. memory: coldplug of every device, then the mix;
// prints the resident set after coldplug and at each checkpoint, after full collections.
// One JSON document on stdout.

import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';

import { Controller, type DaemonPorts } from '../src/daemon/controller.js';
import { createLogger, type DaemonLogger, type LogFields } from '../src/daemon/log.js';
import type { SysfsTree } from '../fixtures/sysfs-tree.js';
import { DaemonHost, testConfig } from '../fixtures/daemon-host.js';
import { eventMix, LatencyTracker, type EventTiming } from './events.js';
import { setPresent } from './hosts.js';

export interface WorkerHost {
  dir: string;
  sysRoot: string;
  devRoot: string;
  library: string;
  devices: string[];
  prepared: string[];
  /** Region start PFN (hex) → device. */
  deviceBySpfn: Record<string, string>;
}

export interface LatencyResult {
  events: number;
  ignored: number;
  passes: number;
  hypercalls: number;
  expectedHypercalls: number;
  /** [kind, 1 if it arrived at an idle controller else 0, decision ms, hypercall ms or -1] per decided event. */
  timings: [string, number, number, number][];
  wallMs: number;
}

export interface MemoryCheckpoint {
  events: number;
  rssBytes: number;
  heapUsedBytes: number;
}

export interface MemoryResult {
  /** Events sent: fewer than asked when the time budget ran out first (at a checkpoint). */
  events: number;
  afterColdplug: MemoryCheckpoint;
  checkpoints: MemoryCheckpoint[];
  hypercalls: number;
  wallMs: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function timedPorts(host: DaemonHost, tracker: LatencyTracker, deviceBySpfn: Map<bigint, string>): DaemonPorts {
  const real = createLogger({ level: 'info', env: {}, journal: null, destination: pino.destination({ dest: '/dev/null', sync: true }) });
  const passEnd = (fields: LogFields): void => {
    const device = fields.device;
    if (typeof device === 'string' && 'state' in fields) tracker.passEnded(device, performance.now());
  };
  const log: DaemonLogger = {
    sink: real.sink,
    flush: () => real.flush(),
    debug: (fields, message) => { real.debug(fields, message); passEnd(fields); },
    info: (fields, message) => { real.info(fields, message); passEnd(fields); },
    notice: (fields, message) => { real.notice(fields, message); passEnd(fields); },
    warn: (fields, message) => { real.warn(fields, message); passEnd(fields); },
    error: (fields, message) => { real.error(fields, message); passEnd(fields); },
  };
  const base = host.ports({ log });
  const bridge = base.bridge;
  return {
    ...base,
    readByBlockName: (name) => {
      tracker.passStarted(name, performance.now());
      return base.readByBlockName(name);
    },
    bridge: {
      capability: () => bridge.capability(),
      report: (request, alreadyReported) => {
        const answer = bridge.report(request, alreadyReported);
        const device = deviceBySpfn.get(request.spfn);
        if (device !== undefined) tracker.hypercallMade(device, performance.now());
        return answer;
      },
    },
  };
}

function hostFrom(spec: WorkerHost): DaemonHost {
  const tree: SysfsTree = { roots: { sysRoot: spec.sysRoot, devRoot: spec.devRoot }, regionDirs: new Map(), namespaces: new Map() };
  const host = new DaemonHost(spec.dir, tree, spec.library);
  host.useXenInProcess();
  return host;
}

async function settle(controller: Controller): Promise<void> {
  await controller.idle();
  // State writes are not work the controller waits for; let the last one land.
  await sleep(100);
  await controller.idle();
}

function measure(events: number): MemoryCheckpoint {
  if (!gc) throw new Error('run with --expose-gc: the resident set is measured after full collections');
  gc();
  gc();
  const usage = process.memoryUsage();
  return { events, rssBytes: usage.rss, heapUsedBytes: usage.heapUsed };
}

async function runMix(
  host: DaemonHost, controller: Controller, tracker: LatencyTracker, spec: WorkerHost,
  present: Set<string>, total: number, seed: number, onProgress: (sent: number) => Promise<boolean | void>,
  pluggedIn: Set<string> = new Set(),
): Promise<number> {
  const mix = eventMix({ seed, devices: spec.devices, partitioned: new Set(spec.prepared), present });
  let sent = 0;
  let coin = 0;
  let idle = true;
  for (const burst of mix) {
    if (sent >= total) break;
    for (const change of burst.presence) {
      await setPresent(host, change.device, change.present);
      if (change.present) {
        present.add(change.device);
        pluggedIn.add(change.device);
      } else {
        present.delete(change.device);
      }
    }
    for (const planned of burst.events.slice(0, total - sent)) {
      tracker.eventSent(planned, burst.kind, performance.now(), idle);
      controller.handleEvent(planned.event);
      sent++;
    }
    if ((await onProgress(sent)) === false) break;
    // Half the bursts find the daemon idle; the others land while the last one is being decided.
    idle = (coin++ & 1) === 0;
    if (idle) await controller.idle();
    else await nextTurn();
  }
  await settle(controller);
  return sent;
}

async function restoreAll(host: DaemonHost, spec: WorkerHost, present: Set<string>): Promise<void> {
  for (const device of spec.devices) if (!present.has(device)) await setPresent(host, device, true);
}

async function latency(spec: WorkerHost, total: number, seed: number): Promise<LatencyResult> {
  const host = hostFrom(spec);
  const timings: [string, number, number, number][] = [];
  const tracker = new LatencyTracker((timing: EventTiming) => {
    timings.push([timing.kind, timing.arrivedIdle ? 1 : 0, timing.decisionMs, timing.hypercallMs ?? -1]);
  });
  const deviceBySpfn = new Map(Object.entries(spec.deviceBySpfn).map(([spfn, device]) => [BigInt(spfn), device]));
  const present = new Set<string>();
  for (const device of spec.devices) await setPresent(host, device, false);
  const controller = new Controller(testConfig(), timedPorts(host, tracker, deviceBySpfn), null);
  await controller.probeHypervisor();
  const started = performance.now();
  try {
    const pluggedIn = new Set<string>();
    const sent = await runMix(host, controller, tracker, spec, present, total, seed, async () => undefined, pluggedIn);
    const wallMs = performance.now() - started;
    const undecided = tracker.undecided();
    if (undecided > 0) throw new Error(`${undecided} events were never decided`);
    // Every prepared device the mix plugged in is reported once, by the pass an event started.
    const expectedHypercalls = spec.prepared.filter((device) => pluggedIn.has(device)).length;
    return { events: sent, ignored: tracker.ignored, passes: tracker.passes, hypercalls: tracker.hypercalls, expectedHypercalls, timings, wallMs };
  } finally {
    await controller.stop();
    await restoreAll(host, spec, present);
  }
}

async function memory(spec: WorkerHost, total: number, seed: number, every: number, budgetMs: number): Promise<MemoryResult> {
  const host = hostFrom(spec);
  const tracker = new LatencyTracker(() => undefined);
  const deviceBySpfn = new Map(Object.entries(spec.deviceBySpfn).map(([spfn, device]) => [BigInt(spfn), device]));
  const controller = new Controller(testConfig(), timedPorts(host, tracker, deviceBySpfn), null);
  const started = performance.now();
  const present = new Set(spec.devices);
  try {
    await controller.probeHypervisor();
    await controller.coldplug();
    await settle(controller);
    const afterColdplug = measure(0);
    const checkpoints: MemoryCheckpoint[] = [];
    let nextCheckpoint = every;
    const sent = await runMix(host, controller, tracker, spec, present, total, seed, async (sent) => {
      if (sent < nextCheckpoint) return true;
      nextCheckpoint += every;
      await settle(controller);
      checkpoints.push(measure(sent));
      return performance.now() - started < budgetMs;
    });
    if (checkpoints.at(-1)?.events !== sent) checkpoints.push(measure(sent));
    return { events: sent, afterColdplug, checkpoints, hypercalls: tracker.hypercalls, wallMs: performance.now() - started };
  } finally {
    await controller.stop();
    await restoreAll(host, spec, present);
  }
}

async function main(): Promise<void> {
  const [mode, hostJson, eventsText, seedText, everyText, budgetText] = process.argv.slice(2);
  const spec = JSON.parse(hostJson ?? '{}') as WorkerHost;
  const total = Number(eventsText);
  const seed = Number(seedText ?? 1);
  let result: LatencyResult | MemoryResult;
  if (mode === 'latency') result = await latency(spec, total, seed);
  else if (mode === 'memory') result = await memory(spec, total, seed, Number(everyText ?? total), Number(budgetText ?? Infinity));
  else throw new Error(`unknown mode ${mode}: latency or memory`);
  // stdout to a pipe is asynchronous: exit only once the whole document is out.
  await new Promise<void>((resolve) => process.stdout.write(JSON.stringify(result) + '\n', () => resolve()));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`event-worker: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
