// The metrics writer: the daemon's state as a Prometheus text file for node_exporter's textfile
// collector (`--collector.textfile.directory=/run/xen-pmem/metrics`), so a fleet sees its pmem
// hosts without a port opened on any of them. A component of the daemon's lifecycle: it starts
// first and stops last, so the file exists during coldplug and its last version says `up 0`.
//
// Where: <state dir>/metrics/xen-pmem.prom, in the unit's RuntimeDirectory, the only place its
// sandbox (ProtectSystem=strict) lets the daemon write. The directory is the metrics' own, so that
// the collector reads nothing else of the daemon's; it and the file are readable by everyone
// (node_exporter runs as its own user), while /run/xen-pmem itself only lets others pass through
// (RuntimeDirectoryMode=0711) and every other file in it stays root's (UMask=0077).
//
// When: after a decision, coalesced like state.json (calls while a write is due share it, and
// writes are at least WRITE_SPACING_MS apart), and every REFRESH_MS regardless, so that the
// collector's node_textfile_mtime_seconds says the daemon is alive; a crashed daemon's file goes
// stale instead of pretending. Each write is whole: a temporary file renamed over the old one,
// under a name the collector ignores (it reads only *.prom).

import { chmod, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

import { messageOf } from '../core/errno.js';
import type { DaemonState } from '../format/records.js';
import { metricsToText } from '../format/serializers.js';
import type { Component } from './lifecycle.js';
import type { DaemonLogger } from './log.js';

export const METRICS_DIR = 'metrics';
export const METRICS_FILE = 'xen-pmem.prom';
/** A burst of decisions costs one write per this interval. */
export const WRITE_SPACING_MS = 1000;
/** A write at least this often, decisions or not: node_exporter's mtime then shows the daemon alive. */
export const REFRESH_MS = 30_000;

/** What the writer reads: the status publisher. */
export interface MetricsSource {
  snapshot(): DaemonState;
  lastDecisionAt(): Date | null;
  onChange(listener: () => void): void;
}

export interface MetricsPorts {
  source: MetricsSource;
  /** Replaces the file with `text` in one step. */
  write(text: string): Promise<void>;
  log: DaemonLogger;
  version: string;
  /** WRITE_SPACING_MS and REFRESH_MS unless a test says otherwise. */
  timing?: { spacingMs: number; refreshMs: number };
}

export class MetricsWriter implements Component {
  readonly name = 'metrics';
  private started = false;
  private due: ReturnType<typeof setTimeout> | null = null;
  private refresh: ReturnType<typeof setInterval> | null = null;
  private writing: Promise<void> = Promise.resolve();
  private lastWriteAt = 0;
  private lastFailure: string | null = null;

  constructor(private readonly ports: MetricsPorts) {}

  async start(): Promise<void> {
    this.started = true;
    this.ports.source.onChange(() => this.changed());
    this.refresh = setInterval(() => this.changed(), this.ports.timing?.refreshMs ?? REFRESH_MS);
    this.refresh.unref();
    await this.writeNow(true);
  }

  /** No more writes from decisions; the last one says the daemon is down. */
  async stop(): Promise<void> {
    this.started = false;
    if (this.due) clearTimeout(this.due);
    if (this.refresh) clearInterval(this.refresh);
    this.due = null;
    this.refresh = null;
    await this.writeNow(false);
  }

  /** Something changed: write within WRITE_SPACING_MS, sharing a write already due. */
  private changed(): void {
    if (!this.started || this.due) return;
    const wait = Math.max(0, this.lastWriteAt + (this.ports.timing?.spacingMs ?? WRITE_SPACING_MS) - Date.now());
    this.due = setTimeout(() => {
      this.due = null;
      void this.writeNow(true);
    }, wait);
  }

  /** Writes the state as it is now; one write at a time, failures logged once until they change. */
  private writeNow(up: boolean): Promise<void> {
    const run = this.writing.then(async () => {
      const text = metricsToText(this.ports.source.snapshot(), { up, lastDecisionAt: this.ports.source.lastDecisionAt(), version: this.ports.version });
      try {
        await this.ports.write(text);
        this.lastFailure = null;
      } catch (error) {
        const message = messageOf(error);
        if (message !== this.lastFailure) this.ports.log.warn({ reason: 'metrics-unwritable' }, `cannot write the metrics file: ${message}`);
        this.lastFailure = message;
      } finally {
        this.lastWriteAt = Date.now();
      }
    });
    this.writing = run;
    return run;
  }
}

/**
 * Writes `<dir>/xen-pmem.prom` whole: the text goes to a temporary file beside it (a dot name the
 * collector skips), which is renamed over it. Modes are set explicitly, because the unit's
 * UMask=0077 would leave both unreadable to node_exporter's user.
 */
export function textfileWriter(dir: string): (text: string) => Promise<void> {
  let sequence = 0;
  return async (text) => {
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    const target = join(dir, METRICS_FILE);
    const temporary = join(dir, `.${METRICS_FILE}.${process.pid}.${sequence++}`);
    const file = await open(temporary, 'w');
    try {
      await file.chmod(0o644);
      await file.writeFile(text);
    } finally {
      await file.close();
    }
    try {
      await rename(temporary, target);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
  };
}

/**
 * Why another user could not read the file, if the state directory keeps them out (a unit from
 * before RuntimeDirectoryMode=0711, until its next start): null when others may pass through.
 */
export async function unreachableBecause(stateDir: string): Promise<string | null> {
  try {
    const mode = (await stat(stateDir)).mode & 0o777;
    return (mode & 0o001) === 0 ? `${stateDir} is mode ${mode.toString(8).padStart(4, '0')}, which lets no other user reach ${METRICS_DIR}/${METRICS_FILE}` : null;
  } catch {
    return null;
  }
}
