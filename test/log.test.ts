import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import {
  createLogger,
  isJournalStream,
  loadPino,
  JOURNAL_PRIORITY,
  journalFieldName,
  LOG_LEVELS,
  LogLevelError,
  parseJournalStream,
  parseLogLevel,
  renderFieldValue,
  toJournalFields,
  toJsonFields,
  type LogFields,
} from '../src/daemon/log.js';
import type { JournalSender } from '../src/daemon/ports.js';

/** A pino destination that keeps each JSON line. */
function lines(): { records: Array<Record<string, unknown>>; write(line: string): void } {
  const records: Array<Record<string, unknown>> = [];
  return { records, write: (line) => void records.push(JSON.parse(line) as Record<string, unknown>) };
}

function recordingJournal(result = 0): JournalSender & { entries: string[][] } {
  const entries: string[][] = [];
  return { entries, journalSend: (fields) => (entries.push([...fields]), result) };
}

const JOURNAL = { dev: 34n, ino: 123456n };
const JOURNAL_ENV = { JOURNAL_STREAM: `${JOURNAL.dev}:${JOURNAL.ino}` };

describe('journal field names', () => {
  it('turn camelCase and other keys into PMEM_UPPER_SNAKE', () => {
    const cases: Array<[string, string]> = [
      ['device', 'PMEM_DEVICE'],
      ['rsvSpfn', 'PMEM_RSV_SPFN'],
      ['dataEpfn', 'PMEM_DATA_EPFN'],
      ['superBlockCRC32', 'PMEM_SUPER_BLOCK_CRC32'],
      ['CRCValue', 'PMEM_CRC_VALUE'],
      ['xenVersion', 'PMEM_XEN_VERSION'],
      ['region-size', 'PMEM_REGION_SIZE'],
      ['already_snake', 'PMEM_ALREADY_SNAKE'],
      ['pfn2', 'PMEM_PFN2'],
      ['__', 'PMEM_FIELD'],
    ];
    for (const [key, name] of cases) assert.equal(journalFieldName(key), name, key);
  });

  it('stay within journald\'s 64 characters and its alphabet', () => {
    const name = journalFieldName('a'.repeat(100) + 'ÄÖ.x');
    assert.equal(name.length, 64);
    assert.match(name, /^[A-Z][A-Z0-9_]*$/);
  });
});

describe('field values', () => {
  it('render BigInts in hex and everything else as written', () => {
    assert.equal(renderFieldValue(0x100000000n), '0x100000000');
    assert.equal(renderFieldValue(-16n), '-0x10');
    assert.equal(renderFieldValue(4096), '4096');
    assert.equal(renderFieldValue(false), 'false');
    assert.equal(renderFieldValue('pmem0'), 'pmem0');
  });

  it('never print the bytes of a buffer a JavaScript caller slipped in', () => {
    assert.equal(renderFieldValue(Buffer.from('secret bytes')), '[12 bytes omitted]');
    assert.equal(renderFieldValue({ nested: 1 }), '[object omitted]');
  });
});

describe('toJournalFields', () => {
  it('builds MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and one PMEM_ field per entry field', () => {
    const fields: LogFields = { device: 'pmem0', spfn: 0x100000n, pages: 65536, reported: true };
    assert.deepEqual(toJournalFields({ level: 'notice', message: 'pmem0: reported to Xen', fields }), [
      'MESSAGE=pmem0: reported to Xen',
      'PRIORITY=5',
      'SYSLOG_IDENTIFIER=xen-pmemd',
      'PMEM_DEVICE=pmem0',
      'PMEM_SPFN=0x100000',
      'PMEM_PAGES=65536',
      'PMEM_REPORTED=true',
    ]);
  });

  it('maps each level to its syslog priority, so journalctl -p err shows errors only', () => {
    const expected = { error: 3, warn: 4, notice: 5, info: 6, debug: 7 };
    for (const level of LOG_LEVELS) {
      const items = toJournalFields({ level, message: 'm', fields: {} });
      assert.equal(items[1], `PRIORITY=${expected[level]}`, level);
      assert.equal(JOURNAL_PRIORITY[level], expected[level]);
    }
  });

  it('keeps a multi-line message whole and takes another identifier', () => {
    const items = toJournalFields({ level: 'error', message: 'line one\nline two', fields: {}, identifier: 'xen-pmem' });
    assert.deepEqual(items, ['MESSAGE=line one\nline two', 'PRIORITY=3', 'SYSLOG_IDENTIFIER=xen-pmem']);
  });
});

describe('toJsonFields', () => {
  it('keeps numbers and booleans, writes BigInts in hex and renames keys pino writes itself', () => {
    assert.deepEqual(toJsonFields({ spfn: 0x100000n, pages: 3, ok: true, msg: 'x', level: 'y' }), {
      spfn: '0x100000',
      pages: 3,
      ok: true,
      msg_: 'x',
      level_: 'y',
    });
  });
});

describe('journald detection', () => {
  it('parses $JOURNAL_STREAM as DEVICE:INODE', () => {
    assert.deepEqual(parseJournalStream('34:123456'), JOURNAL);
    for (const bad of [undefined, '', '34', '34:', ':1', 'a:b', '34:12:1']) assert.equal(parseJournalStream(bad), null, String(bad));
  });

  it('holds only when stdout or stderr is that very stream', () => {
    assert.equal(isJournalStream(JOURNAL_ENV, [null, JOURNAL]), true);
    assert.equal(isJournalStream(JOURNAL_ENV, [JOURNAL, null]), true);
    assert.equal(isJournalStream(JOURNAL_ENV, [{ dev: 34n, ino: 1n }, null]), false);
    assert.equal(isJournalStream({}, [JOURNAL, JOURNAL]), false);
  });
});

describe('parseLogLevel', () => {
  it('accepts pino and syslog spellings in any case, and nothing else', () => {
    assert.equal(parseLogLevel('WARNING'), 'warn');
    assert.equal(parseLogLevel('err'), 'error');
    assert.equal(parseLogLevel(' notice '), 'notice');
    assert.equal(parseLogLevel('trace'), null);
    assert.equal(parseLogLevel('6'), null);
  });
});

describe('createLogger', () => {
  // The daemon loads pino before its first JSON line (xen-pmemd.ts); these tests do the same.
  before(() => loadPino());

  it('refuses an unknown level with the reason code log-level-unknown', () => {
    assert.throws(
      () => createLogger({ level: 'verbose', env: {}, destination: lines() }),
      (error: unknown) => error instanceof LogLevelError && error.code === 'log-level-unknown' && /"verbose"/.test(error.message),
    );
  });

  it('writes JSON lines outside journald, from the given level up', () => {
    const out = lines();
    const journal = recordingJournal();
    const log = createLogger({ level: 'notice', env: {}, destination: out, journal, outputs: [JOURNAL, JOURNAL] });
    log.debug({ device: 'pmem0' }, 'not written');
    log.info({ device: 'pmem0' }, 'not written either');
    log.notice({ device: 'pmem0', spfn: 0x100000n }, 'pmem0: reported');
    log.error({ device: 'pmem1', reason: 'bad-checksum' }, 'pmem1: super block checksum mismatch');
    assert.equal(log.sink, 'json');
    assert.deepEqual(journal.entries, []);
    assert.deepEqual(
      out.records.map(({ level, msg, name, device, spfn, reason }) => ({ level, msg, name, device, spfn, reason })),
      [
        { level: 'notice', msg: 'pmem0: reported', name: 'xen-pmemd', device: 'pmem0', spfn: '0x100000', reason: undefined },
        { level: 'error', msg: 'pmem1: super block checksum mismatch', name: 'xen-pmemd', device: 'pmem1', spfn: undefined, reason: 'bad-checksum' },
      ],
    );
    assert.equal(out.records[0]!.pid, process.pid);
    assert.match(String(out.records[0]!.time), /^\d{4}-\d\d-\d\dT/);
  });

  it('sends structured entries to the journal when stdout is the journal stream', () => {
    const out = lines();
    const journal = recordingJournal();
    const log = createLogger({ level: 'debug', env: JOURNAL_ENV, destination: out, journal, outputs: [JOURNAL, null] });
    log.warn({ device: 'pmem0', rsvSpfn: 0x100200n }, 'pmem0: reserved area smaller than advised');
    log.debug({}, 'scan done');
    assert.equal(log.sink, 'journal');
    assert.deepEqual(out.records, []);
    assert.deepEqual(journal.entries, [
      ['MESSAGE=pmem0: reserved area smaller than advised', 'PRIORITY=4', 'SYSLOG_IDENTIFIER=xen-pmemd', 'PMEM_DEVICE=pmem0', 'PMEM_RSV_SPFN=0x100200'],
      ['MESSAGE=scan done', 'PRIORITY=7', 'SYSLOG_IDENTIFIER=xen-pmemd'],
    ]);
  });

  it('falls back to a JSON line for an entry the journal refused, and never throws', () => {
    const out = lines();
    const refusing = recordingJournal(-11);
    const log = createLogger({ level: 'info', env: JOURNAL_ENV, destination: out, journal: refusing, outputs: [JOURNAL, null] });
    log.info({ device: 'pmem0' }, 'kept anyway');
    const throwing = createLogger({
      level: 'info',
      env: JOURNAL_ENV,
      destination: { write: () => { throw new Error('stdout closed'); } },
      journal: { journalSend: () => { throw new Error('socket gone'); } },
      outputs: [JOURNAL, null],
    });
    assert.doesNotThrow(() => throwing.error({}, 'nowhere to go'));
    assert.equal(refusing.entries.length, 1);
    assert.deepEqual(out.records.map((r) => [r.level, r.msg, r.device]), [['info', 'kept anyway', 'pmem0']]);
  });

  it('writes JSON lines when $JOURNAL_STREAM names another stream (output redirected)', () => {
    const out = lines();
    const journal = recordingJournal();
    const log = createLogger({ level: 'info', env: JOURNAL_ENV, destination: out, journal, outputs: [{ dev: 1n, ino: 2n }, { dev: 1n, ino: 3n }] });
    log.info({}, 'to stdout');
    assert.equal(log.sink, 'json');
    assert.deepEqual(journal.entries, []);
    assert.equal(out.records.length, 1);
  });
});

describe('createLogger before pino is loaded', () => {
  it('under journald, an entry the journal refused waits for pino and keeps its order', async () => {
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', `
      import { createLogger } from ${JSON.stringify(fileURLToPath(new URL('../src/daemon/log.js', import.meta.url)))};
      const lines = [];
      const log = createLogger({ level: 'info', env: { JOURNAL_STREAM: '1:2' }, outputs: [{ dev: 1n, ino: 2n }, null],
        journal: { journalSend: () => -11 }, destination: { write: (line) => lines.push(JSON.parse(line).msg) } });
      log.info({}, 'first');
      log.warn({}, 'second');
      const before = lines.length;
      setTimeout(() => console.log(JSON.stringify({ before, lines })), 200);
    `], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    assert.deepEqual(JSON.parse(child.stdout), { before: 0, lines: ['first', 'second'] });
  });
});

// The real path through libsystemd: a child process whose stdout identity is in
// $JOURNAL_STREAM logs with the default journal (sd_journal_sendv). It runs in a private mount
// namespace with a fresh /run, where python3 plays journald on /run/systemd/journal/socket and
// hands back the datagrams, decoded below from the journal's native protocol.
const ORCHESTRATOR = `
import json, os, socket, subprocess, sys
os.makedirs("/run/systemd/journal", exist_ok=True)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/run/systemd/journal/socket")
child = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
sock.setblocking(False)
datagrams = []
try:
    while True:
        datagrams.append(sock.recv(1 << 20).hex())
except BlockingIOError:
    pass
print(json.dumps({"rc": child.returncode, "stdout": child.stdout.decode(), "stderr": child.stderr.decode(), "datagrams": datagrams}))
`;

const LOG_MODULE = fileURLToPath(new URL('../src/daemon/log.js', import.meta.url));
const CHILD = `
import { fstatSync } from 'node:fs';
import { createLogger } from ${JSON.stringify(LOG_MODULE)};
const out = fstatSync(1, { bigint: true });
const log = createLogger({ level: 'info', env: { JOURNAL_STREAM: out.dev + ':' + out.ino } });
if (log.sink !== 'journal') { console.error('sink is ' + log.sink); process.exit(3); }
log.error({ device: 'pmem0', spfn: 0x100000n, reason: 'bad-checksum' }, 'pmem0: super block checksum mismatch\\nbackup used');
log.debug({ device: 'pmem0' }, 'below the level');
log.info({ regionCount: 2 }, 'watching 2 regions');
`;

/** Decodes the journal's native protocol: `NAME=value\\n`, or `NAME\\n` + le64 length + bytes + `\\n`. */
function decodeJournalDatagram(data: Buffer): string[] {
  const items: string[] = [];
  let at = 0;
  while (at < data.length) {
    const newline = data.indexOf(0x0a, at);
    assert.ok(newline >= 0, 'field without a terminating newline');
    const head = data.subarray(at, newline).toString('utf8');
    if (head.includes('=')) {
      items.push(head);
      at = newline + 1;
    } else {
      const size = Number(data.readBigUInt64LE(newline + 1));
      const start = newline + 9;
      items.push(`${head}=${data.subarray(start, start + size).toString('utf8')}`);
      at = start + size + 1;
    }
  }
  return items;
}

function journalTestSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root for a private mount namespace with its own /run';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount does not work here';
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return 'python3 is needed to stand in for journald';
  return false;
}

describe('structured entries through libsystemd to a journal socket', { skip: journalTestSkip() }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xen-pmem-journal-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('arrive as separate fields with priorities, hex values and the multi-line message intact', () => {
    const script = join(dir, 'child.mjs');
    writeFileSync(script, CHILD);
    const run = spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /run && exec python3 -c "$0" "$@"', ORCHESTRATOR, process.execPath, script],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { rc: number; stdout: string; stderr: string; datagrams: string[] };
    assert.equal(result.rc, 0, result.stderr);
    assert.equal(result.stdout, '', 'nothing may go to stdout when the journal takes the entries');
    const entries = result.datagrams.map((hexText) => decodeJournalDatagram(Buffer.from(hexText, 'hex')));
    assert.deepEqual(entries, [
      [
        'MESSAGE=pmem0: super block checksum mismatch\nbackup used',
        'PRIORITY=3',
        'SYSLOG_IDENTIFIER=xen-pmemd',
        'PMEM_DEVICE=pmem0',
        'PMEM_SPFN=0x100000',
        'PMEM_REASON=bad-checksum',
      ],
      ['MESSAGE=watching 2 regions', 'PRIORITY=6', 'SYSLOG_IDENTIFIER=xen-pmemd', 'PMEM_REGION_COUNT=2'],
    ]);
  });
});

// Without libsystemd (hidden behind an empty file in a private mount namespace) the binding
// loads as null, the logger writes JSON lines even under journald, and the notifier is silent.
const WITHOUT_LIBSYSTEMD = `
import { fstatSync } from 'node:fs';
import { loadLibSystemd } from ${JSON.stringify(fileURLToPath(new URL('../src/native/libsystemd.js', import.meta.url)))};
import { createLogger } from ${JSON.stringify(LOG_MODULE)};
import { createNotifier } from ${JSON.stringify(fileURLToPath(new URL('../src/daemon/notify.js', import.meta.url)))};
const out = fstatSync(1, { bigint: true });
const log = createLogger({ level: 'info', env: { JOURNAL_STREAM: out.dev + ':' + out.ino } });
const notifier = createNotifier({ NOTIFY_SOCKET: '/run/nowhere' });
notifier.ready('up');
log.info({ device: 'pmem0', library: loadLibSystemd() === null ? 'missing' : 'loaded', sink: log.sink }, 'still logging');
`;

function libsystemdPath(): string | null {
  const run = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const match = /libsystemd\.so\.0 \([^)]*\) => (\S+)/.exec(run.stdout ?? '');
  return match ? match[1]! : null;
}

function hideLibrarySkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root for a private mount namespace';
  if (libsystemdPath() === null) return 'ldconfig does not list libsystemd.so.0';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount does not work here';
  return false;
}

describe('without libsystemd', { skip: hideLibrarySkip() }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xen-pmem-nolib-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the binding is null, entries become JSON lines and notifications are dropped without a throw', () => {
    const script = join(dir, 'child.mjs');
    writeFileSync(script, WITHOUT_LIBSYSTEMD);
    const run = spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind /dev/null "$0" && exec "$1" "$2"', libsystemdPath()!, process.execPath, script],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(run.status, 0, run.stderr);
    const record = JSON.parse(run.stdout) as Record<string, unknown>;
    assert.deepEqual([record.level, record.msg, record.device, record.library, record.sink], ['info', 'still logging', 'pmem0', 'missing', 'json']);
  });
});
