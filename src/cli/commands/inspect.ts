import { parseArgs } from 'node:util';
import { describeVerdict, inspectionToJson } from '../../format/serializers.js';
import { openDevice } from '../../io/device.js';
import { scanDevice } from '../../io/scan.js';
import { EXIT_NOT_VALID, EXIT_OK, type Command } from '../command.js';
import { deviceArgument } from './arguments.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'find and validate the super block of a device',
  help: `Usage: xen-pmem inspect DEVICE [--json [--human]]

Reads the partition table and both super block copies of DEVICE (about 25 KiB,
whatever its size) and says whether the layout is valid for this device, and why not.

  --json   one JSON object: device, size, status (valid|absent|invalid), reason,
           message, superblock, partitions (sizes and offsets in bytes)
  --human  with --json: sizes as "4.00 MiB", offsets in hex, the time as ISO text
  --help   this text

Exit codes: 0 valid, 1 absent or invalid, 2 usage or I/O error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, human: { type: 'boolean' } } });
    const path = deviceArgument(positionals);
    const device = await openDevice(path, 'read');
    try {
      const verdict = await scanDevice(device);
      if (values.json) {
        io.out(JSON.stringify(inspectionToJson(path, device.size, verdict, { human: values.human === true })));
      } else {
        io.out(describeVerdict(path, device.size, verdict));
      }
      return verdict.status === 'valid' ? EXIT_OK : EXIT_NOT_VALID;
    } finally {
      await device.close();
    }
  },
};
