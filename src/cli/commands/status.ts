import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { daemonToJson, describeState, recordToJson, xenViewToJson } from '../../format/serializers.js';
import { compareWithXen, type XenView } from '../../format/xen-view.js';
import { DEFAULT_STATE_DIR, loadState } from '../../daemon/state-store.js';
import { HypercallBridge } from '../../xen/bridge.js';
import type { PortOpening } from '../../xen/ports.js';
import { CommandError, EXIT_NOT_VALID, EXIT_OK, type Command } from '../command.js';

export const statusCommand: Command = {
  name: 'status',
  summary: 'show what xen-pmemd decided for each device, beside what Xen holds',
  help: `Usage: xen-pmem status [--json [--human]]

Reads the state xen-pmemd keeps in ${DEFAULT_STATE_DIR} (also when it is not running): each
pmem device, its state (absent, rejected, reported, unsupported, retrying, failed, removed),
the reason, the physical ranges it reported or would report, and when that last changed.
Beside each device it shows the region Xen holds for it, asked of Xen itself (XENPF_pmem),
and flags every difference: a device said reported that Xen does not hold or holds with
other frames, a region Xen holds that no device explains. Outside a Dom0 it says why Xen's
view is unavailable.

  --json          one JSON object: daemon {running, pid, startedAt, ready, capability},
                  xen {available, xenVersion, regions, unexplained} and devices [...],
                  each with xen {holds, region, differences} (addresses and PFNs as hex
                  strings, sizes in bytes)
  --human         with --json: sizes as "256.00 MiB"
  --state-dir DIR daemon state (default ${DEFAULT_STATE_DIR})
  --help          this text

Exit codes: 0 the daemon is running, 1 it is not (the last state is still shown), 2 error.`,

  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { json: { type: 'boolean' }, human: { type: 'boolean' }, 'state-dir': { type: 'string', default: DEFAULT_STATE_DIR } },
    });
    const dir = values['state-dir'];
    const loaded = await loadState(dir);
    if (loaded.kind === 'unreadable') throw new CommandError(`the daemon state in ${dir} is unreadable: ${loaded.message}`);
    const state = loaded.kind === 'loaded' ? loaded.state : null;
    const running = state !== null && (await isDaemon(state.pid));
    const view = await askXen(() => io.xencall());
    const comparison = view.available ? compareWithXen(state?.devices ?? [], view) : null;
    if (values.json) {
      const options = { human: values.human === true };
      const daemon = state === null
        ? { running: false, message: `xen-pmemd is not running: no state in ${dir} (start it with "systemctl start xen-pmemd")` }
        : daemonToJson(state, running);
      io.out(JSON.stringify({
        daemon,
        xen: xenViewToJson(view, comparison),
        devices: (state?.devices ?? []).map((record) => recordToJson(record, options, comparison?.devices.get(record.device))),
      }));
    } else {
      io.out(describeState(state, running, { view, comparison }));
    }
    return running ? EXIT_OK : EXIT_NOT_VALID;
  },
};

/** Asks Xen what it holds (the regions, and who holds their data frames); never throws. */
async function askXen(open: () => Promise<PortOpening>): Promise<XenView> {
  let opening: PortOpening;
  try {
    opening = await open();
  } catch (error) {
    return { available: false, reason: 'library-missing', message: (error as Error).message };
  }
  const bridge = new HypercallBridge(() => opening);
  try {
    const capability = await bridge.capability();
    if (capability.kind === 'unsupported') return { available: false, reason: capability.reason, message: capability.message };
    const held = await bridge.held();
    if (held.kind !== 'answered') return { available: false, reason: held.reason, message: held.message };
    const regions = [];
    for (const region of held.value) {
      const owners = await bridge.owners({ spfn: region.layout.dataSpfn, epfn: region.layout.dataEpfn });
      regions.push({ ...region, owners: owners.kind === 'answered' ? owners.value : [] });
    }
    return { available: true, xenVersion: capability.xenVersion, regions };
  } finally {
    bridge.close();
  }
}

/** The pid must be alive and be xen-pmemd: /run survives a crash, and pids are reused. */
async function isDaemon(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('xen-pmemd');
  } catch {
    return false;
  }
}
