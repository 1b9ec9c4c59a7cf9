// The ACPI tables that show a guest its persistent memory: an NFIT with one persistent-memory
// system address range (SPA) and an SSDT declaring the NVDIMM root device (ACPI0012) that Linux's
// nfit driver binds to. A PVH guest has no PCI, and Linux only publishes a `memmap=` legacy
// pmem range once its PCI code has run, so the NFIT is the way such a guest finds pmem. Linux
// reads extra tables from an uncompressed cpio at the start of its initrd (kernel/firmware/acpi/,
// "ACPI table upgrade"): `guestAcpiCpio` makes that cpio. Pure: bytes in, bytes out.

const HEADER_BYTES = 36;
/** The NFIT's SPA range structure (ACPI 6.x, 5.2.25.2). */
const SPA_BYTES = 56;
/** Byte-wise persistent memory: 66F0D379-B4F3-4074-AC43-0D3318B78CDB, as ACPI stores a GUID. */
const PMEM_GUID = Buffer.from([0x79, 0xd3, 0xf0, 0x66, 0xf3, 0xb4, 0x74, 0x40, 0xac, 0x43, 0x0d, 0x33, 0x18, 0xb7, 0x8c, 0xdb]);
/** EFI_MEMORY_WB | EFI_MEMORY_NV: write-back, non-volatile. */
const WRITE_BACK_NON_VOLATILE = 0x8n | 0x8000n;
const OEM_ID = 'XENPMM';
const OEM_TABLE_ID = 'XENPMEM';

/** A table header with the length and checksum filled in once the body is known. */
function table(signature: string, revision: number, body: Buffer): Buffer {
  const out = Buffer.alloc(HEADER_BYTES + body.length);
  out.write(signature, 0, 'latin1');
  out.writeUInt32LE(out.length, 4);
  out.writeUInt8(revision, 8);
  out.write(OEM_ID, 10, 'latin1');
  out.write(OEM_TABLE_ID, 16, 'latin1');
  out.writeUInt32LE(1, 24);
  out.write('XPMM', 28, 'latin1');
  out.writeUInt32LE(1, 32);
  body.copy(out, HEADER_BYTES);
  let sum = 0;
  for (const byte of out) sum = (sum + byte) & 0xff;
  out.writeUInt8((0x100 - sum) & 0xff, 9);
  return out;
}

/** The NFIT: one persistent-memory range [address, address + size), write-back, range index 1. */
export function nfitTable(address: bigint, size: bigint): Buffer {
  const body = Buffer.alloc(4 + SPA_BYTES);
  const spa = body.subarray(4);
  spa.writeUInt16LE(0, 0); // structure type: SPA range
  spa.writeUInt16LE(SPA_BYTES, 2);
  spa.writeUInt16LE(1, 4); // range index: 0 would mark it unusable
  PMEM_GUID.copy(spa, 16);
  spa.writeBigUInt64LE(address, 32);
  spa.writeBigUInt64LE(size, 40);
  spa.writeBigUInt64LE(WRITE_BACK_NON_VOLATILE, 48);
  return table('NFIT', 1, body);
}

/** AML PkgLength for a package whose contents (after the length) are `n` bytes; small packages only. */
function pkgLength(n: number): number {
  if (n + 1 > 0x3f) throw new RangeError(`an AML package of ${n} bytes needs a longer PkgLength`);
  return n + 1;
}

/** The SSDT: `Scope (\_SB) { Device (NVDR) { Name (_HID, "ACPI0012") } }`. */
export function ssdtTable(): Buffer {
  const hid = Buffer.concat([Buffer.from([0x08]), Buffer.from('_HID', 'latin1'), Buffer.from([0x0d]), Buffer.from('ACPI0012\0', 'latin1')]);
  const deviceBody = Buffer.concat([Buffer.from('NVDR', 'latin1'), hid]);
  const device = Buffer.concat([Buffer.from([0x5b, 0x82, pkgLength(deviceBody.length)]), deviceBody]);
  const scopeBody = Buffer.concat([Buffer.from('\\_SB_', 'latin1'), device]);
  const scope = Buffer.concat([Buffer.from([0x10, pkgLength(scopeBody.length)]), scopeBody]);
  return table('SSDT', 2, scope);
}

/** One newc cpio entry; the name and the data each padded to 4 bytes. */
function cpioEntry(name: string, mode: number, data: Buffer, inode: number): Buffer {
  const field = (value: number): string => value.toString(16).padStart(8, '0');
  const header = '070701' + [inode, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0].map(field).join('');
  const pad = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);
  const head = Buffer.from(`${header}${name}\0`, 'latin1');
  return Buffer.concat([head, pad(head.length), data, pad(data.length)]);
}

/**
 * An uncompressed cpio holding the two tables where Linux looks for them; put it in front of the
 * guest's initrd (`cat tables.cpio initrd > guest-initrd`).
 */
export function guestAcpiCpio(address: bigint, size: bigint): Buffer {
  const files: Array<[string, number, Buffer]> = [
    ['kernel', 0o40755, Buffer.alloc(0)],
    ['kernel/firmware', 0o40755, Buffer.alloc(0)],
    ['kernel/firmware/acpi', 0o40755, Buffer.alloc(0)],
    ['kernel/firmware/acpi/xen-pmem-nfit.aml', 0o100644, nfitTable(address, size)],
    ['kernel/firmware/acpi/xen-pmem-ssdt.aml', 0o100644, ssdtTable()],
  ];
  const entries = files.map(([name, mode, data], index) => cpioEntry(name, mode, data, index + 1));
  return Buffer.concat([...entries, cpioEntry('TRAILER!!!', 0, Buffer.alloc(0), 0)]);
}
