// What the daemon knows, kept in /run/xen-pmem/state.json: each device's state for `xen-pmem
// status`, with a copy of the ledger. The ledger itself — the exactly-once guarantee across
// restarts — is the journal in ledger.ts. /run is the right lifetime for both: it empties at
// reboot, exactly when Xen forgets its regions.
//
// Written atomically (temporary file, fsync, rename, fsync of the directory), so a reader or a
// restarted daemon sees the old file or the new one, never a torn one.

import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type * as Zod from 'zod';

import { errorCode } from '../core/errno.js';
import { DEVICE_STATES, STATE_VERSION, type DaemonState, type SameShape } from '../format/records.js';
import { stateToText } from '../format/serializers.js';
import { LEDGER_FILE, loadLedger, loadRecordSchemas, recordSchemas } from './ledger.js';

export const DEFAULT_STATE_DIR = '/run/xen-pmem';
export const STATE_FILE = 'state.json';
export { STATE_VERSION } from '../format/records.js';
export type { DaemonState, DeviceRecord } from '../format/records.js';

/** zod, loaded with the record schemas when a state file is to be read (see loadRecordSchemas). */
let z: typeof Zod.z;

function buildStateSchema() {
  const { hexBig, report, entry } = recordSchemas();
  const rangeSchema = z.object({ start: hexBig, size: hexBig });
  const layoutSchema = z.object({ region: rangeSchema, reserved: rangeSchema, data: rangeSchema, request: report, uuid: z.string() });
  return z.object({
    version: z.literal(STATE_VERSION),
    pid: z.number().int(),
    startedAt: z.string(),
    updatedAt: z.string(),
    ready: z.boolean(),
    capability: z.object({ kind: z.string(), reason: z.string().optional(), message: z.string().optional(), xenVersion: z.string().optional() }).nullable(),
    devices: z.array(z.object({
      device: z.string(), devPath: z.string().nullable(), namespace: z.string().nullable(), mode: z.string().nullable(),
      region: z.string().nullable(),
      state: z.enum(DEVICE_STATES),
      reason: z.string(), message: z.string(), since: z.string(),
      layout: layoutSchema.optional(), interface: z.string().optional(), nextAttempt: z.string().optional(), notes: z.array(z.string()).optional(),
      unbound: z.object({ device: z.string(), driver: z.string() }).optional(),
    })),
    ledger: z.array(entry),
  });
}

let stateSchema: ReturnType<typeof buildStateSchema> | null = null;

/** Compile-time: what the schema reads is exactly what the daemon writes (src/format/records.ts). */
const STATE_SCHEMA_IS_DAEMON_STATE: SameShape<Zod.output<ReturnType<typeof buildStateSchema>>, DaemonState> = true;
void STATE_SCHEMA_IS_DAEMON_STATE;

/** Loads zod and the record schemas; parseState needs them. */
export async function loadStateSchemas(): Promise<void> {
  await loadRecordSchemas();
  ({ z } = await import('zod'));
}

export function serializeState(state: DaemonState): string {
  return stateToText(state);
}

export type LoadResult =
  | { kind: 'loaded'; state: DaemonState }
  | { kind: 'missing' }
  | { kind: 'unreadable'; message: string };

/** Parses state.json's text; the record schemas must be loaded first (loadRecordSchemas, as loadState does). */
export function parseState(text: string): LoadResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { kind: 'unreadable', message: `not JSON (${(error as Error).message})` };
  }
  // Built the first time a state file is read (see recordSchemas).
  const parsed = (stateSchema ??= buildStateSchema()).safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return { kind: 'unreadable', message: `${issue.path.join('.') || '(top level)'}: ${issue.message}` };
  }
  return { kind: 'loaded', state: parsed.data as DaemonState };
}

export async function loadState(dir: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8');
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'unreadable', message: `cannot be read (${code ?? String(error)})` };
  }
  await loadStateSchemas();
  return parseState(text);
}

/** Serialises writes: the last state asked for is the one on disk when `save` resolves. */
export class StateStore {
  private writing: Promise<void> = Promise.resolve();
  private sequence = 0;

  constructor(readonly dir: string) {}

  save(state: DaemonState): Promise<void> {
    const text = serializeState(state);
    const run = this.writing.then(() => this.writeAtomically(text));
    // A failed write must not poison the next one; the caller of this save sees the failure.
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async writeAtomically(text: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o755 });
    const target = join(this.dir, STATE_FILE);
    const temporary = join(this.dir, `.${STATE_FILE}.${process.pid}.${this.sequence++}`);
    const file = await open(temporary, 'w', 0o644);
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, target);
    const directory = await open(this.dir, 'r');
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}

export interface PreviousRun {
  /** Device records from state.json and the ledger from the journal; null when neither exists. */
  state: DaemonState | null;
  /** Sentences for the journal about what could not be read. */
  problems: string[];
  /** The ledger's journal was there and read whole: without it, Xen is asked what it holds. */
  ledgerKnown: boolean;
}

/**
 * What a restarted daemon starts from. The ledger comes from the journal only, never from the
 * copy in state.json: the journal is the one written before each hypercall.
 */
export async function loadPreviousRun(dir: string): Promise<PreviousRun> {
  const problems: string[] = [];
  const [records, journal] = await Promise.all([loadState(dir), loadLedger(dir)]);
  if (records.kind === 'unreadable') problems.push(`${join(dir, STATE_FILE)} is unreadable (${records.message}); device records start afresh`);
  if (journal.kind === 'unreadable') problems.push(`${join(dir, LEDGER_FILE)} is unreadable (${journal.message}); Xen's own refusal is what stops a second add`);
  if (journal.kind === 'loaded') {
    for (const problem of journal.replayed.problems) problems.push(`${join(dir, LEDGER_FILE)}: ${problem}, skipped`);
  }
  const ledger = journal.kind === 'loaded' ? journal.replayed.entries : [];
  const ledgerKnown = journal.kind === 'loaded' && journal.replayed.problems.length === 0;
  if (records.kind !== 'loaded' && ledger.length === 0) return { state: null, problems, ledgerKnown };
  const base: DaemonState = records.kind === 'loaded'
    ? records.state
    : { version: STATE_VERSION, pid: 0, startedAt: '', updatedAt: '', ready: false, capability: null, devices: [], ledger: [] };
  return { state: { ...base, ledger }, problems, ledgerKnown };
}
