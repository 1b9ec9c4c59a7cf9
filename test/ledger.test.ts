// The exactly-once journal: replay is pure, appends are whole lines, compaction keeps the ledger.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import type { LedgerEntry } from '../src/daemon/decide.js';
import { LEDGER_FILE, LedgerJournal, ledgerLine, loadLedger, loadRecordSchemas, replayLedger } from '../src/daemon/ledger.js';

// replayLedger reads with the schemas the daemon loads only when a ledger exists.
before(() => loadRecordSchemas());

function entry(device: string, spfn: bigint, status: LedgerEntry['status'] = 'pending'): LedgerEntry {
  return {
    interface: 'pmem-add', device, uuid: `00000000-0000-4000-8000-${spfn.toString(16).padStart(12, '0')}`, status, at: '2026-11-22T00:00:00.000Z',
    request: { spfn, epfn: spfn + 0x10000n, rsvSpfn: spfn + 0x200n, rsvEpfn: spfn + 0x600n, dataSpfn: spfn + 0x600n, dataEpfn: spfn + 0xfe00n },
  };
}

test('replay: pending then reported is one reported entry; pending then dropped is none', () => {
  const a = entry('pmem0', 0x100000n);
  const b = entry('pmem1', 0x110000n);
  const text = ledgerLine('pending', a) + ledgerLine('reported', a) + ledgerLine('pending', b) + ledgerLine('dropped', b);
  const replayed = replayLedger(text);
  assert.deepEqual(replayed.entries.map((e) => [e.device, e.status, e.request.spfn]), [['pmem0', 'reported', 0x100000n]]);
  assert.equal(replayed.lines, 4);
  assert.deepEqual(replayed.problems, []);
});

test('replay: a pending entry with no answer stays pending (the daemon confirms it)', () => {
  const a = entry('pmem0', 0x100000n);
  assert.deepEqual(replayLedger(ledgerLine('pending', a)).entries.map((e) => e.status), ['pending']);
});

test('replay: a torn last line is skipped without a problem; a damaged middle line is named', () => {
  const a = entry('pmem0', 0x100000n);
  const b = entry('pmem1', 0x110000n);
  const torn = ledgerLine('pending', a) + ledgerLine('reported', a) + ledgerLine('pending', b).slice(0, 30);
  const tornReplay = replayLedger(torn);
  assert.deepEqual(tornReplay.entries.map((e) => e.device), ['pmem0']);
  assert.deepEqual(tornReplay.problems, []);

  const damaged = ledgerLine('pending', a) + 'garbage\n' + ledgerLine('reported', a);
  const damagedReplay = replayLedger(damaged);
  assert.deepEqual(damagedReplay.entries.map((e) => [e.device, e.status]), [['pmem0', 'reported']]);
  assert.deepEqual(damagedReplay.problems, ['line 2 is not a ledger record']);
});

test('replay: 64-bit PFNs survive as BigInt', () => {
  const huge = entry('pmem9', (1n << 52n) + 0x200n);
  const [back] = replayLedger(ledgerLine('reported', huge)).entries;
  assert.equal(back?.request.spfn, (1n << 52n) + 0x200n);
  assert.equal(back?.request.dataEpfn, (1n << 52n) + 0x200n + 0xfe00n);
});

test('journal: concurrent appends are whole lines; compaction rewrites just the current entries', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xen-pmem-ledger-'));
  try {
    const journal = new LedgerJournal(dir);
    const entries = Array.from({ length: 20 }, (_, i) => entry(`pmem${i}`, 0x100000n + BigInt(i) * 0x10000n));
    await Promise.all(entries.flatMap((e) => [journal.append([{ op: 'pending', entry: e }]), journal.append([{ op: 'reported', entry: e }])]));
    const loaded = await loadLedger(dir);
    assert.equal(loaded.kind, 'loaded');
    const replayed = (loaded as Extract<typeof loaded, { kind: 'loaded' }>).replayed;
    assert.equal(replayed.lines, 40);
    assert.deepEqual(replayed.problems, []);
    assert.deepEqual(replayed.entries.map((e) => e.status), Array(20).fill('reported'));

    await journal.compact(replayed.entries);
    const text = await readFile(join(dir, LEDGER_FILE), 'utf8');
    assert.equal(text.split('\n').length - 1, 20);
    assert.deepEqual(replayLedger(text).entries, replayed.entries);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing journal is "missing", not an error', async () => {
  assert.deepEqual(await loadLedger(join(tmpdir(), 'xen-pmem-no-such-dir')), { kind: 'missing' });
});

test('replay: every line names the interface the report went through; a line from before that was pmem-add', () => {
  const a = entry('pmem0', 0x100000n);
  assert.match(ledgerLine('pending', a), /^\{"op":"pending","interface":"pmem-add","device":"pmem0",/);
  const older = '{"op":"reported","device":"pmem0","uuid":"' + a.uuid + '","request":{"spfn":"0x100000","epfn":"0x110000","rsvSpfn":"0x100200","rsvEpfn":"0x100600","dataSpfn":"0x100600","dataEpfn":"0x10fe00"},"at":"2026-11-22T00:00:00.000Z"}\n';
  assert.deepEqual(replayLedger(older).entries.map((e) => [e.interface, e.device, e.status]), [['pmem-add', 'pmem0', 'reported']]);
});
