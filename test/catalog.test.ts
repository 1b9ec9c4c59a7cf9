// The journal message catalog: the table of ids (src/daemon/catalog.ts), the file the build
// renders from it, what journalctl makes of that file, and the MESSAGE_ID= on the lines the daemon
// logs, from the pure journal fields up to a controller deciding real devices.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { CATALOG, CATALOG_FILE_NAME, messageIdOf, renderCatalog, type CatalogName } from '../src/daemon/catalog.js';
import { Controller } from '../src/daemon/controller.js';
import type { Outcome } from '../src/daemon/decide.js';
import { MESSAGE_ID_FIELD, toJournalFields } from '../src/daemon/log.js';
import { ExactlyOnceReporter } from '../src/daemon/reporter.js';
import { StatusPublisher } from '../src/daemon/status-publisher.js';
import type { DeviceState } from '../src/format/records.js';
import { MiB } from '../src/core/units.js';
import { ENTRIES_OF_STATE, HYPERVISOR_ENTRIES } from './helpers/catalog-families.js';
import { makeDaemonHost, recordingLogger, recordingNotifier, testConfig, type DaemonHost, type LogEntry, forgetXenInProcess } from '../fixtures/daemon-host.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NAMES = Object.keys(CATALOG) as CatalogName[];

/** The fields every line of an entry carries, which its text may therefore name as @FIELD@. */
function fieldsOf(name: CatalogName): Set<string> {
  const device = ['PMEM_DEVICE', 'PMEM_STATE', 'PMEM_REASON'];
  const layout = ['PMEM_UUID', 'PMEM_REGION_START', 'PMEM_REGION_SIZE', 'PMEM_RESERVED_START', 'PMEM_RESERVED_SIZE', 'PMEM_DATA_START', 'PMEM_DATA_SIZE'];
  if (name === 'hypervisor-supported') return new Set(['PMEM_CAPABILITY', 'PMEM_XEN_VERSION']);
  if (HYPERVISOR_ENTRIES.includes(name)) return new Set(['PMEM_CAPABILITY']);
  if (name === 'superblock-copy-damaged') return new Set(['PMEM_DEVICE', 'PMEM_REASON']);
  // Every outcome of these entries is built with the layout it is about (src/daemon/decide.ts).
  const withLayout: readonly CatalogName[] = ['reported', 'reported-before-restart', 'reported-earlier', 'unsupported', 'dry-run',
    'rejected-overlap', 'rejected-xen-rule', 'rejected-by-xen', 'removed-after-report'];
  return new Set(withLayout.includes(name) ? [...device, ...layout] : device);
}

interface ParsedEntry {
  id: string;
  headers: Map<string, string>;
  body: string;
}

/**
 * A strict reading of systemd's catalog format: comments and blank lines before the first entry;
 * each entry a `-- ID` line (32 hex digits, optionally a language), `Key: value` headers, a blank
 * line, a body; `#` lines are comments anywhere.
 */
function parseCatalog(text: string): ParsedEntry[] {
  const entries: ParsedEntry[] = [];
  let current: ParsedEntry | null = null;
  let inHeaders = false;
  text.split('\n').forEach((line, index) => {
    const where = `line ${index + 1}`;
    if (line.startsWith('#')) return;
    const start = /^-- ([0-9a-f]{32})(?: [a-z]{2}(?:_[A-Z]{2})?)?$/.exec(line);
    if (start) {
      current = { id: start[1]!, headers: new Map(), body: '' };
      entries.push(current);
      inHeaders = true;
      return;
    }
    assert.ok(!line.startsWith('--'), `${where}: "${line}" is no entry start`);
    if (current === null) {
      assert.equal(line.trim(), '', `${where}: text before the first entry`);
      return;
    }
    const entry: ParsedEntry = current;
    if (inHeaders) {
      if (line === '') {
        inHeaders = false;
        return;
      }
      const header = /^([A-Z][A-Za-z-]*): (\S.*)$/.exec(line);
      assert.ok(header, `${where}: "${line}" is not a header`);
      assert.ok(!entry.headers.has(header[1]!), `${where}: ${header[1]} twice`);
      entry.headers.set(header[1]!, header[2]!);
      return;
    }
    entry.body += `${line}\n`;
  });
  return entries;
}

describe('the catalog table', () => {
  test('ids: 128 bits as 32 lowercase hex digits, each its own, none zero', () => {
    const ids = NAMES.map(messageIdOf);
    for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(new Set(ids).size, ids.length, 'every id is used once');
    assert.ok(!ids.includes('0'.repeat(32)));
  });

  test('pinned: the ids are released and never change (a new kind of outcome gets a new entry)', () => {
    assert.deepEqual(Object.fromEntries(NAMES.map((name) => [name, messageIdOf(name)])), {
      'reported': 'c1781f91a67c41008c9f47a5f8559437',
      'reported-before-restart': 'f942599871c3435b84a93a41b13bc7bc',
      'reported-earlier': '1ff33102889340e4ac389d1712d188f5',
      'absent': '6656f981372e4f47b647801eaa592d04',
      'unsupported': '464fc9d7c66e4c91b2bf5bbdbd2ccd2c',
      'dry-run': '8135324b9b8b46718f56e4a35f83f170',
      'rejected-superblock': '05e1ec509c8e41aeafed450693d8b092',
      'rejected-device': '466bdc07d0e1498384268922916dca60',
      'rejected-config': 'fe2df26bba2544c6aeb3b1d2b461f277',
      'rejected-physical-map': '54e8d8be1ffa434db7f12d213d3a637e',
      'rejected-overlap': 'a3edde4ad2a9493586a8134e9d0043b1',
      'rejected-xen-rule': 'd8f821c21b184f2cb997e0288ae42c93',
      'rejected-by-xen': '6cf45897604340ec9d113d59056a9be1',
      'retrying': '7591c9469ade43ccaf72040ed08f35b5',
      'failed': 'bd82ca944318488ca30ebf20c24fc293',
      'removed': '96e7f7bb0cd345a7b151dbeb158d2fdd',
      'removed-after-report': '953926e8563c40b9bc9a92f5d51eb0b4',
      'superblock-copy-damaged': '30974b0631804838be929c6e85aa1fa9',
      'hypervisor-supported': '56b0ec31ca2e4244b5b6f560dd11a502',
      'hypervisor-unsupported': '411b652547e24b238783281758027164',
      'hypervisor-not-asked': '9a5161125b3949d8b16e03b6d9c4c537',
    });
  });

  test('every entry belongs to a family: a state of a device, the hypervisor, or a damaged copy', () => {
    const families = [...Object.values(ENTRIES_OF_STATE).flat(), ...HYPERVISOR_ENTRIES, 'superblock-copy-damaged'];
    assert.deepEqual([...families].sort(), [...NAMES].sort());
  });

  test('every entry is named where the daemon builds its lines, so none is dead', () => {
    const dir = join(ROOT, 'src', 'daemon');
    const code = readdirSync(dir).filter((file) => file.endsWith('.ts') && file !== 'catalog.ts').map((file) => readFileSync(join(dir, file), 'utf8')).join('\n');
    const unused = NAMES.filter((name) => !code.includes(`'${name}'`));
    assert.deepEqual(unused, []);
  });

  test('texts: a one-line subject, paragraphs that say what to do, and only fields the lines carry', () => {
    for (const name of NAMES) {
      const entry = CATALOG[name];
      assert.ok(!entry.subject.includes('\n') && entry.subject.length <= 90, `${name}: subject "${entry.subject}"`);
      assert.ok(entry.body.length >= 2, `${name}: what happened, then what to do`);
      const named = [...`${entry.subject} ${entry.body.join(' ')}`.matchAll(/@([A-Z0-9_]+)@/g)].map((match) => match[1]!);
      const allowed = fieldsOf(name);
      assert.deepEqual(named.filter((field) => !allowed.has(field)), [], `${name} names fields its lines may lack`);
      // An unpaired @ would swallow the text up to the next one.
      assert.equal((`${entry.subject}${entry.body.join('')}`.match(/@/g) ?? []).length % 2, 0, name);
    }
  });
});

describe('docs/operations.md', () => {
  test('lists every id with its kind, as the table has them', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
    const rows = [...doc.matchAll(/^\| `([0-9a-f]{32})` \| `([a-z-]+)` \|/gm)].map((match) => [match[2], match[1]]);
    assert.deepEqual(rows, NAMES.map((name) => [name, messageIdOf(name)]));
  });
});

describe('the catalog file', () => {
  const text = renderCatalog();

  test('parses strictly, one entry per table row in order, each defined by xen-pmem with its manual page', () => {
    const entries = parseCatalog(text);
    assert.deepEqual(entries.map((entry) => entry.id), NAMES.map(messageIdOf));
    entries.forEach((entry, index) => {
      const name = NAMES[index]!;
      assert.deepEqual([...entry.headers.keys()], ['Subject', 'Defined-By', 'Documentation']);
      assert.equal(entry.headers.get('Subject'), CATALOG[name].subject);
      assert.equal(entry.headers.get('Defined-By'), 'xen-pmem');
      assert.equal(entry.headers.get('Documentation'), 'man:xen-pmemd(8)');
      assert.equal(entry.body.replace(/\s+/g, ' ').trim(), CATALOG[name].body.join(' ').replace(/\s+/g, ' '));
      for (const line of entry.body.split('\n')) assert.ok(line.length <= 76, `${name}: "${line}" is longer than 76`);
    });
  });

  test('the strict parser refuses what journalctl would misread', () => {
    assert.throws(() => parseCatalog('text\n-- 0123456789abcdef0123456789abcdef\nSubject: x\n\nbody\n'), /before the first entry/);
    assert.throws(() => parseCatalog('-- 0123456789abcdef0123456789abcdef\nSubject x\n\nbody\n'), /not a header/);
    assert.throws(() => parseCatalog('-- 0123456789ABCDEF\nSubject: x\n\nbody\n'), /no entry start/);
  });

  test('a word that would open a body line as a comment or an entry takes the word before it along', () => {
    const body = [`${'a '.repeat(38)}--dry-run ${'b '.repeat(36)}#hash end`];
    const rendered = renderCatalog({ x: { id: `${'0'.repeat(31)}1`, subject: 'x', body } });
    const lines = rendered.split('\n').slice(3).filter((line) => !line.startsWith('-- 0'));
    assert.deepEqual(lines.filter((line) => /^(#|--)/.test(line)), []);
    assert.equal(parseCatalog(rendered)[0]!.body.replace(/\s+/g, ' ').trim(), body[0]!.replace(/\s+/g, ' '));
  });

  test('the build wrote exactly this text to dist/catalog', () => {
    assert.equal(readFileSync(join(ROOT, 'dist', 'catalog', CATALOG_FILE_NAME), 'utf8'), text);
  });

  const journalctl = spawnSync('journalctl', ['--version']).status === 0;
  test('journalctl --update-catalog takes a copy; --list-catalog and --dump-catalog give every entry back', { skip: journalctl ? false : 'journalctl is not installed' }, () => {
    const root = mkdtempSync(join(tmpdir(), 'xen-pmem-catalog-'));
    try {
      mkdirSync(join(root, 'usr/lib/systemd/catalog'), { recursive: true });
      writeFileSync(join(root, 'usr/lib/systemd/catalog', CATALOG_FILE_NAME), text);
      const update = spawnSync('journalctl', [`--root=${root}`, '--update-catalog'], { encoding: 'utf8' });
      assert.equal(update.status, 0, update.stderr);
      assert.equal(update.stderr, '');
      const list = spawnSync('journalctl', [`--root=${root}`, '--list-catalog'], { encoding: 'utf8' });
      assert.equal(list.status, 0, list.stderr);
      assert.deepEqual(list.stdout.trim().split('\n').sort(), NAMES.map((name) => `${messageIdOf(name)} xen-pmem: ${CATALOG[name].subject}`).sort());
      const ids = NAMES.map(messageIdOf);
      const dump = spawnSync('journalctl', [`--root=${root}`, '--dump-catalog', ...ids], { encoding: 'utf8' });
      assert.equal(dump.status, 0, dump.stderr);
      for (const name of NAMES) {
        const entry = parseCatalog(dump.stdout).find((each) => each.id === messageIdOf(name));
        assert.ok(entry, `journalctl has ${name}`);
        assert.equal(entry.body.replace(/\s+/g, ' ').trim(), CATALOG[name].body.join(' ').replace(/\s+/g, ' '), name);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('MESSAGE_ID on the journal lines', () => {
  test('the messageId field becomes MESSAGE_ID=, without our prefix; every other field keeps it', () => {
    const items = toJournalFields({ level: 'notice', message: 'pmem0: reported', fields: { device: 'pmem0', [MESSAGE_ID_FIELD]: messageIdOf('reported') } });
    assert.deepEqual(items, ['MESSAGE=pmem0: reported', 'PRIORITY=5', 'SYSLOG_IDENTIFIER=xen-pmemd', 'PMEM_DEVICE=pmem0', `MESSAGE_ID=${messageIdOf('reported')}`]);
  });

  function publisher(): { status: StatusPublisher; entries: LogEntry[] } {
    const log = recordingLogger();
    const status = new StatusPublisher(
      { saveState: async () => {}, log, notifier: recordingNotifier(), now: () => new Date('2026-11-21T10:00:00Z') },
      { ledger: () => [], capability: () => null },
      null,
    );
    return { status, entries: log.entries };
  }

  test('the status publisher: the line of a change carries its outcome\'s id; a pass that changed nothing does not', () => {
    const { status, entries } = publisher();
    const absent: Outcome = { state: 'absent', reason: 'no-superblock', catalog: 'absent', severity: 'info', message: 'pmem0: no xen-pmem super block' };
    status.publish('pmem0', absent, null);
    status.publish('pmem0', absent, null);
    assert.deepEqual(entries.map((entry) => [entry.level, entry.fields[MESSAGE_ID_FIELD]]), [['info', messageIdOf('absent')], ['debug', undefined]]);
  });

  test('a damaged copy is a line of its own with its own id, before the outcome\'s', () => {
    const { status, entries } = publisher();
    const failed: Outcome = { state: 'failed', reason: 'internal-error', catalog: 'failed', severity: 'error', message: 'pmem0: x', notes: ['primary super block damaged'] };
    status.publish('pmem0', failed, null);
    assert.deepEqual(entries.map((entry) => [entry.fields.reason, entry.fields[MESSAGE_ID_FIELD]]), [
      ['superblock-copy-damaged', messageIdOf('superblock-copy-damaged')],
      ['internal-error', messageIdOf('failed')],
    ]);
  });

  test('the hypervisor\'s lines: supported, unsupported, and not asked in a dry run', async () => {
    const lines = async (capability: ReturnType<ExactlyOnceReporter['capability']> & object | null, dryRun: boolean): Promise<LogEntry[]> => {
      const log = recordingLogger();
      const reporter = new ExactlyOnceReporter({
        bridge: {
          capability: async () => capability!, report: async () => ({ kind: 'reported', already: false }), check: () => ({ ok: true }),
          held: async () => ({ kind: 'answered', value: [] }), describe: () => '', interfaceName: () => 'xenpf-pmem',
        },
        drivers: { unbind: async () => ({ device: 'namespace0.0', driver: 'nd_pmem' }), unbindAgain: async () => {}, bind: async () => {} },
        recordLedger: async () => {},
        log,
        now: () => new Date(),
      }, dryRun, [], true);
      await reporter.probe();
      return log.entries;
    };
    const idOf = (entries: LogEntry[]): unknown[] => entries.map((entry) => entry.fields[MESSAGE_ID_FIELD]);
    assert.deepEqual(idOf(await lines({ kind: 'xenpf-pmem', xenVersion: '4.17.7' }, false)), [messageIdOf('hypervisor-supported')]);
    assert.deepEqual(idOf(await lines({ kind: 'unsupported', reason: 'enosys', message: 'no' }, false)), [messageIdOf('hypervisor-unsupported')]);
    assert.deepEqual(idOf(await lines(null, true)), [messageIdOf('hypervisor-not-asked')]);
  });

  describe('a controller deciding real devices', () => {
    let host: DaemonHost;
    after(async () => {
      await host?.cleanup();
      forgetXenInProcess();
    });

    test('every outcome line has the id of an entry of its state\'s family, and the report line is found by its id', async () => {
      const size = 256n * MiB;
      const at = (id: number): bigint => 0x1_0000_0000n + BigInt(id) * size;
      host = await makeDaemonHost('catalog', {
        regions: [
          { id: 0, start: at(0), size, namespaces: [{ id: 0, mode: 'raw' }] },
          { id: 1, start: at(1), size, namespaces: [{ id: 0, mode: 'raw' }] },
          { id: 2, start: at(2), size, namespaces: [{ id: 0, mode: 'sector' }] },
          { id: 3, start: at(3), size, namespaces: [{ id: 0, mode: 'raw' }] },
        ],
      });
      host.useXenInProcess();
      await host.prepare('pmem0');
      await host.blank('pmem1');
      await host.prepare('pmem3');
      const log = recordingLogger();
      const controller = new Controller(testConfig({ deny: { devices: ['pmem3'] } }), host.ports({ log }), null);
      await controller.start();
      await controller.stop();

      const outcomes = log.entries.filter((entry) => entry.level !== 'debug' && typeof entry.fields.state === 'string');
      assert.ok(outcomes.length >= 4, `outcome lines: ${outcomes.map((entry) => entry.message).join('\n')}`);
      for (const entry of outcomes) {
        const family = ENTRIES_OF_STATE[entry.fields.state as DeviceState].map(messageIdOf);
        assert.ok(family.includes(String(entry.fields[MESSAGE_ID_FIELD])), `${entry.message}: ${entry.fields[MESSAGE_ID_FIELD]}`);
      }
      const byId = (name: CatalogName): string[] => log.entries.filter((entry) => entry.fields[MESSAGE_ID_FIELD] === messageIdOf(name)).map((entry) => String(entry.fields.device ?? entry.fields.capability));
      assert.deepEqual(byId('reported'), ['pmem0'], 'the one report, found by its id');
      assert.deepEqual(byId('absent'), ['pmem1']);
      assert.deepEqual(byId('rejected-device'), ['namespace2.0']);
      assert.deepEqual(byId('rejected-config'), ['pmem3']);
      assert.deepEqual(byId('hypervisor-supported'), ['xenpf-pmem']);
    });
  });
});
