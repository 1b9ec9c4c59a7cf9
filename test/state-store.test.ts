// The daemon's state file: the exactly-once ledger lives in it, so it must never be torn, must
// keep 64-bit numbers exact, and a damaged file must read as "unreadable", never as a throw.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { U64_MAX } from '../src/core/units.js';
import { loadState, loadStateSchemas, parseState, serializeState, STATE_FILE, StateStore, type DaemonState } from '../src/daemon/state-store.js';

// parseState reads with the schemas the daemon loads only when a state file exists.
before(() => loadStateSchemas());

let root: string;
let counter = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'xen-pmem-state-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function freshDir(): string {
  return join(root, `run-${counter++}`, 'xen-pmem');
}

function sampleState(sequence: number): DaemonState {
  const spfn = 0x1_0000_0000_0000n + BigInt(sequence) * 0x1000n;
  const request = { spfn, epfn: spfn + 0x800n, rsvSpfn: spfn + 0x200n, rsvEpfn: spfn + 0x400n, dataSpfn: spfn + 0x400n, dataEpfn: spfn + 0x800n };
  return {
    version: 1,
    pid: 4242,
    startedAt: '2026-11-21T10:00:00.000Z',
    updatedAt: new Date(Date.UTC(2026, 10, 21, 10) + sequence).toISOString(),
    ready: sequence % 2 === 0,
    capability: { kind: 'pmem-add', xenVersion: '4.8-pmem-rfc' },
    devices: [{
      device: 'pmem0', devPath: '/dev/pmem0', namespace: 'namespace0.0', mode: 'raw', region: 'region0',
      state: 'reported', reason: 'reported', message: `pmem0: reported (save ${sequence})`, since: '2026-11-21T10:00:01.000Z',
      layout: {
        region: { start: spfn << 12n, size: 0x80_0000n },
        reserved: { start: (spfn + 0x200n) << 12n, size: 0x20_0000n },
        data: { start: (spfn + 0x400n) << 12n, size: 0x40_0000n },
        request: { ...request },
        uuid: '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c',
      },
    }],
    ledger: [{ interface: 'pmem-add', device: 'pmem0', uuid: '6f1d2c3b-4a59-4e68-9d7c-8b9a0f1e2d3c', request, status: 'reported', at: '2026-11-21T10:00:01.000Z' }],
  };
}

describe('serialize and parse', () => {
  test('every bigint is a hex string on disk and comes back as the same bigint', () => {
    const state = sampleState(7);
    state.ledger[0]!.request.epfn = U64_MAX;
    state.devices[0]!.layout!.region.size = U64_MAX;
    const text = serializeState(state);
    assert.match(text, /"epfn": "0xffffffffffffffff"/);
    assert.match(text, /"spfn": "0x1000000007000"/);
    assert.doesNotMatch(text, /"spfn": \d/, 'no 64-bit value is written as a JSON number');
    const parsed = parseState(text);
    assert.equal(parsed.kind, 'loaded');
    assert.deepEqual(parsed.kind === 'loaded' ? parsed.state : null, state);
    assert.equal(typeof (parsed.kind === 'loaded' ? parsed.state.ledger[0]!.request.spfn : null), 'bigint');
  });

  test('a state without devices, ledger or capability round-trips', () => {
    const state: DaemonState = { ...sampleState(0), capability: null, devices: [], ledger: [] };
    assert.deepEqual(parseState(serializeState(state)), { kind: 'loaded', state });
  });

  const corrupt: [string, string, RegExp][] = [
    ['empty file', '', /^not JSON/],
    ['torn file', serializeState(sampleState(1)).slice(0, 200), /^not JSON/],
    ['a PFN as a JSON number', serializeState(sampleState(1)).replace('"spfn": "0x1000000001000"', '"spfn": 281474976714752'), /^devices\.0\.layout\.request\.spfn: /],
    ['a PFN in decimal text', serializeState(sampleState(1)).replace('"spfn": "0x1000000001000"', '"spfn": "281474976714752"'), /^devices\.0\.layout\.request\.spfn: /],
    ['an unknown device state', serializeState(sampleState(1)).replace('"state": "reported"', '"state": "done"'), /^devices\.0\.state: /],
    ['an unknown ledger status', serializeState(sampleState(1)).replace('"status": "reported"', '"status": "maybe"'), /^ledger\.0\.status: /],
    ['a later version', serializeState(sampleState(1)).replace('"version": 1', '"version": 2'), /^version: /],
    ['not an object', '"state"', /^\(top level\): /],
  ];
  for (const [what, text, message] of corrupt) {
    test(`corrupt (${what}) is unreadable, not a throw`, () => {
      const result = parseState(text);
      assert.equal(result.kind, 'unreadable');
      assert.match(result.kind === 'unreadable' ? result.message : '', message);
    });
  }
});

describe('loadState', () => {
  test('no file: missing', async () => {
    assert.deepEqual(await loadState(freshDir()), { kind: 'missing' });
  });

  test('a corrupt file: unreadable with the reason', async () => {
    const dir = freshDir();
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, STATE_FILE), '{"version": 1, "pid": "x"');
    const result = await loadState(dir);
    assert.equal(result.kind, 'unreadable');
  });

  test('a file that cannot be read: unreadable with the errno', async () => {
    const dir = freshDir();
    await mkdir(join(dir, STATE_FILE), { recursive: true });
    assert.deepEqual(await loadState(dir), { kind: 'unreadable', message: 'cannot be read (EISDIR)' });
  });
});

describe('StateStore.save', () => {
  test('creates its directory and writes what loadState reads back', async () => {
    const dir = freshDir();
    const store = new StateStore(dir);
    await store.save(sampleState(3));
    assert.deepEqual(await loadState(dir), { kind: 'loaded', state: sampleState(3) });
  });

  test('many racing saves: readers never see a torn file, the last save wins, no temporary file is left', async () => {
    const dir = freshDir();
    const store = new StateStore(dir);
    await store.save(sampleState(0));
    const SAVES = 120;
    let writing = true;
    let reads = 0;
    // Readers poll the file for as long as the writes go on: each read must parse as a whole
    // state, and no reader may see an older state after a newer one.
    const readers = Array.from({ length: 3 }, async () => {
      let latest = '';
      while (writing) {
        const result = await loadState(dir);
        reads++;
        assert.equal(result.kind, 'loaded', `read ${reads}: ${result.kind === 'unreadable' ? result.message : result.kind}`);
        if (result.kind === 'loaded') {
          assert.ok(result.state.updatedAt >= latest, `${result.state.updatedAt} read after ${latest}`);
          latest = result.state.updatedAt;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    const saves = Array.from({ length: SAVES }, (_, index) => store.save(sampleState(index + 1)));
    await Promise.all(saves);
    writing = false;
    await Promise.all(readers);

    assert.ok(reads > 0, 'the readers ran while the saves went on');
    const final = await loadState(dir);
    assert.deepEqual(final, { kind: 'loaded', state: sampleState(SAVES) });
    const leftovers = (await readdir(dir)).filter((name) => name !== STATE_FILE);
    assert.deepEqual(leftovers, []);
  });

  test('a failed save rejects its caller and does not poison the next one', async () => {
    const blocked = join(root, `blocked-${counter++}`);
    await writeFile(blocked, 'a file where a directory should be');
    const store = new StateStore(join(blocked, 'xen-pmem'));
    await assert.rejects(store.save(sampleState(1)), { code: 'ENOTDIR' });
    await rm(blocked);
    await store.save(sampleState(2));
    assert.deepEqual(await loadState(join(blocked, 'xen-pmem')), { kind: 'loaded', state: sampleState(2) });
  });

  test('the file on disk is the serialization, byte for byte', async () => {
    const dir = freshDir();
    await new StateStore(dir).save(sampleState(5));
    assert.equal(await readFile(join(dir, STATE_FILE), 'utf8'), serializeState(sampleState(5)));
  });
});
