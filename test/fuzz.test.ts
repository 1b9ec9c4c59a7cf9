// The fuzzer's CI slice and the proof that it can fail. The long run is `npm run fuzz`
// (test/fuzz/run.ts, 1,000,000 cases); this file runs the same engine on a fixed seed for
// XEN_PMEM_FUZZ_CASES cases (default 20,000), and replays a different seed with
// XEN_PMEM_FUZZ_SEED.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import type { GptTable } from '../src/core/gpt.js';
import { MiB } from '../src/core/units.js';
import type { ReasonCode, Verdict } from '../src/core/validate.js';
import { scanDevice } from '../src/io/scan.js';
import { runFuzz, type Scan } from './fuzz/engine.js';
import { crc32 } from './fuzz/forge.js';
import { makeBaseImages, type MemoryImage } from './fuzz/image.js';
import { applyMutation } from './fuzz/mutate.js';
import { oracle } from './fuzz/oracle.js';
import { hasCommand } from '../fixtures/images.js';

const skip = hasCommand('sfdisk') ? false : 'sfdisk is not installed (Debian package fdisk): the fuzzer starts from layouts the real setup path wrote';
const CASES = Number(process.env.XEN_PMEM_FUZZ_CASES ?? 20_000);
const SEED = Number(process.env.XEN_PMEM_FUZZ_SEED ?? 20_261_121);
/** Reason codes docs/superblock.md defines; the slice must reach nearly all of them. */
const REASON_CODES = 29;

/** A validator with one check missing: it calls `reason` valid. The oracle must notice. */
function forgetting(reason: ReasonCode): Scan {
  return async (reader, options) => {
    const verdict = await scanDevice(reader, options);
    if (verdict.status !== 'invalid' || verdict.reason !== reason || !verdict.superblock) return verdict;
    const table = { partitions: verdict.partitions } as GptTable;
    return { status: 'valid', superblock: verdict.superblock, source: 'primary', notes: [], table, partitions: verdict.partitions } satisfies Verdict;
  };
}

describe('fuzzing the scan of a device', { skip }, () => {
  let bases: MemoryImage[];
  before(async () => { bases = await makeBaseImages(); });

  test(`${CASES.toLocaleString('en')} generated and mutated blocks and tables: no throw, no accepted invalid, none refused that the rules allow`, async () => {
    const result = await runFuzz({ cases: CASES, seed: SEED, bases });
    const s = result.stats;
    assert.equal(result.failure, null, `seed ${result.seed}:\n${result.failure}`);
    assert.equal(s.cases, CASES);
    assert.deepEqual([s.throws, s.acceptedInvalid, s.refusedValid, s.statusMismatch, s.xenRefused], [0, 0, 0, 0, 0]);
    // Not vacuous: the mutants reach the deep checks, and a good share stays valid.
    assert.ok(s.reasons.size >= REASON_CODES - 2, `${s.reasons.size} reason codes reached: ${[...s.reasons.keys()].join(', ')}`);
    assert.ok(s.valid >= CASES / 10, `${s.valid} valid mutants`);
    assert.ok(s.invalid >= CASES / 2, `${s.invalid} invalid mutants`);
    assert.ok(s.absent > 0);
    const rate = s.cases / (s.elapsedMs / 1000);
    process.stdout.write(`# fuzz: ${s.cases} cases in ${(s.elapsedMs / 1000).toFixed(1)} s (${Math.round(rate)}/s), ${s.valid} valid, ${s.invalid} invalid, ${s.absent} absent, ${s.reasons.size} reasons\n`);
  });

  test('the oracle agrees with setup: every base is valid, and absent once both copies are wiped', () => {
    for (const base of bases) {
      assert.equal(oracle(base, base.marks.namespaceUuid ?? undefined).status, 'valid', base.name);
      const wiped = base.clone();
      applyMutation(wiped, { kind: 'sb-wipe', copy: 'both' });
      assert.equal(oracle(wiped).status, 'absent', base.name);
    }
  });

  test('the oracle refuses what setup would never write (one case per kind of rule)', () => {
    const base = bases.find((b) => b.name === '256MiB-bound')!;
    const refused = (why: string, ...mutations: Parameters<typeof applyMutation>[1][]) => {
      const image = base.clone();
      for (const m of mutations) applyMutation(image, m);
      const verdict = oracle(image, base.marks.namespaceUuid);
      assert.equal(verdict.status, 'invalid', `${why}: ${verdict.why}`);
    };
    refused('unsealed byte', { kind: 'sb-byte', copy: 'both', at: 100, xor: 1, reseal: false });
    refused('copies disagree', { kind: 'sb-u64', copy: 'backup', field: 'createdAt', value: { anchor: 'current', delta: 1n } });
    refused('wrapping reserved area', { kind: 'sb-u64', copy: 'both', field: 'reservedSize', value: { absolute: (1n << 64n) - 2n * MiB } });
    refused('other namespace', { kind: 'sb-uuid', copy: 'both', field: 'namespaceUuid', value: 'other' });
    refused('partition over the reserved area', { kind: 'gpt-add-partition', index: 1, first: { anchor: 'reserved', delta: 0n }, last: { anchor: 'reserved', delta: 2047n } });
    refused('unsealed GPT header', { kind: 'gpt-u64', field: 'alternateLba', value: { anchor: 'lastLba', delta: -1n }, reseal: false });
    refused('grown device', { kind: 'resize', to: { anchor: 'size', delta: 2n * MiB } });
    refused('reserved area below rule 4', { kind: 'sb-u64', copy: 'both', field: 'reservedSize', value: { absolute: 2n * MiB } });
  });

  test('the oracle\'s CRC-32 is the standard one (IEEE 802.3, as zlib)', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    assert.equal(crc32(new Uint8Array(0)), 0);
  });

  // The fuzzer can fail: a validator that forgot one check is caught within the slice.
  for (const reason of ['reserved-overlaps-partition', 'area-outside-device', 'reserved-too-small', 'namespace-mismatch'] as const) {
    test(`a validator that forgot "${reason}" is caught`, async () => {
      const result = await runFuzz({ cases: CASES, seed: SEED, bases, scan: forgetting(reason) });
      assert.notEqual(result.failure, null, `no case caught the missing ${reason} check`);
      assert.match(result.failure ?? '', /the validator says valid; the oracle says invalid/);
      assert.ok(result.stats.acceptedInvalid >= 1);
    });
  }
});
