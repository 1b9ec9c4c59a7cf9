// Synthetic udev traffic for the controller, shaped like what node-udev delivers for pmem: the
// kernel's order on hotplug (nd namespace add, the block disk add, nd bind), removals, change
// events on disks and partitions, repeats of one device and storms across many. The mix is drawn
// from a seeded generator, so every run sends the same events.
//
// Timing: each event is stamped just before handleEvent. A device's decision pass is stamped where
// it begins (the controller looks the disk up in sysfs by name) and where it ends (the record is
// logged); an event is decided by the first pass of its device that began after it arrived, since
// a pass already running when it came cannot have seen it. A pmem_add is stamped when the bridge
// returns and belongs to the pass of its device that is running.

import type { DeviceEvent } from '../src/daemon/ports.js';
import { seededRandom } from './stats.js';

export type BurstKind = 'hotplug' | 'unplug' | 'change' | 'partition' | 'repeat' | 'storm';

export interface PlannedEvent {
  event: DeviceEvent;
  /** The pmem disk the event is about. */
  device: string;
  /** False for events the controller is meant to ignore (an nd remove: the disk's own remove decides). */
  decides: boolean;
}

export interface Burst {
  kind: BurstKind;
  /** Devices to plug in (true) or pull out (false) before the events are sent. */
  presence: { device: string; present: boolean }[];
  events: PlannedEvent[];
}

export interface MixOptions {
  seed: number;
  devices: readonly string[];
  /** Devices that carry a partition table (their pmemNp1 gets change events). */
  partitioned: ReadonlySet<string>;
  /** Which devices are plugged in when the mix starts. */
  present: ReadonlySet<string>;
}

const SYSFS_BUS = '/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0';

function idOf(device: string): number {
  return Number(/^pmem(\d+)$/.exec(device)?.[1] ?? NaN);
}

export function blockEvent(action: string, name: string, device: string, devtype: 'disk' | 'partition'): PlannedEvent {
  const id = idOf(device);
  const disk = `${SYSFS_BUS}/region${id}/namespace${id}.0/block/${device}`;
  return {
    event: { action, subsystem: 'block', sysname: name, syspath: devtype === 'disk' ? disk : `${disk}/${name}`, devtype },
    device,
    decides: true,
  };
}

export function namespaceEvent(action: string, device: string): PlannedEvent {
  const id = idOf(device);
  const name = `namespace${id}.0`;
  return {
    event: { action, subsystem: 'nd', sysname: name, syspath: `${SYSFS_BUS}/region${id}/${name}` },
    device,
    decides: action !== 'remove' && action !== 'unbind',
  };
}

/**
 * An endless, reproducible mix of bursts. Every absent device is plugged in before long (so each
 * prepared one is reported once, by an event), present ones are changed, repeated, stormed and
 * now and then pulled out and plugged in again.
 */
export function* eventMix(options: MixOptions): Generator<Burst> {
  const random = seededRandom(options.seed);
  const present = new Set(options.present);
  const absent = options.devices.filter((device) => !present.has(device));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const presentList = (): string[] => options.devices.filter((device) => present.has(device));

  for (;;) {
    const roll = random();
    const here = presentList();
    if (absent.length > 0 && (roll < 0.3 || here.length === 0)) {
      const device = absent.splice(Math.floor(random() * absent.length), 1)[0]!;
      present.add(device);
      yield {
        kind: 'hotplug',
        presence: [{ device, present: true }],
        events: [namespaceEvent('add', device), blockEvent('add', device, device, 'disk'), namespaceEvent('bind', device)],
      };
    } else if (roll < 0.38 && here.length > 1) {
      const device = pick(here);
      present.delete(device);
      absent.push(device);
      yield {
        kind: 'unplug',
        presence: [{ device, present: false }],
        events: [blockEvent('remove', device, device, 'disk'), namespaceEvent('unbind', device), namespaceEvent('remove', device)],
      };
    } else if (roll < 0.7) {
      const device = pick(here);
      yield { kind: 'change', presence: [], events: [blockEvent('change', device, device, 'disk')] };
    } else if (roll < 0.85) {
      const partitioned = here.filter((device) => options.partitioned.has(device));
      const device = partitioned.length > 0 ? pick(partitioned) : pick(here);
      const event = options.partitioned.has(device)
        ? blockEvent('change', `${device}p1`, device, 'partition')
        : blockEvent('change', device, device, 'disk');
      yield { kind: 'partition', presence: [], events: [event] };
    } else if (roll < 0.96) {
      const device = pick(here);
      const events = Array.from({ length: between(5, 30) }, () => blockEvent('change', device, device, 'disk'));
      yield { kind: 'repeat', presence: [], events };
    } else {
      const events = Array.from({ length: between(20, 100) }, () => {
        const device = pick(here);
        return blockEvent('change', device, device, 'disk');
      });
      yield { kind: 'storm', presence: [], events };
    }
  }
}

export interface EventTiming {
  kind: BurstKind;
  /** The pmem disk the event was about. */
  device: string;
  /** The controller had nothing to do when the event's burst arrived. */
  arrivedIdle: boolean;
  /** Milliseconds from the event to the end of the pass that decided it. */
  decisionMs: number;
  /** Milliseconds from the event to the pmem_add that pass made, if it made one. */
  hypercallMs: number | null;
}

interface Waiting {
  device: string;
  at: number;
  kind: BurstKind;
  arrivedIdle: boolean;
}

interface Pass {
  waiting: Waiting[];
  hypercallAt: number | null;
}

/**
 * Matches events to the passes that decided them, online: nothing per pass is kept once it ends,
 * so a run of a hundred thousand events holds only what is in flight.
 */
export class LatencyTracker {
  private readonly pending = new Map<string, Waiting[]>();
  private readonly open = new Map<string, Pass>();
  decided = 0;
  ignored = 0;
  passes = 0;
  hypercalls = 0;
  /** Called with every decided event; keep the timings or only count them. */
  constructor(private readonly onDecided: (timing: EventTiming) => void) {}

  eventSent(planned: PlannedEvent, kind: BurstKind, at: number, arrivedIdle: boolean): void {
    if (!planned.decides) {
      this.ignored++;
      return;
    }
    const waiting = { device: planned.device, at, kind, arrivedIdle };
    const queue = this.pending.get(planned.device);
    if (queue) queue.push(waiting);
    else this.pending.set(planned.device, [waiting]);
  }

  /** The controller began deciding `device`: it sees every event that came before now. */
  passStarted(device: string, at: number): void {
    if (this.open.has(device)) return;
    const waiting = this.pending.get(device) ?? [];
    this.pending.delete(device);
    this.open.set(device, { waiting, hypercallAt: null });
  }

  hypercallMade(device: string, at: number): void {
    this.hypercalls++;
    const pass = this.open.get(device);
    if (pass) pass.hypercallAt = at;
  }

  passEnded(device: string, at: number): void {
    const pass = this.open.get(device);
    if (!pass) return;
    this.open.delete(device);
    this.passes++;
    for (const event of pass.waiting) {
      this.decided++;
      this.onDecided({
        kind: event.kind,
        device: event.device,
        arrivedIdle: event.arrivedIdle,
        decisionMs: at - event.at,
        hypercallMs: pass.hypercallAt === null ? null : pass.hypercallAt - event.at,
      });
    }
  }

  /** Events still waiting for a pass: zero once the controller is idle, or the mix was lost. */
  undecided(): number {
    let count = 0;
    for (const queue of this.pending.values()) count += queue.length;
    for (const pass of this.open.values()) count += pass.waiting.length;
    return count;
  }
}
