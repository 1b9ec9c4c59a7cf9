// Per-device work: one worker per device key, so work for one device never runs twice at once.
// Work asked for while a device is being decided marks it dirty, and it is decided once more
// afterwards: a burst of any size costs at most two passes. A device that ends a pass retrying is
// scheduled again after a delay that doubles from `initialMs` to `maxMs`.

import type { PmemNamespaceModel } from '../sysfs/types.js';

/** One pass over one device, as the scheduler hands it to the decision. */
export interface Pass {
  key: string;
  /** The last event said the device went away: confirm against sysfs before scanning. */
  removalHint: boolean;
  /** A model read moments ago by the coldplug listing; used once instead of reading sysfs again. */
  listed: PmemNamespaceModel | null;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

interface Worker {
  running: Promise<void> | null;
  dirty: boolean;
  removalHint: boolean;
  listed: PmemNamespaceModel | null;
  retryTimer: NodeJS.Timeout | null;
  attempts: number;
}

export class DeviceScheduler {
  private readonly workers = new Map<string, Worker>();
  /** Other work idle() waits for: namespace events being looked up. */
  private readonly tracked = new Set<Promise<void>>();
  private stopped = false;

  /** `pass` never throws: it turns every failure into an outcome of its own. */
  constructor(private readonly pass: (pass: Pass) => Promise<void>, private readonly backoff: Backoff) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Asks for a pass over `key`; collapses into the one running, if any. */
  schedule(key: string, removalHint: boolean, listed: PmemNamespaceModel | null = null): void {
    if (this.stopped) return;
    let worker = this.workers.get(key);
    if (!worker) {
      worker = { running: null, dirty: false, removalHint: false, listed: null, retryTimer: null, attempts: 0 };
      this.workers.set(key, worker);
    }
    worker.dirty = true;
    worker.removalHint = removalHint;
    // An event after the listing may mean the device changed since: read it afresh then.
    worker.listed = worker.running ? null : listed;
    if (worker.retryTimer) {
      clearTimeout(worker.retryTimer);
      worker.retryTimer = null;
    }
    if (!worker.running) worker.running = this.drain(key, worker);
  }

  /**
   * The pass over `key` ended retrying: schedules the next one after the backoff and says when it
   * is due. After stop() nothing is scheduled and null comes back.
   */
  retryLater(key: string, now: Date): Date | null {
    const worker = this.workers.get(key);
    if (!worker || this.stopped) {
      if (worker) worker.attempts = 0;
      return null;
    }
    const delay = Math.min(this.backoff.initialMs * 2 ** worker.attempts, this.backoff.maxMs);
    worker.attempts++;
    // A burst can end several passes in retrying: only the last one's retry stays due.
    if (worker.retryTimer) clearTimeout(worker.retryTimer);
    worker.retryTimer = setTimeout(() => {
      worker.retryTimer = null;
      this.schedule(key, false);
    }, delay);
    worker.retryTimer.unref();
    return new Date(now.getTime() + delay);
  }

  /** The pass over `key` ended in anything but retrying: the next retry starts from the first delay. */
  settled(key: string): void {
    const worker = this.workers.get(key);
    if (worker) worker.attempts = 0;
  }

  /** Work that idle() waits for besides the passes (it removes itself when done). */
  track(work: Promise<void>): void {
    const tracked = work.finally(() => this.tracked.delete(tracked));
    this.tracked.add(tracked);
  }

  /** Resolves when no device has a pass queued or running and no tracked work is left (retry timers do not count). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.workers.values()].map((w) => w.running).filter((p): p is Promise<void> => p !== null);
      running.push(...this.tracked);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  /** No new pass starts and no retry fires; resolves once the running passes are done. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const worker of this.workers.values()) {
      if (worker.retryTimer) clearTimeout(worker.retryTimer);
      worker.retryTimer = null;
      worker.dirty = false;
    }
    await this.idle();
  }

  private async drain(key: string, worker: Worker): Promise<void> {
    // Let the rest of a burst (udev delivers several events per read) land first.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (worker.dirty && !this.stopped) {
      worker.dirty = false;
      const pass: Pass = { key, removalHint: worker.removalHint, listed: worker.listed };
      worker.removalHint = false;
      worker.listed = null;
      await this.pass(pass);
    }
    worker.running = null;
  }
}
