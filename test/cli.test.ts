// The `xen-pmem` CLI on sparse image files with the real sfdisk and blkid: setup, inspect, wipe,
// and every validation failure produced by damaging a real image.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it, type TestContext } from 'node:test';

import { COMMANDS, main, processIO } from '../src/cli/xen-pmem.js';
import { FIELDS, SUPERBLOCK_BYTES } from '../src/core/superblock.js';
import { GiB, HUGE_PAGE_BYTES, KiB, MiB, PAGE_BYTES, TiB, U64_MAX } from '../src/core/units.js';
import { xenMinimumReservedPages } from '../src/core/xen-sizing.js';
import { openDevice } from '../src/io/device.js';
import { scanDevice } from '../src/io/scan.js';
import { CLI_PATH, inspectJson, inspectJsonAsync, runCli, runCliAsync, stackTraceLines, type CliResult, type InspectJson } from '../fixtures/cli.js';
import {
  copyOffsets, fillRandom, flipByte, patchSuperblockBytes, readBytes, readSuperblockAt, rewriteSuperblocks, writeBytes,
} from './helpers/damage.js';
import {
  copySparseImage, hasCommand, makeScratchDir, makeSparseImage, resizeImage, sfdiskDump, sfdiskJson, writeTable,
} from '../fixtures/images.js';

const missing = ['sfdisk', 'blkid'].filter((tool) => !hasCommand(tool));
const skip = missing.length > 0 ? `${missing.join(' and ')} not installed (Debian packages fdisk, util-linux)` : false;

const ONE_GIB = 1n * GiB;
const { primary: PRIMARY, backup: BACKUP, both: BOTH } = copyOffsets(ONE_GIB);

/** Every CLI run in this file: no failure may surface as a stack trace. */
function cli(args: string[], input?: string): CliResult {
  const result = runCli(args, input === undefined ? {} : { input });
  assert.deepEqual(stackTraceLines(result.stderr), [], `stack trace on stderr:\n${result.stderr}`);
  assert.deepEqual(stackTraceLines(result.stdout), [], `stack trace on stdout:\n${result.stdout}`);
  return result;
}

function inspect(path: string): { code: number; json: InspectJson } {
  const result = inspectJson(path);
  assert.deepEqual(stackTraceLines(result.stderr), [], result.stderr);
  return result;
}

/** The CLI's own entry point in this process, output captured: cheap enough to run per case. */
async function cliInProcess(args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    out: (text) => { stdout += text + '\n'; },
    err: (text) => { stderr += text + '\n'; },
    ask: async () => null,
    env: {},
    flock: processIO.flock,
    xencall: processIO.xencall,
  });
  return { code, stdout, stderr };
}

describe('xen-pmem CLI on sparse images', { skip }, () => {
  let scratch: ReturnType<typeof makeScratchDir>;
  /** A 1 GiB image as `setup` leaves it: reserved 2..20 MiB, data 20..1,022 MiB, backup at 1,023 MiB. */
  let pristine: string;
  let counter = 0;

  before(() => {
    scratch = makeScratchDir('cli');
    pristine = makeSparseImage(join(scratch.dir, 'pristine-1g.img'), ONE_GIB);
    const setup = cli(['setup', pristine]);
    assert.equal(setup.code, 0, setup.stderr);
  });
  after(() => scratch.remove());

  /** A private copy of the set-up 1 GiB image. */
  function fresh(): string {
    counter++;
    return copySparseImage(pristine, join(scratch.dir, `case-${counter}.img`));
  }

  function image(name: string, size: bigint): string {
    return makeSparseImage(join(scratch.dir, name), size);
  }

  describe('setup, then inspect', () => {
    for (const [label, size] of [['1 GiB', ONE_GIB], ['1 TiB', 1n * TiB]] as const) {
      it(`lays out a ${label} image that inspect finds valid`, () => {
        const path = image(`setup-${label.replace(' ', '')}.img`, size);
        const setup = cli(['setup', path]);
        assert.equal(setup.code, 0, setup.stderr);
        assert.match(setup.stdout, /Wrote the partition table, super block [0-9a-f-]{36} and its backup\./);
        assert.match(setup.stdout, /valid xen-pmem layout, format 1\.0, read from the primary copy/);

        const { code, json } = inspect(path);
        assert.equal(code, 0);
        assert.equal(json.status, 'valid');
        assert.equal(json.source, 'primary');
        assert.deepEqual(json.notes, []);
        assert.equal(BigInt(json.size), size);
        const sb = json.superblock!;
        assert.equal(sb.version, '1.0');
        const pages = size / PAGE_BYTES;
        assert.ok(BigInt(sb.reservedSize) >= xenMinimumReservedPages(pages) * PAGE_BYTES, 'reserved area meets rule 4');
        assert.equal(BigInt(sb.reservedOffset) % HUGE_PAGE_BYTES, 0n);
        assert.equal(BigInt(sb.dataOffset) % HUGE_PAGE_BYTES, 0n);
        assert.ok(sb.dataOffset >= sb.reservedOffset + sb.reservedSize);

        const table = sfdiskJson(path);
        assert.equal(table?.label, 'gpt');
        const first = table!.partitions![0]!;
        assert.ok(BigInt(first.start) * 512n >= BigInt(sb.reservedOffset + sb.reservedSize),
          `partition 1 at sector ${first.start} starts before the reserved area ends at ${sb.reservedOffset + sb.reservedSize}`);
        assert.deepEqual(json.partitions, [{ number: 1, start: first.start * 512, size: first.size * 512 }]);
      });
    }

    it('writes the partitions asked for, in order', () => {
      const path = image('partitions.img', 256n * MiB);
      const setup = cli(['setup', path, '--partition', '100M', '--partition', 'rest']);
      assert.equal(setup.code, 0, setup.stderr);
      // 256 MiB: data 14..254 MiB. 100 MiB at 14 MiB, then the rest from 114 MiB: 140 MiB.
      assert.deepEqual(sfdiskJson(path)!.partitions!.map((p) => [p.start * 512, p.size * 512]), [
        [Number(14n * MiB), Number(100n * MiB)],
        [Number(114n * MiB), Number(140n * MiB)],
      ]);
    });

    it('--dry-run prints the layout and writes nothing', () => {
      const path = image('dry-run.img', ONE_GIB);
      const before = statSync(path);
      const result = cli(['setup', path, '--dry-run']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /reserved for Xen +0x200000-0x13fffff +18\.00 MiB +Xen's minimum 10\.00 MiB/);
      assert.match(result.stdout, /Dry run: nothing was written\./);
      const after = statSync(path);
      assert.equal(after.blocks, 0, 'the sparse image gained data blocks');
      assert.equal(after.mtimeMs, before.mtimeMs);
      assert.equal(sfdiskJson(path), null);
    });

    it('refuses a device with a filesystem unless --force is given', () => {
      const path = image('ext4.img', 64n * MiB);
      if (hasCommand('mkfs.ext4')) {
        assert.equal(spawnSync('mkfs.ext4', ['-q', '-F', path]).status, 0);
      } else {
        writeBytes(path, 1080n, Uint8Array.of(0x53, 0xef)); // the ext2/3/4 magic
      }
      const refused = cli(['setup', path]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /^xen-pmem setup: .*ext4\.img is not blank \(TYPE=ext[234]\); use --force to overwrite it and lose its data\n$/);
      assert.equal(sfdiskJson(path), null, 'no partition table was written');
      assert.ok(readBytes(path, PRIMARY, SUPERBLOCK_BYTES).every((b) => b === 0), 'no super block was written');
      const forced = cli(['setup', path, '--force']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.equal(inspect(path).json.status, 'valid');
    });

    it('refuses a device that is already set up unless --force is given', () => {
      const path = fresh();
      const uuid = readSuperblockAt(path, PRIMARY).uuid;
      const refused = cli(['setup', path]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /is not blank \(PTTYPE=gpt, a xen-pmem super block\)/);
      assert.equal(readSuperblockAt(path, PRIMARY).uuid, uuid, 'the old super block is untouched');
      const forced = cli(['setup', path, '--force']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.notEqual(readSuperblockAt(path, PRIMARY).uuid, uuid);
    });

    it('refuses a device too small for a layout, naming the sizes', () => {
      const path = image('tiny.img', 4n * MiB);
      const result = cli(['setup', path]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /cannot lay out .*: a device of 4194304 bytes \(4\.00 MiB\) leaves no data area after 12\.00 MiB reserved for Xen; at least 17825792 bytes \(17\.00 MiB\) are needed/);
    });
  });

  describe('inspect', () => {
    it('uses the backup, with a note, when one byte of the primary is damaged', () => {
      const path = fresh();
      flipByte(path, PRIMARY + BigInt(FIELDS.reservedSize.offset));
      const { code, json } = inspect(path);
      assert.equal(code, 0);
      assert.equal(json.status, 'valid');
      assert.equal(json.source, 'backup');
      assert.equal(json.notes?.length, 1);
      assert.match(json.notes![0]!, /^primary super block at 0x100000 is damaged \(bad-checksum: checksum is 0x[0-9a-f]{8} but the block sums to 0x[0-9a-f]{8}\); the backup at 0x3ff00000 is used$/);
      const human = cli(['inspect', path]);
      assert.equal(human.code, 0);
      assert.match(human.stdout, /read from the backup copy/);
      assert.match(human.stdout, /note: primary super block at 0x100000 is damaged/);
    });

    it('reports a valid block whose creation time no calendar can show', () => {
      const path = fresh();
      rewriteSuperblocks(path, BOTH, () => ({ createdAt: U64_MAX }));
      const human = cli(['inspect', path]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /written by +xen-pmem [^ ]+ at 18446744073709551615 s after the epoch/);
      const { code, json } = inspect(path);
      assert.equal(code, 0);
      assert.equal(json.status, 'valid');
      assert.equal(json.superblock, undefined, 'a value JSON cannot hold exactly leaves the super block out');
    });

    it('says "absent" for an all-zero image', () => {
      const { code, json } = inspect(image('zeros.img', ONE_GIB));
      assert.equal(code, 1);
      assert.equal(json.status, 'absent');
      assert.equal(json.message, 'no xen-pmem super block at 0x100000 or 0x3ff00000');
    });

    it('says "absent" for an image of random bytes', () => {
      const path = image('garbage.img', 16n * MiB);
      fillRandom(path, 0n, Number(16n * MiB), 0x5eed);
      const { code, json } = inspect(path);
      assert.equal(code, 1);
      assert.equal(json.status, 'absent');
      const human = cli(['inspect', path]);
      assert.equal(human.code, 1);
      assert.match(human.stdout, /no xen-pmem super block/);
    });

    it('exits 2 with one line for usage and I/O errors', async () => {
      const cases: [string[], RegExp][] = [
        [[], /^$/],
        [['frobnicate'], /^xen-pmem: unknown command "frobnicate" \(see xen-pmem --help\)\n$/],
        [['inspect'], /^xen-pmem inspect: missing DEVICE \(see --help\)\n$/],
        [['inspect', 'a', 'b'], /^xen-pmem inspect: expected one DEVICE, got 2: a b\n$/],
        [['inspect', join(scratch.dir, 'nope.img')], /^xen-pmem inspect: cannot open .*nope\.img: no such file or device\n$/],
        [['inspect', scratch.dir], /is neither a block device nor a regular file\n$/],
        [['inspect', pristine, '--bogus'], /^xen-pmem inspect: .*--bogus.* \(see --help\)\n$/],
        [['setup', pristine, '--partition', '12Q'], /^xen-pmem setup: --partition 12Q: expected a size/],
        [['wipe'], /^xen-pmem wipe: missing DEVICE/],
      ];
      const results = await Promise.all(cases.map(([args]) => runCliAsync(args)));
      for (const [index, [args, stderr]] of cases.entries()) {
        const result = results[index]!;
        assert.deepEqual(stackTraceLines(result.stderr), [], result.stderr);
        assert.equal(result.code, 2, `xen-pmem ${args.join(' ')}`);
        assert.match(result.stderr, stderr, `xen-pmem ${args.join(' ')}`);
      }
    });

    it('exits 0 for a valid device and 1 for an invalid one', () => {
      assert.equal(cli(['inspect', pristine]).code, 0);
      const path = fresh();
      rewriteSuperblocks(path, BOTH, () => ({ majorVersion: 2 }));
      const invalid = cli(['inspect', path]);
      assert.equal(invalid.code, 1);
      assert.match(invalid.stdout, /: invalid \[unsupported-major-version\]: /);
    });
  });

  describe('--help', () => {
    it('lists every command and exits 0', () => {
      const result = cli(['--help']);
      assert.equal(result.code, 0);
      for (const command of COMMANDS) assert.match(result.stdout, new RegExp(`^  ${command.name} +${escapeRegExp(command.summary)}$`, 'm'));
      assert.equal(cli([]).code, 2, 'no command at all is a usage error');
    });

    for (const name of COMMANDS.map((c) => c.name)) {
      it(`xen-pmem ${name} --help prints its usage and exits 0`, () => {
        const result = cli([name, '--help']);
        assert.equal(result.code, 0);
        assert.match(result.stdout, new RegExp(`^Usage: xen-pmem ${name} `));
        assert.match(result.stdout, /Exit codes:/);
        assert.equal(result.stderr, '');
      });
    }
  });

  describe('wipe', () => {
    it('--yes zeroes both copies and leaves the partitions alone', () => {
      const path = fresh();
      const tableBefore = sfdiskJson(path);
      const result = cli(['wipe', path, '--yes']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /wiped the xen-pmem super block at 0x100000 and 0x3ff00000; partitions were left alone/);
      for (const offset of BOTH) assert.ok(readBytes(path, offset, SUPERBLOCK_BYTES).every((b) => b === 0));
      assert.deepEqual(sfdiskJson(path), tableBefore);
      const { code, json } = inspect(path);
      assert.equal(code, 1);
      assert.equal(json.status, 'absent');
      assert.equal(json.partitions.length, 1);
    });

    it('without --yes and without a terminal refuses with exit 2 and wipes nothing', () => {
      const path = fresh();
      const result = cli(['wipe', path], 'y\n');
      assert.equal(result.code, 2);
      assert.match(result.stderr, /^xen-pmem wipe: not on a terminal: pass --yes to wipe without asking\n$/);
      assert.equal(inspect(path).json.status, 'valid');
    });

    it('has nothing to do on a blank device', () => {
      const result = cli(['wipe', image('blank.img', 64n * MiB), '--yes']);
      assert.equal(result.code, 0);
      assert.match(result.stdout, /no xen-pmem super block to wipe/);
    });
  });

  // Each case spawns the CLI; they are independent, so a few run at once.
  describe('every validation failure on a damaged image', { concurrency: 3 }, () => {
    interface Case {
      name: string;
      reason: string;
      damage: (path: string) => void;
      /** The sentence must name the numbers involved. */
      message: RegExp;
    }
    const MOVE_FIRST_LBA_BACK = (path: string, partition: string) =>
      writeTable(path, sfdiskDump(path).replace(/^first-lba: \d+$/m, 'first-lba: 2048') + partition + '\n');

    const cases: Case[] = [
      {
        name: 'bad checksum in both copies',
        reason: 'bad-checksum',
        damage: (path) => { for (const offset of BOTH) flipByte(path, offset + BigInt(FIELDS.createdAt.offset)); },
        message: /^primary super block at 0x100000: bad-checksum: checksum is 0x[0-9a-f]{8} but the block sums to 0x[0-9a-f]{8}; backup at 0x3ff00000: bad-checksum: checksum is 0x[0-9a-f]{8}/,
      },
      {
        name: 'unknown major version (2, checksum correct)',
        reason: 'unsupported-major-version',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ majorVersion: 2 })),
        message: /format version 2\.x is not understood by this version \(it reads 1\.x\)/,
      },
      {
        name: 'device grew by 2 MiB',
        reason: 'device-size-mismatch',
        damage: (path) => resizeImage(path, ONE_GIB + 2n * MiB),
        message: /^the super block was written for a device of 1073741824 bytes \(1\.00 GiB\) but this device has 1075838976 bytes \(1\.00 GiB\)$/,
      },
      {
        name: 'device shrank by 2 MiB',
        reason: 'device-size-mismatch',
        damage: (path) => resizeImage(path, ONE_GIB - 2n * MiB),
        message: /written for a device of 1073741824 bytes .* but this device has 1071644672 bytes \(1022\.00 MiB\)$/,
      },
      {
        name: 'reserved area outside the device',
        reason: 'area-outside-device',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ reservedOffset: ONE_GIB })),
        message: /^the reserved area 0x40000000-0x411fffff ends past the device's last byte 0x3fffffff$/,
      },
      {
        name: 'data area outside the device',
        reason: 'area-outside-device',
        // From 20 MiB, 1,004 MiB + 4 KiB: one page past the end.
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataSize: 1004n * MiB + 4n * KiB })),
        message: /^the data area 0x1400000-0x40000fff ends past the device's last byte 0x3fffffff$/,
      },
      {
        name: 'data area at the far end of 64 bits',
        reason: 'area-outside-device',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataOffset: U64_MAX - (U64_MAX % (2n * MiB)) })),
        // 0xffffffffffe00000 + 1,002 MiB (0x3ea00000) - 1.
        message: /^the data area 0xffffffffffe00000-0x1000000003e7fffff ends past the device's last byte 0x3fffffff$/,
      },
      {
        name: 'reserved area over the primary partition table',
        reason: 'reserved-overlaps-partition-table',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ reservedOffset: 0n })),
        message: /^the reserved area 0x0-0x11fffff overlaps the primary GPT 0x0-0x43ff$/,
      },
      {
        name: 'data area over the backup partition table',
        reason: 'data-overlaps-partition-table',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataSize: 1004n * MiB })),
        message: /^the data area 0x1400000-0x3fffffff overlaps the backup GPT 0x3fffbe00-0x3fffffff$/,
      },
      {
        name: 'data area over the backup super block',
        reason: 'area-overlaps-superblock',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataSize: 1003n * MiB + 4n * KiB })),
        message: /^the data area 0x1400000-0x3ff00fff covers the backup super block at 0x3ff00000$/,
      },
      {
        name: 'a partition added over the reserved area (first-lba moved back)',
        reason: 'reserved-overlaps-partition',
        damage: (path) => MOVE_FIRST_LBA_BACK(path, 'start=4096, size=4096'),
        message: /^partition 2 0x200000-0x3fffff overlaps the reserved area 0x200000-0x13fffff$/,
      },
      {
        name: 'a partition added over the primary super block',
        reason: 'superblock-inside-partition',
        damage: (path) => MOVE_FIRST_LBA_BACK(path, 'start=2048, size=2048'),
        message: /^partition 2 0x100000-0x1fffff covers the primary super block at 0x100000$/,
      },
      {
        name: 'a partition added past the data area (last-lba moved on)',
        reason: 'partition-outside-data-area',
        damage: (path) => writeTable(path, sfdiskDump(path).replace(/^last-lba: \d+$/m, 'last-lba: 2095103') + 'start=2093056, size=1024\n'),
        message: /^partition 2 0x3fe00000-0x3fe7ffff is not inside the data area 0x1400000-0x3fdfffff$/,
      },
      {
        name: 'reserved area smaller than Xen\'s rule 4',
        reason: 'reserved-too-small',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ reservedSize: 8n * MiB })),
        message: /^the reserved area holds 2048 pages \(8\.00 MiB\) but Xen needs at least 2560 pages \(10\.00 MiB\) for a device of 262144 pages$/,
      },
      {
        name: 'reserved area smaller than its own recorded costs',
        reason: 'reserved-too-small',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ reservedSize: 10n * MiB + 4n * KiB })),
        message: /holds 10\.00 MiB but the per-page costs it records need 11\.00 MiB for 262144 pages$/,
      },
      {
        name: 'data size not a multiple of 4 KiB',
        reason: 'misaligned',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataSize: 1002n * MiB - 512n })),
        message: /^data area size 0x3e9ffe00 is not a multiple of 4\.00 KiB$/,
      },
      {
        name: 'reserved offset not a multiple of 2 MiB',
        reason: 'misaligned',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ reservedOffset: 2n * MiB + 4n * KiB })),
        message: /^reserved area offset 0x201000 is not a multiple of 2\.00 MiB$/,
      },
      {
        name: 'reserved and data areas overlapping',
        reason: 'areas-overlap',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataOffset: 12n * MiB })),
        message: /^the reserved area 0x200000-0x13fffff and the data area 0xc00000-0x3f5fffff overlap$/,
      },
      {
        name: 'empty data area',
        reason: 'area-empty',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ dataSize: 0n })),
        message: /^the data area is empty$/,
      },
      {
        name: 'primary and backup disagreeing',
        reason: 'copies-disagree',
        damage: (path) => rewriteSuperblocks(path, [PRIMARY], (sb) => ({ createdAt: sb.createdAt + 1n })),
        message: /^primary \(reservation [0-9a-f-]{36}\) and backup \(reservation [0-9a-f-]{36}\) disagree on createdAt; neither is used/,
      },
      {
        name: 'copies swapped (each where the other belongs)',
        reason: 'misplaced-copy',
        damage: (path) => {
          const primary = readBytes(path, PRIMARY, SUPERBLOCK_BYTES);
          const backup = readBytes(path, BACKUP, SUPERBLOCK_BYTES);
          writeBytes(path, PRIMARY, backup);
          writeBytes(path, BACKUP, primary);
        },
        message: /primary super block at 0x100000: misplaced-copy: a backup copy was found where the primary belongs; backup at 0x3ff00000: misplaced-copy: a primary copy was found where the backup belongs/,
      },
      {
        name: 'copies recording another primary offset',
        reason: 'misplaced-copy',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ primaryOffset: 2n * MiB })),
        message: /records copies at 0x200000 and 0x3ff00000, but a device of 1073741824 bytes keeps them at 0x100000 and 0x3ff00000/,
      },
      {
        name: 'an MBR written over the GPT',
        reason: 'partition-table-not-gpt',
        // One MBR partition over the data area: 20 MiB = sector 40,960, 1,002 MiB = 2,052,096 sectors.
        damage: (path) => writeTable(path, 'label: dos\nstart=40960, size=2052096, type=83\n'),
        message: /^the device has an MBR partition table; xen-pmem layouts use GPT$/,
      },
      {
        name: 'no partition table at all',
        reason: 'partition-table-missing',
        damage: (path) => writeBytes(path, 0n, new Uint8Array(34 * 512)),
        message: /^the device has a super block but no partition table$/,
      },
      {
        name: 'a GPT header with a bad CRC',
        reason: 'partition-table-invalid',
        damage: (path) => flipByte(path, 512n + 56n),
        message: /^GPT header checksum is 0x[0-9a-f]+ but the header sums to 0x[0-9a-f]+$/,
      },
      {
        name: 'page size other than 4 KiB',
        reason: 'unsupported-page-size',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ pageSize: 65536 })),
        message: /^the layout was sized for 65536-byte pages; Xen on x86-64 uses 4096$/,
      },
      {
        name: 'per-page costs below Xen\'s',
        reason: 'costs-below-xen',
        damage: (path) => rewriteSuperblocks(path, BOTH, () => ({ m2pBytes: 4 })),
        message: /^the layout was sized with 32\/4\/4 bytes per page \(page_info\/M2P\/compat M2P\); Xen needs 32\/8\/4$/,
      },
      {
        name: 'non-zero padding',
        reason: 'nonzero-padding',
        damage: (path) => { for (const offset of BOTH) patchSuperblockBytes(path, offset, (b) => { b[1000] = 0xaa; }); },
        message: /byte 1000 is past the 192-byte header and must be zero/,
      },
      {
        name: 'header size wrong for v1.0',
        reason: 'bad-header-size',
        damage: (path) => { for (const offset of BOTH) patchSuperblockBytes(path, offset, (b) => b.writeUInt32LE(256, FIELDS.headerBytes.offset)); },
        message: /header size 256 is impossible for version 1\.0/,
      },
      {
        name: 'undefined flags',
        reason: 'unknown-flags',
        damage: (path) => { for (const offset of BOTH) patchSuperblockBytes(path, offset, (b) => { b[FIELDS.flags.offset + 1] = 0x01; }); },
        message: /flags 0x0000010[01] include bits this version does not define/,
      },
      {
        name: 'a zero reservation UUID',
        reason: 'bad-uuid',
        damage: (path) => { for (const offset of BOTH) patchSuperblockBytes(path, offset, (b) => b.fill(0, FIELDS.uuid.offset, FIELDS.uuid.offset + 16)); },
        message: /the reservation UUID is all zero/,
      },
      {
        name: 'a writer field that is not text',
        reason: 'bad-writer',
        damage: (path) => { for (const offset of BOTH) patchSuperblockBytes(path, offset, (b) => { b[FIELDS.writer.offset] = 0x01; }); },
        message: /the writer field is not NUL-terminated UTF-8 text/,
      },
      {
        name: 'a device cut short inside the primary copy',
        reason: 'short-read',
        damage: (path) => resizeImage(path, PRIMARY + 100n),
        message: /only 100 of 4096 bytes could be read/,
      },
    ];

    for (const c of cases) {
      it(`${c.reason}: ${c.name}`, async () => {
        const path = fresh();
        c.damage(path);
        const { code, json, stderr } = await inspectJsonAsync(path);
        assert.deepEqual(stackTraceLines(stderr), [], stderr);
        assert.equal(json.status, 'invalid', JSON.stringify(json));
        assert.equal(json.reason, c.reason, json.message);
        assert.match(json.message ?? '', c.message);
        assert.equal(code, 1);
        const human = await cliInProcess(['inspect', path]);
        assert.equal(human.code, 1);
        assert.ok(human.stdout.includes(`invalid [${c.reason}]: ${json.message}`), human.stdout);
      });
    }
  });

  describe('inspect reads O(1) bytes', () => {
    let big: string;
    before(() => {
      big = image('scan-1t.img', 1n * TiB);
      const setup = cli(['setup', big]);
      assert.equal(setup.code, 0, setup.stderr);
    });

    it('scans a 1 TiB image in a few KiB (in-process count and time)', async (t: TestContext) => {
      const started = performance.now();
      const device = await openDevice(big, 'read');
      let verdict;
      try {
        verdict = await scanDevice(device);
      } finally {
        await device.close();
      }
      const elapsedMs = performance.now() - started;
      assert.equal(verdict.status, 'valid');
      assert.ok(device.bytesRead > 0);
      assert.ok(device.bytesRead <= Number(1n * MiB), `read ${device.bytesRead} bytes`);
      t.diagnostic(`scan of a 1 TiB image: ${device.bytesRead} bytes read in ${elapsedMs.toFixed(1)} ms`);
    });

    it('inspect of a 1 TiB image reads at most 1 MiB of it (counted with strace)', (t: TestContext) => {
      const strace = ensureStrace();
      if (strace !== true) {
        t.skip(strace);
        return;
      }
      const traceDir = join(scratch.dir, 'strace');
      mkdirSync(traceDir);
      const result = spawnSync('strace', ['-ff', '-y', '-e', 'trace=read,pread64,readv,preadv,preadv2', '-o', join(traceDir, 'trace'),
        process.execPath, CLI_PATH, 'inspect', big], { encoding: 'utf8', env: { ...process.env } });
      if (result.status !== 0 && /PTRACE|ptrace|Operation not permitted/.test(result.stderr)) {
        t.skip(`strace cannot trace here: ${result.stderr.trim().split('\n')[0]}`);
        return;
      }
      assert.equal(result.status, 0, result.stderr);
      const bytes = bytesReadFrom(traceDir, big);
      assert.ok(bytes.calls > 0, 'strace saw the reads of the image');
      assert.ok(bytes.total <= Number(1n * MiB), `inspect read ${bytes.total} bytes of a 1 TiB image`);
      t.diagnostic(`inspect read ${bytes.total} bytes of the 1 TiB image in ${bytes.calls} calls`);
    });
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** strace, installed from Debian when missing and we may; a reason to skip otherwise. */
function ensureStrace(): true | string {
  if (hasCommand('strace')) return true;
  if (process.getuid?.() !== 0) return 'strace is not installed and installing it needs root (apt-get install strace)';
  const install = spawnSync('apt-get', ['install', '-y', '-qq', 'strace'], { encoding: 'utf8', timeout: 180_000 });
  if (install.status === 0 && hasCommand('strace')) return true;
  return `strace is not installed and apt-get install strace failed: ${(install.stderr || install.stdout || '').trim().split('\n').pop()}`;
}

/**
 * Sums what read-type calls returned on file descriptors that strace -y shows as `path`. With -ff
 * every thread has its own file, so no call is split into "unfinished" and "resumed" halves.
 */
function bytesReadFrom(traceDir: string, path: string): { total: number; calls: number } {
  const call = /^(?:read|pread64|readv|preadv|preadv2)\((\d+)<([^>]*)>.*\)\s+=\s+(\d+)/;
  let total = 0;
  let calls = 0;
  for (const file of readdirSync(traceDir)) {
    for (const line of readFileSync(join(traceDir, file), 'utf8').split('\n')) {
      const match = call.exec(line);
      if (!match || match[2] !== path) continue;
      total += Number(match[3]);
      calls++;
    }
  }
  return { total, calls };
}
