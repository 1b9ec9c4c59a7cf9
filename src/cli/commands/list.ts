import { parseArgs } from 'node:util';
import type { Verdict } from '../../core/validate.js';
import { describeError } from '../../core/errno.js';
import { openDevice } from '../../io/device.js';
import { scanDevice } from '../../io/scan.js';
import { DEFAULT_STATE_DIR, loadState, type DeviceRecord } from '../../daemon/state-store.js';
import { describeListed, listedToJson, verdictToJson, type JsonOptions, type ListedNamespace } from '../../format/serializers.js';
import { listPmemNamespaces } from '../../sysfs/model.js';
import { deviceKey, type PmemNamespaceModel } from '../../sysfs/types.js';
import { EXIT_OK, type Command } from '../command.js';

export const listCommand: Command = {
  name: 'list',
  summary: 'list pmem namespaces, their physical ranges, super block verdicts and daemon state',
  help: `Usage: xen-pmem list [--json] [--human]

Shows every pmem namespace the kernel knows: mode, block device, physical address of
its first byte, region and NUMA node, whether Xen can use it, the verdict on its
xen-pmem super block, and what the running xen-pmemd decided for it.

  --json          ndctl-style JSON (sizes in bytes, addresses as hex strings)
  --human         with --json: sizes as "256.00 MiB", super block offsets in hex
  --sys-root DIR  sysfs root (default /sys)
  --dev-root DIR  device root (default /dev)
  --state-dir DIR daemon state (default ${DEFAULT_STATE_DIR})
  --help          this text

Exit codes: 0 listed (even when empty), 2 usage or I/O error.`,

  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: {
        json: { type: 'boolean' },
        human: { type: 'boolean' },
        'sys-root': { type: 'string', default: '/sys' },
        'dev-root': { type: 'string', default: '/dev' },
        'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      },
    });
    const namespaces = await listPmemNamespaces({ sysRoot: values['sys-root'], devRoot: values['dev-root'] });
    const state = await loadState(values['state-dir']);
    const records = new Map((state.kind === 'loaded' ? state.state.devices : []).map((r) => [r.device, r]));
    const options: JsonOptions = { human: values.json === true && values.human === true };
    const rows: ListedNamespace[] = [];
    for (const model of namespaces) rows.push(await describe(model, records, options));
    if (values.json) {
      io.out(JSON.stringify(rows.map((row) => listedToJson(row, options)), null, 2));
      return EXIT_OK;
    }
    if (rows.length === 0) {
      io.out('No pmem namespaces (is the nd_pmem driver loaded, and are there NVDIMMs?)');
      return EXIT_OK;
    }
    for (const row of rows) io.out(describeListed(row));
    return EXIT_OK;
  },
};

async function describe(model: PmemNamespaceModel, records: Map<string, DeviceRecord>, options: JsonOptions): Promise<ListedNamespace> {
  const listed: ListedNamespace = { model };
  const record = records.get(deviceKey(model));
  if (record) listed.daemon = { state: record.state, reason: record.reason, since: record.since };
  if (model.block && model.unsupported === null) {
    try {
      const device = await openDevice(model.block.devPath, 'read');
      let verdict: Verdict;
      try {
        verdict = await scanDevice(device, { namespaceUuid: model.namespaceUuid });
      } finally {
        await device.close();
      }
      listed.superblock = verdictToJson(verdict, options);
    } catch (error) {
      listed.superblock = { status: 'unreadable', message: describeError(error) };
    }
  }
  return listed;
}
