#!/usr/bin/env node
// `npm run bench`: measures what issue 5 asks (coldplug at scale beside blkid, bytes read per
// device, event latency, memory; the lab's hotplug timing when the lab can run) and writes
// docs/benchmarks.md and docs/benchmarks.json.
//
//   node dist/bench/run.js [--quick] [--repeats N] [--out-dir DIR] [--scratch DIR] [--skip-lab]
//   node dist/bench/run.js --render docs/benchmarks.json   (rewrites benchmarks.md beside it, measures nothing)
//   node dist/bench/run.js --lab-only docs/benchmarks.json (measures the lab section again and rewrites both files)
//   node dist/bench/run.js --sections slow,latency,lab --from docs/benchmarks.json
//       (measures only the sections named; the others' figures come from the file given)
//
// Sections: coldplug (with blkid), io, latency, memory, slow (the slow hypervisor and the ledger's
// group commit, with the crash test), lab.
//
// --quick is a smoke run (small hosts, few events) that writes under the system temp directory
// unless --out-dir is given, so it never overwrites the published figures.

import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

import { blkidProbe, daemonColdplug, nodeBareStart, type DaemonColdplugRun } from './coldplug.js';
import { DEVICE_BYTES, makeBenchHost, useScratchRoot, type BenchHost } from './hosts.js';
import { ioPerDevice, type IoFigure } from './io-per-device.js';
import { labHotplug, type LabFigures } from './lab-hotplug.js';
import { describeMachine, type Machine } from './machine.js';
import { renderMarkdown } from './report.js';
import { pairedRatios, quantile, spread, type Spread } from './stats.js';
import { crashTest, type CrashTestFigure } from './crash-test.js';
import { groupCommit, type GroupCommitRow } from './group-commit.js';
import type { SlowResult } from './event-worker.js';
import { daemonMemoryRun, IDLE_MS } from './memory.js';
import { latencyRun, slowRun } from './workers.js';

export interface ColdplugRun {
  repeat: number;
  blkidMs: number;
  nodeMs: number;
  daemon: DaemonColdplugRun;
}

export interface ColdplugFigures {
  devices: number;
  runs: ColdplugRun[];
  blkidMs: Spread;
  nodeMs: Spread;
  firstLineMs: Spread;
  readyMs: Spread;
  /** start→READY less `node -e 0` of the same repeat: what is compared to blkid. */
  netMs: Spread;
  /** netMs / blkidMs, repeat by repeat. */
  netRatio: Spread;
  /** readyMs / blkidMs, repeat by repeat. */
  totalRatio: Spread;
  /** readyMs / nodeMs, repeat by repeat: the whole start against Node's own. */
  startRatio: Spread;
  /** (READY − first log line) / N. */
  perDeviceMs: Spread;
  rssMiB: Spread;
}

export interface BlkidModes {
  files: number;
  lowLevelMs: Spread;
  probeAllMs: Spread;
  /** probe-all / low-level on the same prepared files, repeat by repeat. */
  ratio: Spread;
}

export interface LatencyRunSummary {
  events: number;
  decided: number;
  ignored: number;
  passes: number;
  hypercalls: number;
  wallMs: number;
  decisionP50: number;
  decisionP99: number;
  hypercallEvents: number;
  hypercallP50: number;
  hypercallP99: number;
  idleSingleEvents: number;
  idleSingleP50: number;
  idleSingleP99: number;
  stormEvents: number;
  stormP50: number;
  stormP99: number;
}

export interface LatencyFigures {
  devices: number;
  runs: LatencyRunSummary[];
  decisionP50: Spread;
  decisionP99: Spread;
  hypercallP50: Spread;
  hypercallP99: Spread;
  idleSingleP50: Spread;
  idleSingleP99: Spread;
  stormP50: Spread;
  stormP99: Spread;
}

export interface MemoryFigures {
  devices: number;
  /** Events sent; below eventsAsked when the time budget ran out. */
  events: number;
  eventsAsked: number;
  afterColdplugMiB: number;
  /** After coldplug, once idle for idleMs. */
  afterColdplugIdleMiB: number;
  idleMs: number;
  /** VmRSS of the real xen-pmemd process, no forced collection: once quiet, and once idle for idleMs. */
  checkpoints: { events: number; rssMiB: number; idleRssMiB: number; heapUsedMiB: number | null; heapTotalMiB: number | null; externalMiB: number | null }[];
  /** RSS at the last checkpoint less RSS at the first at or after 10,000 events. */
  growthMiB: number;
  daemonRssAtReadyMiB: Spread | null;
  wallMs: number;
}

/** Goals 3 and 4: one add made slow in the test hypervisor while other devices' events arrive; the ledger's writes. */
export interface SlowFigures {
  devices: number;
  delayMs: number;
  runs: number;
  roundsPerRun: number;
  /** Event → decision of other devices' events that arrived during a slow add; per-run p50 and p99. */
  otherP50: Spread;
  otherP99: Spread;
  otherEvents: number;
  /** Event → decision of another prepared device's hotplug during the slow add: its add waits for Xen. */
  queuedAddP50: Spread;
  queuedAddEvents: number;
  /** The slow device's own block add → decision (its add included). */
  slowDecisionP50: Spread;
  worstLoopGapMs: Spread;
  worstTimerLateMs: Spread;
  eventsDuringCalls: number;
  duplicateAdds: number;
  /** Coldplug of the rest of the host before the rounds: reports and ledger writes (one fdatasync each). */
  coldplugDevices: number;
  coldplugReported: number;
  ledgerWrites: number;
  ledgerLines: number;
  crash: CrashTestFigure | null;
  /** The ledger's appends per line against per group, on tmpfs and on disk (bench/group-commit.ts). */
  groupCommit?: GroupCommitRow[];
}

export interface Goal {
  item: string;
  goal: string;
  measured: string;
  met: boolean | null;
  /** By how much a missed goal is missed, in words. */
  miss: string | null;
}

export interface BenchResults {
  machine: Machine;
  settings: {
    quick: boolean;
    repeats: number;
    sizes: number[];
    deviceBytes: number;
    latencyEvents: number;
    latencyRepeats: number;
    memoryEvents: number;
    memoryCheckpointEvery: number;
    scratch: string;
    wallMs: number;
    /** Sections whose figures come from an earlier run (--sections, --from), and that run. */
    reused?: { sections: string[]; date: string; commit: string };
  };
  coldplug: ColdplugFigures[];
  blkidModes: BlkidModes | null;
  io: IoFigure[];
  latency: LatencyFigures;
  memory: MemoryFigures;
  lab: LabFigures;
  /** Absent from results written before the section existed. */
  slow?: SlowFigures;
  goals: Goal[];
}

const MiB = 1024 * 1024;
/** What --sections can name. */
const SECTIONS = ['coldplug', 'io', 'latency', 'memory', 'slow', 'lab'];
/** The memory run stops at the first checkpoint after this, and the report says how far it got. */
const MEMORY_BUDGET_MS = 240_000;
const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function progress(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

async function coldplugAtScale(bench: BenchHost, sizes: number[], repeats: number): Promise<{ figures: ColdplugFigures[]; modes: BlkidModes }> {
  const runs = new Map<number, ColdplugRun[]>(sizes.map((n) => [n, []]));
  const largest = Math.max(...sizes);
  const preparedOfLargest = bench.devPaths.slice(0, largest).filter((_, index) => index % 2 === 0);
  const lowLevel: number[] = [];
  const probeAll: number[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    for (const n of sizes) {
      const paths = bench.devPaths.slice(0, n);
      const prepared = Math.ceil(n / 2);
      // Alternate which goes first, so neither always meets a warmer page cache.
      const blkidFirst = repeat % 2 === 0;
      const node = await nodeBareStart();
      const blkid = blkidFirst ? await blkidProbe(paths, prepared) : null;
      const daemon = await daemonColdplug(bench, n);
      const blkidAfter = blkid ?? await blkidProbe(paths, prepared);
      runs.get(n)!.push({ repeat, blkidMs: blkidAfter.ms, nodeMs: node.ms, daemon });
      progress(`coldplug N=${n} repeat ${repeat + 1}/${repeats}: blkid ${blkidAfter.ms.toFixed(0)} ms, node -e 0 ${node.ms.toFixed(0)} ms, xen-pmemd READY ${daemon.readyMs.toFixed(0)} ms`);
    }
    lowLevel.push((await blkidProbe(preparedOfLargest, preparedOfLargest.length, 'low-level')).ms);
    probeAll.push((await blkidProbe(preparedOfLargest, preparedOfLargest.length, 'probe-all')).ms);
  }
  const figures = sizes.map((n): ColdplugFigures => {
    const each = runs.get(n)!;
    const blkid = each.map((run) => run.blkidMs);
    const ready = each.map((run) => run.daemon.readyMs);
    const net = each.map((run) => run.daemon.readyMs - run.nodeMs);
    return {
      devices: n,
      runs: each,
      blkidMs: spread(blkid),
      nodeMs: spread(each.map((run) => run.nodeMs)),
      firstLineMs: spread(each.map((run) => run.daemon.firstLineMs)),
      readyMs: spread(ready),
      netMs: spread(net),
      netRatio: spread(pairedRatios(net, blkid)),
      totalRatio: spread(pairedRatios(ready, blkid)),
      startRatio: spread(pairedRatios(ready, each.map((run) => run.nodeMs))),
      perDeviceMs: spread(each.map((run) => (run.daemon.readyMs - run.daemon.firstLineMs) / n)),
      rssMiB: spread(each.map((run) => run.daemon.rssBytes / MiB)),
    };
  });
  return {
    figures,
    modes: { files: preparedOfLargest.length, lowLevelMs: spread(lowLevel), probeAllMs: spread(probeAll), ratio: spread(pairedRatios(probeAll, lowLevel)) },
  };
}

function percentiles(values: number[]): [number, number] {
  return values.length === 0 ? [NaN, NaN] : [quantile(values, 0.5), quantile(values, 0.99)];
}

async function eventLatency(bench: BenchHost, events: number, repeats: number): Promise<LatencyFigures> {
  const runs: LatencyRunSummary[] = [];
  for (let repeat = 0; repeat < repeats; repeat++) {
    const result = await latencyRun(bench, events, 1000 + repeat);
    if (result.hypercalls !== result.expectedHypercalls) {
      throw new Error(`the latency run made ${result.hypercalls} pmem_add, expected ${result.expectedHypercalls}`);
    }
    const decision = result.timings.map((timing) => timing[2]);
    const hypercall = result.timings.filter((timing) => timing[3] >= 0).map((timing) => timing[3]);
    const idleSingle = result.timings.filter((timing) => timing[1] === 1 && ['change', 'partition'].includes(timing[0])).map((timing) => timing[2]);
    const storm = result.timings.filter((timing) => timing[0] === 'storm').map((timing) => timing[2]);
    const [decisionP50, decisionP99] = percentiles(decision);
    const [hypercallP50, hypercallP99] = percentiles(hypercall);
    const [idleSingleP50, idleSingleP99] = percentiles(idleSingle);
    const [stormP50, stormP99] = percentiles(storm);
    runs.push({
      events: result.events, decided: result.timings.length, ignored: result.ignored, passes: result.passes,
      hypercalls: result.hypercalls, wallMs: result.wallMs,
      decisionP50, decisionP99, hypercallEvents: hypercall.length, hypercallP50, hypercallP99,
      idleSingleEvents: idleSingle.length, idleSingleP50, idleSingleP99, stormEvents: storm.length, stormP50, stormP99,
    });
    progress(`latency repeat ${repeat + 1}/${repeats}: ${result.events} events in ${(result.wallMs / 1000).toFixed(1)} s, event→decision p99 ${decisionP99.toFixed(1)} ms, event→pmem_add p99 ${hypercallP99.toFixed(1)} ms`);
  }
  const of = (pick: (run: LatencyRunSummary) => number): Spread => spread(runs.map(pick));
  return {
    devices: bench.devices.length,
    runs,
    decisionP50: of((run) => run.decisionP50),
    decisionP99: of((run) => run.decisionP99),
    hypercallP50: of((run) => run.hypercallP50),
    hypercallP99: of((run) => run.hypercallP99),
    idleSingleP50: of((run) => run.idleSingleP50),
    idleSingleP99: of((run) => run.idleSingleP99),
    stormP50: of((run) => run.stormP50),
    stormP99: of((run) => run.stormP99),
  };
}

async function memoryUse(bench: BenchHost, events: number, every: number, atReady: Spread | null): Promise<MemoryFigures> {
  const result = await daemonMemoryRun(bench, events, every, MEMORY_BUDGET_MS);
  const mib = (bytes: number | null): number | null => (bytes === null ? null : bytes / MiB);
  const checkpoints = result.checkpoints.map((point) => ({
    events: point.events, rssMiB: point.rssBytes / MiB, idleRssMiB: point.idleRssBytes / MiB,
    heapUsedMiB: mib(point.heapUsedBytes), heapTotalMiB: mib(point.heapTotalBytes), externalMiB: mib(point.externalBytes),
  }));
  const from = checkpoints.find((point) => point.events >= 10_000) ?? checkpoints[0]!;
  const last = checkpoints.at(-1)!;
  progress(`memory: ${(result.afterColdplug.idleRssBytes / MiB).toFixed(1)} MiB after coldplug, ${last.idleRssMiB.toFixed(1)} MiB after ${last.events} events (idle)`);
  return {
    devices: bench.devices.length,
    events: result.events,
    eventsAsked: events,
    afterColdplugMiB: result.afterColdplug.rssBytes / MiB,
    afterColdplugIdleMiB: result.afterColdplug.idleRssBytes / MiB,
    idleMs: IDLE_MS,
    checkpoints,
    growthMiB: last.idleRssMiB - from.idleRssMiB,
    daemonRssAtReadyMiB: atReady,
    wallMs: result.wallMs,
  };
}

const SLOW_DELAY_MS = 250;

async function slowHypervisor(bench: BenchHost, runs: number, rounds: number, crashKills: number): Promise<SlowFigures> {
  const results: SlowResult[] = [];
  for (let run = 0; run < runs; run++) {
    const result = await slowRun(bench, rounds, 2000 + run, SLOW_DELAY_MS);
    results.push(result);
    const other = result.timings.filter(([group]) => group === 'other').map(([, ms]) => ms);
    progress(`slow hypervisor run ${run + 1}/${runs}: ${other.length} other events during ${rounds} adds of ${SLOW_DELAY_MS} ms, p99 ${quantile(other, 0.99).toFixed(1)} ms; longest loop stall ${result.worstLoopGapMs.toFixed(1)} ms`);
  }
  const of = (group: string, q: number): Spread => spread(results.map((result) => quantile(result.timings.filter(([name]) => name === group).map(([, ms]) => ms), q)));
  const count = (group: string): number => results.reduce((sum, result) => sum + result.timings.filter(([name]) => name === group).length, 0);
  const first = results[0]!;
  const commits = await groupCommit(bench.host.dir, runs === 1 ? 1 : 5);
  for (const row of commits) progress(`group commit, ${row.where}, ${row.devices} devices: ${row.perLineMs.median.toFixed(2)} ms one line at a time, ${row.groupedMs.median.toFixed(2)} ms in two groups`);
  progress(`crash test: ${crashKills} kills`);
  const crash = crashKills > 0 ? await crashTest(crashKills) : null;
  if (crash) progress(`crash test: ${crash.passed ? 'passed' : 'FAILED'}: ${crash.summary}`);
  return {
    devices: bench.devices.length,
    delayMs: SLOW_DELAY_MS,
    runs,
    roundsPerRun: rounds,
    otherP50: of('other', 0.5),
    otherP99: of('other', 0.99),
    otherEvents: count('other'),
    queuedAddP50: of('queued-add', 0.5),
    queuedAddEvents: count('queued-add'),
    slowDecisionP50: of('slow', 0.5),
    worstLoopGapMs: spread(results.map((result) => result.worstLoopGapMs)),
    worstTimerLateMs: spread(results.map((result) => result.worstTimerLateMs)),
    eventsDuringCalls: results.reduce((sum, result) => sum + result.eventsDuringCalls, 0),
    duplicateAdds: results.reduce((sum, result) => sum + result.duplicateAdds, 0),
    coldplugDevices: first.coldplug.devices,
    coldplugReported: first.coldplug.reported,
    ledgerWrites: first.coldplug.ledgerWrites,
    ledgerLines: first.coldplug.ledgerLines,
    crash,
    groupCommit: commits,
  };
}

function x(value: number): string {
  return `${value.toFixed(2)}×`;
}

export function judgeGoals(results: Omit<BenchResults, 'goals'>): Goal[] {
  const goals: Goal[] = [];
  const largest = results.coldplug.at(-1)!;
  const smallest = results.coldplug[0]!;
  const netRatio = largest.netRatio.median;
  const netLimit = 1.0;
  goals.push({
    item: '1',
    goal: `coldplug of ${largest.devices} devices ≤ ${netLimit.toFixed(1)}× blkid (start→READY less Node's own start)`,
    measured: `${x(netRatio)} (${largest.netMs.median.toFixed(0)} ms vs ${largest.blkidMs.median.toFixed(0)} ms)`,
    met: netRatio <= netLimit,
    miss: netRatio <= netLimit ? null : `${(netRatio / netLimit).toFixed(2)}× the goal`,
  });
  // What a host with a handful of namespaces pays at every boot: the whole start, Node's included.
  const startRatio = smallest.startRatio.median;
  const startLimit = 2.5;
  goals.push({
    item: '1',
    goal: `start→READY of xen-pmemd at N = ${smallest.devices} ≤ ${startLimit.toFixed(1)}× \`node -e 0\``,
    measured: `${x(startRatio)} (${smallest.readyMs.median.toFixed(0)} ms vs ${smallest.nodeMs.median.toFixed(0)} ms)`,
    met: startRatio <= startLimit,
    miss: startRatio <= startLimit ? null : `${(startRatio / startLimit).toFixed(2)}× the goal`,
  });
  const flat = largest.perDeviceMs.median / smallest.perDeviceMs.median;
  goals.push({
    item: '1',
    goal: `time per device flat from N = ${smallest.devices} to ${largest.devices} (≤ 1.25× growth)`,
    measured: `${smallest.perDeviceMs.median.toFixed(2)} → ${largest.perDeviceMs.median.toFixed(2)} ms per device (${x(flat)})`,
    met: flat <= 1.25,
    miss: flat <= 1.25 ? null : `grows ${x(flat)} where 1.25× is allowed`,
  });
  const maxBytes = Math.max(...results.io.map((figure) => figure.bytesRead));
  const equal = ['prepared', 'blank'].every((content) => new Set(results.io.filter((figure) => figure.content === content).map((figure) => figure.bytesRead)).size === 1);
  const straceAgrees = results.io.every((figure) => figure.straceBytes === null || figure.straceBytes === figure.bytesRead);
  const bytesLimit = 25_600;
  goals.push({
    item: '6',
    goal: `bytes read per device equal for 1 GiB and 1 TiB, ≤ ${bytesLimit.toLocaleString('en')}`,
    measured: `${maxBytes} bytes at most; ${equal ? 'equal' : 'different'} across sizes; strace ${straceAgrees ? 'agrees' : 'disagrees'}`,
    met: equal && maxBytes <= bytesLimit && straceAgrees,
    miss: equal && maxBytes <= bytesLimit && straceAgrees ? null : 'see the table',
  });
  const slow = results.slow;
  if (slow) {
    const p99 = slow.otherP99.median;
    const free = slow.worstLoopGapMs.max <= 50 && slow.worstTimerLateMs.max <= 50;
    goals.push({
      item: '3',
      goal: `a slow hypervisor stalls nothing: with one add taking ${slow.delayMs} ms, events for other devices decided with p99 ≤ 5 ms; the event loop (watchdog, SIGTERM, udev intake) never waits for the call`,
      measured: `p99 ${p99.toFixed(2)} ms over ${slow.otherEvents} events; longest loop stall ${slow.worstLoopGapMs.max.toFixed(1)} ms, keep-alive timer at most ${slow.worstTimerLateMs.max.toFixed(1)} ms late (figure, a hypervisor that answers at once: event → pmem_add p99 ${results.latency.hypercallP99.median.toFixed(1)} ms, section 3)`,
      met: p99 <= 5 && free,
      miss: p99 <= 5 && free ? null : p99 > 5 ? `${(p99 / 5).toFixed(1)}× over the goal` : 'the loop stalled',
    });
  }
  if (slow) {
    const grouped = slow.ledgerWrites <= 2;
    const crashOk = slow.crash?.passed ?? null;
    goals.push({
      item: '4',
      goal: 'exactly-once at coldplug speed: one fdatasync for a batch of pending lines, one for their answers; the crash test (100 kills) finds every valid device reported exactly once',
      measured: `coldplug of ${slow.coldplugDevices} devices: ${slow.coldplugReported} reports in ${slow.ledgerWrites} ledger writes (${slow.ledgerLines} lines; one line and one fdatasync each before); crash test: ${slow.crash ? `${slow.crash.passed ? 'passed' : 'failed'}, ${slow.crash.summary}` : 'not run'}`,
      met: crashOk === null ? null : grouped && crashOk,
      miss: grouped && crashOk !== false ? null : !grouped ? `${slow.ledgerWrites} writes where 2 are the goal` : 'the crash test failed',
    });
  }
  const memory = results.memory;
  // Judged on the figures after idleness: what the daemon keeps resident while it waits, which is
  // most of its months; the figures read at the first quiet moment are beside them.
  const worst = Math.max(memory.afterColdplugIdleMiB, ...memory.checkpoints.map((point) => point.idleRssMiB));
  const busiest = Math.max(memory.afterColdplugMiB, ...memory.checkpoints.map((point) => point.rssMiB));
  const rssLimit = 64;
  goals.push({
    item: '2',
    goal: `RSS of the xen-pmemd process ≤ ${rssLimit} MiB after coldplug of ${memory.devices} devices and after ${memory.events.toLocaleString('en')} events (idle ${(memory.idleMs / 1000).toFixed(0)} s, no forced collection)`,
    measured: `${memory.afterColdplugIdleMiB.toFixed(1)} MiB after coldplug, ${memory.checkpoints.at(-1)!.idleRssMiB.toFixed(1)} MiB after the events, ${worst.toFixed(1)} MiB at most (at the first quiet moment: ${busiest.toFixed(1)} MiB at most)`,
    met: worst <= rssLimit,
    miss: worst <= rssLimit ? null : `${(worst - rssLimit).toFixed(1)} MiB over`,
  });
  const growthLimit = 2;
  goals.push({
    item: '2',
    goal: `no RSS growth from 10,000 to ${memory.events.toLocaleString('en')} events (≤ ${growthLimit} MiB, idle figures)`,
    measured: `${memory.growthMiB >= 0 ? '+' : ''}${memory.growthMiB.toFixed(1)} MiB`,
    met: memory.growthMiB <= growthLimit,
    miss: memory.growthMiB <= growthLimit ? null : `${(memory.growthMiB - growthLimit).toFixed(1)} MiB over`,
  });
  const lab = results.lab;
  const measured = lab.status === 'measured';
  // Hotplug by hotplug when the results have it: the two times come from the same event.
  const share = measured ? lab.ratio?.median ?? lab.daemonMs!.median / lab.udevdMs!.median : NaN;
  goals.push({
    item: '5',
    goal: 'hotplug in the lab: the daemon\'s decision comes less than half of udevd\'s own processing time after udevd is done with the event',
    measured: measured ? `daemon ${lab.daemonMs!.median.toFixed(0)} ms after udevd, udevd ${lab.udevdMs!.median.toFixed(0)} ms; ${x(share)} udevd's time${lab.ratio ? ', hotplug by hotplug' : ''}` : `pending: ${lab.reason}`,
    met: measured ? share < 0.5 : null,
    miss: measured && !(share < 0.5) ? `${x(share)} udevd's time where under 0.50× is the goal (${(share / 0.5).toFixed(1)}× over)` : null,
  });
  if (measured && lab.startup) {
    goals.push({
      item: '5',
      goal: 'the unit\'s start→READY measured, beside systemd-udevd\'s own start-up',
      measured: `xen-pmemd.service ${lab.startup.daemonMs.toFixed(0)} ms, systemd-udevd.service ${lab.startup.udevdMs.toFixed(0)} ms (systemd's timestamps in the Dom0)`,
      met: true,
      miss: null,
    });
  }
  // In the order of the goals' numbers (a stable sort keeps each goal's rows as pushed).
  return goals.sort((a, b) => Number(a.item) - Number(b.item));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      repeats: { type: 'string' },
      'out-dir': { type: 'string' },
      scratch: { type: 'string' },
      'skip-lab': { type: 'boolean' },
      render: { type: 'string' },
      'lab-only': { type: 'string' },
      sections: { type: 'string' },
      from: { type: 'string' },
      'crash-kills': { type: 'string' },
    },
  });
  const only = values.sections === undefined ? null : new Set(values.sections.split(','));
  const unknown = [...(only ?? [])].filter((name) => !SECTIONS.includes(name));
  if (unknown.length > 0) throw new Error(`--sections: no section ${unknown.join(', ')} (there are ${SECTIONS.join(', ')})`);
  const earlier = values.from === undefined ? null : JSON.parse(await readFile(values.from, 'utf8')) as BenchResults;
  const reused: string[] = [];
  /** Measures a section, or takes its figures from --from when --sections leaves it out. */
  const section = async <T>(name: string, measure: () => Promise<T>, kept: (results: BenchResults) => T): Promise<T> => {
    if (only === null || only.has(name)) return measure();
    if (earlier === null) throw new Error(`--sections leaves out ${name}: give --from FILE for its figures`);
    progress(`${name}: figures from ${values.from}`);
    reused.push(name);
    return kept(earlier);
  };
  if (values['lab-only'] !== undefined) {
    const path = values['lab-only'];
    const previous = JSON.parse(await readFile(path, 'utf8')) as BenchResults;
    const { goals: _stale, ...rest } = previous;
    const partial = { ...rest, lab: await labHotplug(progress) };
    const results: BenchResults = { ...partial, goals: judgeGoals(partial) };
    await writeFile(path, JSON.stringify(results, null, 2) + '\n');
    await writeFile(join(dirname(path), 'benchmarks.md'), renderMarkdown(results));
    return;
  }
  if (values.render !== undefined) {
    // The verdicts are judged again from the stored figures, so a change of a goal's wording or
    // threshold needs no new measurement.
    const { goals: _judged, ...figures } = JSON.parse(await readFile(values.render, 'utf8')) as BenchResults;
    const results: BenchResults = { ...figures, goals: judgeGoals(figures) };
    await writeFile(values.render, JSON.stringify(results, null, 2) + '\n');
    await writeFile(join(dirname(values.render), 'benchmarks.md'), renderMarkdown(results));
    return;
  }
  const quick = values.quick ?? false;
  const repeats = Number(values.repeats ?? (quick ? 2 : 3));
  const sizes = quick ? [16, 64] : [16, 256, 1024];
  const latencyEvents = quick ? 1000 : 10_000;
  const latencyRepeats = quick ? 1 : 2;
  const memoryEvents = quick ? 4000 : 100_000;
  const memoryEvery = quick ? 2000 : 10_000;
  const outDir = values['out-dir'] ?? (quick ? join(tmpdir(), 'xen-pmem-bench-quick') : join(REPO, 'docs'));
  const crashKills = Number(values['crash-kills'] ?? (quick ? 10 : 100));
  // A tmpfs, as /run is on a Dom0 and as pmem itself behaves: see hosts.ts.
  const scratch = values.scratch ?? '/dev/shm/xen-pmem-bench';

  const started = performance.now();
  const machine = describeMachine();
  useScratchRoot(scratch);
  progress(`fixture host with ${Math.max(...sizes)} sparse ${quick ? '' : '1 TiB '}images under ${scratch}`);
  const bench = await makeBenchHost('coldplug', Math.max(...sizes));
  try {
    progress(`fixture ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const { figures: coldplug, modes } = await section('coldplug', () => coldplugAtScale(bench, sizes, repeats),
      (results) => ({ figures: results.coldplug, modes: results.blkidModes! }));
    const io = await section('io', ioPerDevice, (results) => results.io);
    progress(`I/O per device: ${io.map((figure) => `${figure.image} ${figure.content} ${figure.bytesRead} B`).join(', ')}`);
    const latency = await section('latency', () => eventLatency(bench, latencyEvents, latencyRepeats), (results) => results.latency);
    const memory = await section('memory', () => memoryUse(bench, memoryEvents, memoryEvery, coldplug.at(-1)?.rssMiB ?? null), (results) => results.memory);
    const slow = await section('slow', () => slowHypervisor(bench, quick ? 1 : 3, quick ? 3 : 8, crashKills), (results) => results.slow);
    const lab = values['skip-lab'] ? { status: 'pending' as const, reason: 'skipped (--skip-lab)' }
      : await section('lab', () => labHotplug(progress), (results) => results.lab);
    machine.loadAtEnd = (await import('node:os')).loadavg();
    const partial: Omit<BenchResults, 'goals'> = {
      machine,
      settings: {
        quick, repeats, sizes, deviceBytes: Number(DEVICE_BYTES), latencyEvents, latencyRepeats,
        memoryEvents, memoryCheckpointEvery: memoryEvery, scratch, wallMs: performance.now() - started,
        ...(earlier && reused.length > 0 ? { reused: { sections: reused, date: earlier.machine.date, commit: earlier.machine.commit } } : {}),
      },
      coldplug, blkidModes: modes, io, latency, memory, lab, ...(slow ? { slow } : {}),
    };
    const results: BenchResults = { ...partial, goals: judgeGoals(partial) };
    await mkdir(outDir, { recursive: true });
    await writeFile(join(outDir, 'benchmarks.json'), JSON.stringify(results, null, 2) + '\n');
    await writeFile(join(outDir, 'benchmarks.md'), renderMarkdown(results));
    progress(`wrote ${join(outDir, 'benchmarks.md')} and benchmarks.json in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await bench.host.cleanup();
    await rm(scratch, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
