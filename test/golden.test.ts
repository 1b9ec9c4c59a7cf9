// Blocks written by format 1.0 must read the same in every later version: the golden layout in
// fixtures/golden/superblock-1.0 was written by xen-pmem 0.1.0 and is never regenerated.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { decodeSuperblock, encodeSuperblock, FLAG_BACKUP_COPY } from '../src/core/superblock.js';
import { assembleGolden } from '../fixtures/golden.js';
import { runCli } from './helpers/cli.js';
import { makeScratchDir } from './helpers/images.js';

const scratch = makeScratchDir('golden');
after(() => scratch.remove());

describe('the golden 1.0 layout', () => {
  const golden = assembleGolden('superblock-1.0', join(scratch.dir, 'golden.img'));

  test('xen-pmem inspect --json prints what it printed when the layout was written', () => {
    const result = runCli(['inspect', golden.path, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { ...golden.inspect, device: golden.path });
  });

  test('both copies decode as version 1.0, and today\'s writer writes them byte for byte', () => {
    for (const [file, backup] of [['primary.bin', false], ['backup.bin', true]] as const) {
      const bytes = golden.piece(file);
      const verdict = decodeSuperblock(bytes);
      assert.equal(verdict.kind, 'ok', `${file}: ${verdict.kind === 'damaged' ? verdict.message : verdict.kind}`);
      const { superblock } = verdict as Extract<typeof verdict, { kind: 'ok' }>;
      assert.deepEqual([superblock.majorVersion, superblock.minorVersion], [1, 0], file);
      assert.equal((superblock.flags & FLAG_BACKUP_COPY) !== 0, backup, file);
      assert.ok(encodeSuperblock(superblock).equals(bytes), `${file} re-encodes to the same 4096 bytes`);
    }
  });
});
