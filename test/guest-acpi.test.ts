// The ACPI tables a guest's Linux adds from the front of its initrd (src/core/guest-acpi.ts), and
// `xen-pmem guest-tables`, which writes them. Linux rejects a table whose bytes do not sum to
// zero, so every table is checked by the rule Linux applies, field by field where Linux reads it.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { main, processIO } from '../src/cli/xen-pmem.js';
import { guestAcpiCpio, nfitTable, ssdtTable } from '../src/core/guest-acpi.js';
import { GiB } from '../src/core/units.js';

function sum(bytes: Buffer): number {
  return bytes.reduce((total, byte) => (total + byte) & 0xff, 0);
}

/** The entries of a newc cpio: name and data. */
function readCpio(bytes: Buffer): Array<{ name: string; mode: number; data: Buffer }> {
  const entries = [];
  let at = 0;
  for (;;) {
    assert.equal(bytes.toString('latin1', at, at + 6), '070701', `magic at ${at}`);
    const field = (index: number): number => parseInt(bytes.toString('latin1', at + 6 + 8 * index, at + 14 + 8 * index), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = bytes.toString('latin1', at + 110, at + 110 + nameSize - 1);
    const dataAt = (at + 110 + nameSize + 3) & ~3;
    if (name === 'TRAILER!!!') return entries;
    entries.push({ name, mode, data: bytes.subarray(dataAt, dataAt + size) });
    at = (dataAt + size + 3) & ~3;
  }
}

describe('the guest\'s ACPI tables', () => {
  test('NFIT: one persistent-memory SPA range, write-back and non-volatile, range index 1, checksum 0', () => {
    const nfit = nfitTable(4n * GiB, GiB);
    assert.equal(nfit.toString('latin1', 0, 4), 'NFIT');
    assert.equal(nfit.readUInt32LE(4), nfit.length);
    assert.equal(nfit.length, 36 + 4 + 56);
    assert.equal(sum(nfit), 0);
    const spa = nfit.subarray(40);
    assert.deepEqual([spa.readUInt16LE(0), spa.readUInt16LE(2), spa.readUInt16LE(4)], [0, 56, 1]);
    assert.equal(spa.subarray(16, 32).toString('hex'), '79d3f066f3b47440ac430d3318b78cdb');
    assert.deepEqual([spa.readBigUInt64LE(32), spa.readBigUInt64LE(40), spa.readBigUInt64LE(48)], [4n * GiB, GiB, 0x8008n]);
  });

  test('SSDT: Device (NVDR) with _HID "ACPI0012" under \\_SB, checksum 0', () => {
    const ssdt = ssdtTable();
    assert.equal(ssdt.toString('latin1', 0, 4), 'SSDT');
    assert.equal(ssdt.readUInt32LE(4), ssdt.length);
    assert.equal(sum(ssdt), 0);
    const aml = ssdt.subarray(36);
    // ScopeOp, its length to the end, \_SB_, DeviceOp, its length to the end, NVDR, Name(_HID, "ACPI0012").
    assert.deepEqual([aml[0], aml[1]], [0x10, aml.length - 1]);
    assert.equal(aml.toString('latin1', 2, 7), '\\_SB_');
    assert.deepEqual([aml[7], aml[8], aml[9]], [0x5b, 0x82, aml.length - 9]);
    assert.equal(aml.toString('latin1', 10), 'NVDR\x08_HID\x0dACPI0012\0');
  });

  test('the cpio puts both under kernel/firmware/acpi/, where Linux looks, uncompressed', () => {
    const entries = readCpio(guestAcpiCpio(8n * GiB, 2n * GiB));
    assert.deepEqual(entries.map((entry) => entry.name), ['kernel', 'kernel/firmware', 'kernel/firmware/acpi', 'kernel/firmware/acpi/xen-pmem-nfit.aml', 'kernel/firmware/acpi/xen-pmem-ssdt.aml']);
    assert.deepEqual(entries[3]!.data, nfitTable(8n * GiB, 2n * GiB));
    assert.deepEqual(entries[4]!.data, ssdtTable());
  });
});

describe('xen-pmem guest-tables', () => {
  async function guestTables(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await main(['guest-tables', ...args], {
      out: (text) => { stdout += text + '\n'; }, err: (text) => { stderr += text + '\n'; },
      ask: async () => null, env: {}, flock: processIO.flock, xencall: processIO.xencall,
    });
    return { code, stdout, stderr };
  }

  test('writes the cpio for the size and address asked, 4 GiB by default', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'guest-tables-'));
    try {
      const output = join(dir, 'tables.cpio');
      const result = await guestTables(['--size', '1G', '--output', output]);
      assert.deepEqual([result.code, result.stderr], [0, '']);
      assert.match(result.stdout, /an NFIT with 1\.00 GiB of persistent memory at 0x100000000/);
      assert.deepEqual(await readFile(output), guestAcpiCpio(4n * GiB, GiB));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses what Linux would not take: sizes and addresses off 2 MiB, a missing size', async () => {
    assert.match((await guestTables(['--size', '3M', '--output', '/nonexistent/x'])).stderr, /--size 0x300000 is not a multiple of 2 MiB/);
    assert.match((await guestTables(['--size', '2M', '--at', '0x100001000', '--output', '/nonexistent/x'])).stderr, /--at 0x100001000 is not a multiple of 2 MiB/);
    assert.match((await guestTables(['--output', '/nonexistent/x'])).stderr, /--size and --output are required/);
  });
});
