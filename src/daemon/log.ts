// The daemon's logger. Under systemd each entry goes to the journal as structured fields
// (MESSAGE=, PRIORITY=, PMEM_DEVICE=, ...), so `journalctl -p err` shows only real problems and
// `journalctl PMEM_DEVICE=pmem0` follows one device. Anywhere else it writes JSON lines to
// stdout through pino. The conversion from an entry to journal fields is a pure function below.
//
// pino is loaded (loadPino) and set up only for JSON lines: under journald, where every entry
// goes through libsystemd, it would be a tenth of the daemon's start-up and MiB kept resident
// for nothing.

import { fstatSync } from 'node:fs';
import type * as Pino from 'pino';

import { hex } from '../core/units.js';
import { loadLibSystemd } from '../native/libsystemd.js';
import type { JournalSender } from './ports.js';

export const LOG_LEVELS = ['debug', 'info', 'notice', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Flat, printable values only: a raw buffer has no place in a log entry. */
export type LogFieldValue = string | number | bigint | boolean;
export type LogFields = Readonly<Record<string, LogFieldValue>>;

export interface DaemonLogger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  notice(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
  /** Where entries go: the journal's native protocol or JSON lines. */
  readonly sink: 'journal' | 'json';
  /** Writes out anything pino still buffers; nothing to do for the journal. */
  flush(): void;
}

/** syslog priorities, the values journalctl -p filters on. */
export const JOURNAL_PRIORITY: Readonly<Record<LogLevel, number>> = {
  error: 3,
  warn: 4,
  notice: 5,
  info: 6,
  debug: 7,
};

export const DEFAULT_IDENTIFIER = 'xen-pmemd';
/** Every field of ours carries this prefix, so it never collides with systemd's own fields. */
export const JOURNAL_FIELD_PREFIX = 'PMEM_';
/**
 * The one field that keeps journald's own name: `messageId` becomes MESSAGE_ID=, the catalog id
 * of the line (src/daemon/catalog.ts), which `journalctl -x` explains.
 */
export const MESSAGE_ID_FIELD = 'messageId';
/** journald drops fields whose names are longer than this. */
const JOURNAL_FIELD_NAME_MAX = 64;

const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = {
  debug: 'debug',
  info: 'info',
  notice: 'notice',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  err: 'error',
};

/** Accepts the names pino and syslog use (`warn`/`warning`, `error`/`err`), any case. */
export function parseLogLevel(text: string): LogLevel | null {
  return LEVEL_ALIASES[text.trim().toLowerCase()] ?? null;
}

export class LogLevelError extends Error {
  readonly code = 'log-level-unknown';
  constructor(readonly given: string) {
    super(`unknown log level "${given}": use one of ${LOG_LEVELS.join(', ')}`);
  }
}

/**
 * `device` → `PMEM_DEVICE`, `rsvSpfn` → `PMEM_RSV_SPFN`, `superBlockCRC32` → `PMEM_SUPER_BLOCK_CRC32`.
 * journald accepts only A–Z, 0–9 and `_` in names, at most 64 characters.
 */
export function journalFieldName(key: string): string {
  const snake = key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toUpperCase();
  return (JOURNAL_FIELD_PREFIX + (snake === '' ? 'FIELD' : snake)).slice(0, JOURNAL_FIELD_NAME_MAX);
}

/** The text of one value: BigInts (addresses, PFNs, sizes) in hex, the way the project prints them. */
export function renderFieldValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'bigint':
      return value < 0n ? '-' + hex(-value) : hex(value);
    case 'number':
    case 'boolean':
      return String(value);
    default:
      return omitted(value);
  }
}

// The types keep non-primitive values out; this catches JavaScript callers that slip one in,
// so a buffer's bytes never reach a log.
function omitted(value: unknown): string {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `[${value.byteLength} bytes omitted]`;
  if (value === null || value === undefined) return String(value);
  return '[object omitted]';
}

export interface JournalEntry {
  level: LogLevel;
  message: string;
  fields: LogFields;
  identifier?: string;
}

/** The `NAME=value` items of one journal entry, in the order they are sent. */
export function toJournalFields(entry: JournalEntry): string[] {
  const items = [
    `MESSAGE=${entry.message}`,
    `PRIORITY=${JOURNAL_PRIORITY[entry.level]}`,
    `SYSLOG_IDENTIFIER=${entry.identifier ?? DEFAULT_IDENTIFIER}`,
  ];
  for (const [key, value] of Object.entries(entry.fields)) {
    items.push(`${key === MESSAGE_ID_FIELD ? 'MESSAGE_ID' : journalFieldName(key)}=${renderFieldValue(value)}`);
  }
  return items;
}

// pino writes these itself; a field by the same name would produce a second, conflicting key.
const PINO_OWN_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'name']);

/** The JSON form of the fields: numbers and booleans stay JSON values, BigInts become hex strings. */
export function toJsonFields(fields: LogFields): Record<string, string | number | boolean> {
  const record: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(fields)) {
    const name = PINO_OWN_KEYS.has(key) ? `${key}_` : key;
    record[name] = typeof value === 'number' || typeof value === 'boolean' ? value : renderFieldValue(value);
  }
  return record;
}

export interface StreamIdentity {
  dev: bigint;
  ino: bigint;
}

/** `$JOURNAL_STREAM` is `DEVICE:INODE` in decimal, as systemd documents. */
export function parseJournalStream(value: string | undefined): StreamIdentity | null {
  if (value === undefined) return null;
  const match = /^(\d+):(\d+)$/.exec(value.trim());
  if (!match) return null;
  return { dev: BigInt(match[1]!), ino: BigInt(match[2]!) };
}

/**
 * True when stdout or stderr is the stream systemd connected to journald. A child process that
 * inherited $JOURNAL_STREAM but had its output redirected must not pretend to be journald's.
 */
export function isJournalStream(env: NodeJS.ProcessEnv, outputs: ReadonlyArray<StreamIdentity | null>): boolean {
  const expected = parseJournalStream(env.JOURNAL_STREAM);
  if (expected === null) return false;
  return outputs.some((output) => output !== null && output.dev === expected.dev && output.ino === expected.ino);
}

function identityOf(fd: number): StreamIdentity | null {
  try {
    const stat = fstatSync(fd, { bigint: true });
    return { dev: stat.dev, ino: stat.ino };
  } catch {
    return null;
  }
}

type PinoModule = typeof Pino.default;
let pino: PinoModule | null = null;

/** Loads pino once per process; a logger writes JSON lines synchronously once it has resolved. */
export async function loadPino(): Promise<void> {
  pino ??= (await import('pino')).default;
}

export interface LoggerOptions {
  /** The lowest level written: debug, info, notice, warn (warning) or error (err). */
  level: string;
  env: NodeJS.ProcessEnv;
  /** Where JSON lines go; stdout when omitted. */
  destination?: Pino.DestinationStream;
  /** SYSLOG_IDENTIFIER and pino's `name`; `xen-pmemd` when omitted. */
  identifier?: string;
  /** The journal to use instead of libsystemd; null forces JSON lines. */
  journal?: JournalSender | null;
  /** The identities of stdout and stderr; read with fstat when omitted. */
  outputs?: ReadonlyArray<StreamIdentity | null>;
}

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, notice: 2, warn: 3, error: 4 };
// pino has no notice level; 35 puts it between info (30) and warn (40).
const PINO_NOTICE = 35;

/** Throws `LogLevelError` (code `log-level-unknown`) when `opts.level` names no level. */
export function createLogger(opts: LoggerOptions): DaemonLogger {
  const threshold = parseLogLevel(opts.level);
  if (threshold === null) throw new LogLevelError(opts.level);
  const identifier = opts.identifier ?? DEFAULT_IDENTIFIER;

  const outputs = opts.outputs ?? [identityOf(1), identityOf(2)];
  const underJournald = isJournalStream(opts.env, outputs);
  let journal: JournalSender | null = null;
  if (underJournald) journal = opts.journal !== undefined ? opts.journal : loadLibSystemd();

  // Made at the first JSON line, which under journald may never come.
  let json: Pino.Logger<'notice'> | null = null;
  const jsonLogger = (module: PinoModule): Pino.Logger<'notice'> => json ??= module(
    {
      name: identifier,
      level: threshold,
      customLevels: { notice: PINO_NOTICE },
      base: { pid: process.pid },
      timestamp: module.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? module.destination({ dest: 1, sync: true }),
  );
  // Lines that arrive before pino is loaded (an entry journald refused, when the logger was made
  // for the journal) wait for it here, in order.
  const queued: [LogLevel, LogFields, string][] = [];

  const writeJson = (level: LogLevel, fields: LogFields, message: string): void => {
    if (pino === null) {
      if (queued.push([level, fields, message]) === 1) {
        loadPino().then(
          () => { for (const line of queued.splice(0)) writeJson(...line); },
          () => { queued.length = 0; },
        );
      }
      return;
    }
    try {
      jsonLogger(pino)[level](toJsonFields(fields), message);
    } catch {
      // A closed stdout leaves nowhere to report to; the daemon carries on.
    }
  };

  const write = (level: LogLevel, fields: LogFields, message: string): void => {
    if (LEVEL_RANK[level] < LEVEL_RANK[threshold]) return;
    if (journal !== null) {
      try {
        if (journal.journalSend(toJournalFields({ level, message, fields, identifier })) >= 0) return;
      } catch {
        // Fall through: stdout is still connected to journald, just without our fields.
      }
    }
    writeJson(level, fields, message);
  };

  return {
    sink: journal !== null ? 'journal' : 'json',
    debug: (fields, message) => write('debug', fields, message),
    info: (fields, message) => write('info', fields, message),
    notice: (fields, message) => write('notice', fields, message),
    warn: (fields, message) => write('warn', fields, message),
    error: (fields, message) => write('error', fields, message),
    flush() {
      try {
        json?.flush();
      } catch {
        // Nothing buffered, or nowhere left to write it.
      }
    },
  };
}
