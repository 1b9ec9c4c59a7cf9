// The exactly-once record: /run/xen-pmem/ledger.jsonl, an append-only journal of the reports to
// the hypervisor this daemon made, each naming the interface it went through. One short line per
// step (pending before the hypercall, then reported or dropped), on disk (fdatasync) before the
// daemon goes on, so the cost of keeping the promise does not grow with the number of devices.
// Lines come in groups: the reporter hands over the pending lines of every device judged in one
// turn together, and later their answers together, and each group costs one write and one
// fdatasync (group commit). Replaying the journal gives the ledger.
//
// A line cut short by a crash can only be the last one, and it was never synced, so the
// hypercall it announced was never made: replay skips it.

import { closeSync, fdatasyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type * as Zod from 'zod';

import { errorCode } from '../core/errno.js';
import type { LedgerEntry, SameShape } from '../format/records.js';
import { storedJson } from '../format/serializers.js';
import { sameRequest } from './decide.js';

export const LEDGER_FILE = 'ledger.jsonl';

/** `pending`: about to ask Xen. `reported`: Xen took it. `dropped`: Xen did not take it. */
export type LedgerOp = 'pending' | 'reported' | 'dropped';

/** One line of the journal: a step of one report. */
export interface LedgerStep {
  op: LedgerOp;
  entry: LedgerEntry;
}

/** Lines written before reports named their interface were all made through pmem-add. */
const FIRST_INTERFACE = 'pmem-add';

/** zod, once a file is to be read: a daemon started at boot reads none, and loads no zod. */
let z: typeof Zod.z;

function buildSchemas() {
  /** On disk every 64-bit number is a hex string: JSON numbers lose precision past 2^53. */
  const hexBig = z.string().regex(/^0x[0-9a-f]+$/).transform((text) => BigInt(text));
  /** The six PFNs of a report. */
  const report = z.object({ spfn: hexBig, epfn: hexBig, rsvSpfn: hexBig, rsvEpfn: hexBig, dataSpfn: hexBig, dataEpfn: hexBig });
  /** A report as a ledger line and state.json's copy of the ledger both record it. */
  const entryFields = {
    interface: z.string().default(FIRST_INTERFACE),
    device: z.string(),
    uuid: z.string(),
    request: report,
    at: z.string(),
  };
  return {
    hexBig,
    report,
    line: z.object({ op: z.enum(['pending', 'reported', 'dropped']), ...entryFields }),
    entry: z.object({ ...entryFields, status: z.enum(['pending', 'reported']) }),
  };
}

let schemas: ReturnType<typeof buildSchemas> | null = null;

/** Compile-time: a ledger entry as the schema reads it is exactly the daemon's LedgerEntry. */
const ENTRY_SCHEMA_IS_LEDGER_ENTRY: SameShape<Zod.output<ReturnType<typeof buildSchemas>['entry']>, LedgerEntry> = true;
void ENTRY_SCHEMA_IS_LEDGER_ENTRY;

/**
 * Loads zod and builds the schemas of what the ledger and state.json hold; called before the
 * first file is read. A daemon started at boot has nothing to read, and loading zod is a fifth of
 * its start-up and several MiB resident.
 */
export async function loadRecordSchemas(): Promise<ReturnType<typeof buildSchemas>> {
  if (schemas === null) {
    ({ z } = await import('zod'));
    schemas = buildSchemas();
  }
  return schemas;
}

/** The schemas, once loadRecordSchemas has resolved. */
export function recordSchemas(): ReturnType<typeof buildSchemas> {
  if (schemas === null) throw new Error('the record schemas are read before loadRecordSchemas() resolved');
  return schemas;
}

export function ledgerLine(op: LedgerOp, entry: LedgerEntry): string {
  return storedJson({ op, interface: entry.interface, device: entry.device, uuid: entry.uuid, request: entry.request, at: entry.at }) + '\n';
}

export interface Replayed {
  entries: LedgerEntry[];
  lines: number;
  /** Lines that could not be read, with their numbers; a torn last line is not counted here. */
  problems: string[];
}

/** Pure: the ledger a journal describes. Entries are identified by reservation UUID and PFNs. */
export function replayLedger(text: string): Replayed {
  const entries: LedgerEntry[] = [];
  const problems: string[] = [];
  // The last piece is either the empty string after the final newline or a torn line.
  const complete = text.split('\n').slice(0, -1);
  const lineSchema = recordSchemas().line;
  complete.forEach((line, index) => {
    let parsed;
    try {
      parsed = lineSchema.safeParse(JSON.parse(line));
    } catch {
      parsed = null;
    }
    if (!parsed?.success) {
      problems.push(`line ${index + 1} is not a ledger record`);
      return;
    }
    const { op, ...entry } = parsed.data;
    const at = entries.findIndex((e) => e.uuid === entry.uuid && sameRequest(e.request, entry.request));
    if (op === 'dropped') {
      if (at !== -1) entries.splice(at, 1);
    } else if (at === -1) {
      entries.push({ ...entry, status: op });
    } else {
      entries[at] = { ...entries[at]!, status: op, at: entry.at, device: entry.device };
    }
  });
  return { entries, lines: complete.length, problems };
}

export type LedgerLoad =
  | { kind: 'loaded'; replayed: Replayed }
  | { kind: 'missing' }
  | { kind: 'unreadable'; message: string };

export async function loadLedger(dir: string): Promise<LedgerLoad> {
  try {
    const text = await readFile(join(dir, LEDGER_FILE), 'utf8');
    await loadRecordSchemas();
    return { kind: 'loaded', replayed: replayLedger(text) };
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'unreadable', message: `cannot be read (${code ?? String(error)})` };
  }
}

/**
 * Appends a group of lines with one write and one fdatasync. The append is synchronous on
 * purpose: it happens right before the hypercalls it announces, /run is memory, and a write plus
 * fdatasync on an open descriptor costs microseconds where the promise API's round trips cost a
 * millisecond.
 */
export class LedgerJournal {
  private fd: number | null = null;

  constructor(readonly dir: string) {}

  async append(steps: readonly LedgerStep[]): Promise<void> {
    if (steps.length === 0) return;
    const line = Buffer.from(steps.map(({ op, entry }) => ledgerLine(op, entry)).join(''));
    const fd = this.open();
    let written = 0;
    try {
      while (written < line.length) written += writeSync(fd, line, written, line.length - written);
      fdatasyncSync(fd);
    } catch (error) {
      // Nothing of a failed group is acted on: a pending line that reached the file anyway is
      // what a crash before the hypercall leaves, and a restart's confirming add is then the
      // first add; a torn line is skipped by replay. Start a fresh descriptor.
      this.close();
      throw error;
    }
  }

  /**
   * Rewrites the journal as just the current entries (temporary file, fsync, rename), so that
   * retries over a long uptime do not make it grow without bound. Called at start only.
   */
  async compact(entries: readonly LedgerEntry[]): Promise<void> {
    this.close();
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temporary = join(this.dir, `.${LEDGER_FILE}.compact`);
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.writeFile(entries.map((entry) => ledgerLine(entry.status, entry)).join(''));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, join(this.dir, LEDGER_FILE));
  }

  close(): void {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        // Already unusable; nothing more to release.
      }
      this.fd = null;
    }
  }

  private open(): number {
    if (this.fd === null) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      this.fd = openSync(join(this.dir, LEDGER_FILE), 'a', 0o600);
    }
    return this.fd;
  }
}
