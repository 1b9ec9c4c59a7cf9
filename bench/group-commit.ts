// Does the ledger's group commit still pay? The ledger's own appends (LedgerJournal, one write and
// one fdatasync per call), for N devices' pending and answer lines: one call per line, as without
// group commit, against one call per group. On tmpfs, which a Dom0's /run is, and on this
// machine's disk (/var/tmp), for a host with a handful of devices up to 1024.

import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { LedgerJournal, type LedgerStep } from '../src/daemon/ledger.js';
import type { LedgerEntry } from '../src/format/records.js';
import { spread, type Spread } from './stats.js';

export interface GroupCommitRow {
  where: 'tmpfs' | 'disk';
  devices: number;
  /** Pending lines then answer lines, one append each. */
  perLineMs: Spread;
  /** The pending lines in one append, then the answers in one. */
  groupedMs: Spread;
}

export const GROUP_COMMIT_SIZES = [1, 2, 8, 32, 1024] as const;

function entry(id: number): LedgerEntry {
  const spfn = 0x100000n + BigInt(id) * 0x10000n;
  return {
    interface: 'xenpf-pmem', device: `pmem${id}`, uuid: `00000000-0000-4000-8000-${id.toString(16).padStart(12, '0')}`, status: 'pending',
    request: { spfn, epfn: spfn + 0x10000n, rsvSpfn: spfn + 0x200n, rsvEpfn: spfn + 0xe00n, dataSpfn: spfn + 0xe00n, dataEpfn: spfn + 0xfe00n },
    at: '2026-12-06T00:00:00.000Z',
  };
}

async function timed(dir: string, devices: number, grouped: boolean): Promise<number> {
  const journal = new LedgerJournal(dir);
  const entries = Array.from({ length: devices }, (_, id) => entry(id));
  const pending: LedgerStep[] = entries.map((each) => ({ op: 'pending', entry: each }));
  const answers: LedgerStep[] = entries.map((each) => ({ op: 'reported', entry: each }));
  await journal.append([{ op: 'dropped', entry: entry(devices) }]); // the file open, as in a running daemon
  const started = performance.now();
  if (grouped) {
    await journal.append(pending);
    await journal.append(answers);
  } else {
    for (const step of [...pending, ...answers]) await journal.append([step]);
  }
  const ms = performance.now() - started;
  journal.close();
  return ms;
}

/**
 * `tmpfsDir` is on tmpfs (the fixtures' /dev/shm); the disk case uses /var/tmp (the bench points
 * TMPDIR at its tmpfs scratch directory, so the system temporary directory is no disk here).
 */
export async function groupCommit(tmpfsDir: string, repeats: number): Promise<GroupCommitRow[]> {
  const rows: GroupCommitRow[] = [];
  for (const where of ['tmpfs', 'disk'] as const) {
    for (const devices of GROUP_COMMIT_SIZES) {
      const perLine: number[] = [];
      const grouped: number[] = [];
      for (let repeat = 0; repeat < repeats; repeat++) {
        for (const group of [false, true]) {
          const dir = await mkdtemp(join(where === 'tmpfs' ? tmpfsDir : '/var/tmp', 'xen-pmem-group-commit-'));
          try {
            (group ? grouped : perLine).push(await timed(dir, devices, group));
          } finally {
            await rm(dir, { recursive: true, force: true });
          }
        }
      }
      rows.push({ where, devices, perLineMs: spread(perLine), groupedMs: spread(grouped) });
    }
  }
  return rows;
}
