import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { daemonToJson, describeState, recordToJson } from '../../format/serializers.js';
import { DEFAULT_STATE_DIR, loadState } from '../../daemon/state-store.js';
import { CommandError, EXIT_NOT_VALID, EXIT_OK, type Command } from '../command.js';

export const statusCommand: Command = {
  name: 'status',
  summary: 'show what the running xen-pmemd holds for each device',
  help: `Usage: xen-pmem status [--json [--human]]

Reads the state the running xen-pmemd keeps in ${DEFAULT_STATE_DIR}: each pmem device, its
state (absent, rejected, reported, unsupported, retrying, failed, removed), the reason,
the physical ranges it reported or would report, and when that last changed.

  --json          one JSON object: daemon {running, pid, startedAt, ready, capability}
                  and devices [...] (addresses as hex strings, sizes in bytes)
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
    if (loaded.kind === 'missing') {
      const message = `xen-pmemd is not running: no state in ${dir} (start it with "systemctl start xen-pmemd")`;
      if (values.json) io.out(JSON.stringify({ daemon: { running: false, message }, devices: [] }));
      else io.out(message);
      return EXIT_NOT_VALID;
    }
    const state = loaded.state;
    const running = await isDaemon(state.pid);
    if (values.json) {
      const options = { human: values.human === true };
      io.out(JSON.stringify({ daemon: daemonToJson(state, running), devices: state.devices.map((record) => recordToJson(record, options)) }));
    } else {
      io.out(describeState(state, running));
    }
    return running ? EXIT_OK : EXIT_NOT_VALID;
  },
};

/** The pid must be alive and be xen-pmemd: /run survives a crash, and pids are reused. */
async function isDaemon(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('xen-pmemd');
  } catch {
    return false;
  }
}
