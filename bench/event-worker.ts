// Child process for items 3 and 4: the controller in this process with the real sysfs reader,
// device reader, state store, logger (JSON lines to /dev/null) and the real HypercallBridge over
// koffi into the test hypervisor; only the udev source is replaced by the synthetic event mix.
//
//   node --expose-gc dist/bench/event-worker.js latency '<host JSON>' EVENTS SEED
//   node --expose-gc dist/bench/event-worker.js memory  '<host JSON>' EVENTS SEED CHECKPOINT BUDGET_MS
//   node --expose-gc dist/bench/event-worker.js slow    '<host JSON>' ROUNDS SEED DELAY_MS
//
// latency: every device starts unplugged and arrives by hotplug events, so each prepared one is
// reported by an event; prints per-event timings. memory: coldplug of every device, then the mix;
// prints the resident set after coldplug and at each checkpoint, after full collections. slow:
// coldplug with a few prepared devices left out, counting the ledger's writes; then, round by
// round, one of them is plugged in with its add made slow in the test hypervisor
// (TEST_XEN_SLOW_SPFN), and while Xen works on it events for other devices arrive, among them the
// hotplug of another prepared device, whose add must wait for Xen; prints their timings.
// One JSON document on stdout.

import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';

import { Controller, type DaemonPorts } from '../src/daemon/controller.js';
import type { DeviceEvent } from '../src/daemon/ports.js';
import { createLogger, loadPino, type DaemonLogger, type LogFields } from '../src/daemon/log.js';
import type { SysfsTree } from '../fixtures/sysfs-tree.js';
import { DaemonHost, testConfig } from '../fixtures/daemon-host.js';
import { blockEvent, eventMix, LatencyTracker, namespaceEvent, type EventTiming, type PlannedEvent } from './events.js';
import { seededRandom } from './stats.js';
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

/** What the slow run watches besides the tracker: adds as they begin, and the ledger's writes. */
interface PortHooks {
  addStarted?(device: string | undefined): void;
  ledgerWrite?(lines: number): void;
}

function timedPorts(host: DaemonHost, tracker: LatencyTracker, deviceBySpfn: Map<bigint, string>, hooks: PortHooks = {}): DaemonPorts {
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
      check: (report, added) => bridge.check(report, added),
      held: () => bridge.held(),
      describe: (report) => bridge.describe(report),
      interfaceName: () => bridge.interfaceName(),
      report: async (request) => {
        const device = deviceBySpfn.get(request.spfn);
        hooks.addStarted?.(device);
        const answer = await bridge.report(request);
        if (device !== undefined) tracker.hypercallMade(device, performance.now());
        return answer;
      },
    },
    recordLedger: (steps) => {
      hooks.ledgerWrite?.(steps.length);
      return base.recordLedger(steps);
    },
  };
}

function hostFrom(spec: WorkerHost): DaemonHost {
  const tree: SysfsTree = { roots: { sysRoot: spec.sysRoot, devRoot: spec.devRoot }, regionDirs: new Map(), namespaces: new Map() };
  const host = new DaemonHost(spec.dir, tree, spec.library);
  host.useXenInProcess();
  return host;
}

/** The events handed to the controller whose work is not done yet (handleEvent resolves when it is). */
const inFlight = new Set<Promise<void>>();

function handOver(controller: Controller, event: DeviceEvent): void {
  const work = controller.handleEvent(event).finally(() => inFlight.delete(work));
  inFlight.add(work);
}

/** Until every event handed over has been acted on (retries that fire meanwhile included when they come from them). */
async function drained(): Promise<void> {
  while (inFlight.size > 0) await Promise.all([...inFlight]);
}

async function settle(): Promise<void> {
  await drained();
  // State writes are not work the controller waits for; let the last one land.
  await sleep(100);
  await drained();
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
      handOver(controller, planned.event);
      sent++;
    }
    if ((await onProgress(sent)) === false) break;
    // Half the bursts find the daemon idle; the others land while the last one is being decided.
    idle = (coin++ & 1) === 0;
    if (idle) await drained();
    else await nextTurn();
  }
  await settle();
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
    await controller.start();
    await settle();
    const afterColdplug = measure(0);
    const checkpoints: MemoryCheckpoint[] = [];
    let nextCheckpoint = every;
    const sent = await runMix(host, controller, tracker, spec, present, total, seed, async (sent) => {
      if (sent < nextCheckpoint) return true;
      nextCheckpoint += every;
      await settle();
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

export interface SlowResult {
  rounds: number;
  delayMs: number;
  /** Coldplug before the rounds: devices reported, and the ledger's writes (each one fdatasync) and lines. */
  coldplug: { devices: number; reported: number; ledgerWrites: number; ledgerLines: number; ms: number };
  /** Per decided event that arrived during a slow add: [group, decision ms]. group: other, queued-add, slow. */
  timings: [string, number][];
  /** Events handed to the controller while a slow add was under way. */
  eventsDuringCalls: number;
  /** Longest gap between 5 ms ticks of the event loop during the rounds. */
  worstLoopGapMs: number;
  /** Latest a 100 ms keep-alive timer (the watchdog's kind) fired during the rounds. */
  worstTimerLateMs: number;
  /** Successful adds per device over the run: each must be 1 for the devices reported. */
  duplicateAdds: number;
  wallMs: number;
}

/** A device's hotplug, in the kernel's order: nd add, the block disk add, nd bind. */
function hotplugEvents(device: string): PlannedEvent[] {
  return [namespaceEvent('add', device), blockEvent('add', device, device, 'disk'), namespaceEvent('bind', device)];
}

async function slow(spec: WorkerHost, rounds: number, seed: number, delayMs: number): Promise<SlowResult> {
  const host = hostFrom(spec);
  const random = seededRandom(seed);
  const group = new Map<string, string>();
  const timings: [string, number][] = [];
  const tracker = new LatencyTracker((timing: EventTiming) => {
    const name = group.get(timing.device);
    if (name !== undefined) timings.push([name, timing.decisionMs]);
  });
  const deviceBySpfn = new Map(Object.entries(spec.deviceBySpfn).map(([spfn, device]) => [BigInt(spfn), device]));
  const spfnOf = new Map([...deviceBySpfn].map(([spfn, device]) => [device, spfn]));
  // Per round one slow device and one whose add has to wait for it, both kept out of coldplug.
  const held = spec.prepared.slice(-2 * rounds);
  const slowDevices = held.slice(0, rounds);
  const queuedDevices = held.slice(rounds);
  for (const device of held) await setPresent(host, device, false);
  let addsBegun: (string | undefined)[] = [];
  let ledgerWrites = 0;
  let ledgerLines = 0;
  const ports = timedPorts(host, tracker, deviceBySpfn, {
    addStarted: (device) => { addsBegun.push(device); },
    ledgerWrite: (lines) => { ledgerWrites++; ledgerLines += lines; },
  });
  // Held devices are out of sysfs's block class (setPresent) and out of the namespace listing.
  const out = new Set(held);
  const list = ports.listNamespaces;
  ports.listNamespaces = async () => (await list()).filter((model) => !out.has(model.block?.name ?? ''));
  const controller = new Controller(testConfig(), ports, null);
  const started = performance.now();
  const coldplugStarted = performance.now();
  await controller.start();
  const coldplug = {
    devices: spec.devices.length - held.length,
    reported: controller.status.snapshot().devices.filter((record) => record.state === 'reported').length,
    ledgerWrites, ledgerLines, ms: performance.now() - coldplugStarted,
  };
  await settle();
  const present = spec.devices.filter((device) => !held.includes(device));

  let worstLoopGapMs = 0;
  let last = performance.now();
  const loop = setInterval(() => {
    const now = performance.now();
    worstLoopGapMs = Math.max(worstLoopGapMs, now - last);
    last = now;
  }, 5);
  let worstTimerLateMs = 0;
  let due = performance.now() + 100;
  const keepAlive = setInterval(() => {
    const now = performance.now();
    worstTimerLateMs = Math.max(worstTimerLateMs, now - due);
    due = now + 100;
  }, 100);
  let eventsDuringCalls = 0;
  const send = (planned: PlannedEvent, name: string): void => {
    group.set(planned.device, name);
    tracker.eventSent(planned, 'change', performance.now(), false);
    handOver(controller, planned.event);
  };
  try {
    for (let round = 0; round < rounds; round++) {
      const slowDevice = slowDevices[round]!;
      process.env.TEST_XEN_SLOW_SPFN = '0x' + spfnOf.get(slowDevice)!.toString(16);
      process.env.TEST_XEN_DELAY_MS = String(delayMs);
      await setPresent(host, slowDevice, true);
      out.delete(slowDevice);
      addsBegun = [];
      for (const planned of hotplugEvents(slowDevice)) send(planned, 'slow');
      const waitUntil = performance.now() + 10_000;
      while (!addsBegun.includes(slowDevice)) {
        if (performance.now() > waitUntil) { const record = controller.status.snapshot().devices.find((each) => each.device === slowDevice); throw new Error(`${slowDevice}'s add never began: ${record ? `${record.state} ${record.reason}: ${record.message}` : 'no record'}`); }
        await sleep(1);
      }
      // During the add: a change event for another device every few milliseconds, and once the
      // hotplug of another prepared device, whose add Xen can only take after this one.
      const queued = queuedDevices[round]!;
      const until = performance.now() + delayMs * 0.8;
      let queuedSent = false;
      while (performance.now() < until) {
        if (!queuedSent && performance.now() > until - delayMs * 0.5) {
          await setPresent(host, queued, true);
          out.delete(queued);
          for (const planned of hotplugEvents(queued)) send(planned, 'queued-add');
          eventsDuringCalls += 3;
          queuedSent = true;
        }
        const device = present[Math.floor(random() * present.length)]!;
        send(blockEvent('change', device, device, 'disk'), 'other');
        eventsDuringCalls++;
        await sleep(2 + Math.floor(random() * 6));
      }
      await drained();
      present.push(slowDevice, queued);
    }
  } finally {
    clearInterval(loop);
    clearInterval(keepAlive);
    delete process.env.TEST_XEN_SLOW_SPFN;
  }
  await settle();
  const oks = new Map<bigint, number>();
  for (const call of host.regionAdds()) if (call.result === 'OK') oks.set(call.spfn!, (oks.get(call.spfn!) ?? 0) + 1);
  const duplicateAdds = [...oks.values()].filter((count) => count > 1).length;
  await controller.stop();
  for (const device of held) await setPresent(host, device, true).catch(() => undefined);
  return { rounds, delayMs, coldplug, timings, eventsDuringCalls, worstLoopGapMs, worstTimerLateMs, duplicateAdds, wallMs: performance.now() - started };
}

async function main(): Promise<void> {
  await loadPino();
  const [mode, hostJson, eventsText, seedText, everyText, budgetText] = process.argv.slice(2);
  const spec = JSON.parse(hostJson ?? '{}') as WorkerHost;
  const total = Number(eventsText);
  const seed = Number(seedText ?? 1);
  let result: LatencyResult | MemoryResult | SlowResult;
  if (mode === 'latency') result = await latency(spec, total, seed);
  else if (mode === 'slow') result = await slow(spec, total, seed, Number(everyText ?? 250));
  else if (mode === 'memory') result = await memory(spec, total, seed, Number(everyText ?? total), Number(budgetText ?? Infinity));
  else throw new Error(`unknown mode ${mode}: latency, memory or slow`);
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
