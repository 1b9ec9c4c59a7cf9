import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { guestAcpiCpio } from '../../core/guest-acpi.js';
import { DEFAULT_GUEST_ADDRESS } from '../../core/guest-frames.js';
import { hex, humanSize, isAligned, parseSize } from '../../core/units.js';
import { CommandError, EXIT_OK, type Command } from '../command.js';

export const guestTablesCommand: Command = {
  name: 'guest-tables',
  summary: 'write the ACPI tables that show a guest the pmem "xen-pmem attach" gives it',
  help: `Usage: xen-pmem guest-tables --size SIZE [--at ADDRESS] --output FILE

Writes FILE, an uncompressed cpio with two ACPI tables for a guest's Linux: an NFIT with
one persistent-memory range of SIZE at ADDRESS (write-back), and an SSDT with the NVDIMM
root device its nfit driver binds to. Put FILE in front of the guest's initrd
(cat FILE initrd > guest-initrd, and name guest-initrd as the guest's ramdisk); Linux
adds the tables at boot (ACPI table upgrade, in Debian's kernels) and the range becomes
/dev/pmem0. Give the same SIZE and ADDRESS to "xen-pmem attach", which gives the guest
the frames behind it. A PVH guest needs this: Linux publishes a memmap= legacy pmem
range only once its PCI code has run, and a PVH guest has no PCI.

  --size SIZE       the range's size (e.g. 1G), a multiple of 2 MiB
  --at ADDRESS      its guest-physical address (default ${hex(DEFAULT_GUEST_ADDRESS)}), a multiple of 2 MiB
  --output FILE     where to write the cpio
  --help            this text

Exit codes: 0 written, 2 usage or I/O error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true,
      options: { size: { type: 'string' }, at: { type: 'string' }, output: { type: 'string' } },
    });
    if (positionals.length > 0) throw new CommandError(`unexpected argument ${positionals[0]} (see --help)`);
    if (values.size === undefined || values.output === undefined) throw new CommandError('--size and --output are required (see --help)');
    const size = parseSize(values.size);
    if (size === null || size <= 0n) throw new CommandError(`--size "${values.size}" is not a size (e.g. 1G)`);
    const address = values.at === undefined ? DEFAULT_GUEST_ADDRESS : /^0x[0-9a-f]+$/i.test(values.at) ? BigInt(values.at) : parseSize(values.at);
    if (address === null) throw new CommandError(`--at "${values.at}" is not an address (e.g. 4G or 0x100000000)`);
    // Linux's pmem namespaces align to 2 MiB (memremap_compat_align); the same keeps Xen's superpages.
    for (const [name, value] of [['--size', size], ['--at', address]] as const) {
      if (!isAligned(value, 2n * 1024n * 1024n)) throw new CommandError(`${name} ${hex(value)} is not a multiple of 2 MiB`);
    }
    await writeFile(values.output, guestAcpiCpio(address, size));
    io.out(`${values.output}: an NFIT with ${humanSize(size)} of persistent memory at ${hex(address)}, and the NVDIMM root device; put it in front of the guest's initrd`);
    return EXIT_OK;
  },
};
