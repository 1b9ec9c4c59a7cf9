import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { hexRange, toSafeNumber, hex } from '../../core/units.js';
import { DEFAULT_STATE_DIR, loadState, type DaemonState, type DeviceRecord } from '../../daemon/state-store.js';
import { interfaceFor, interfaceNamed } from '../../xen/interfaces/index.js';
import { CommandError, EXIT_NOT_VALID, EXIT_OK, type Command } from '../command.js';

export const statusCommand: Command = {
  name: 'status',
  summary: 'show what the running xen-pmemd holds for each device',
  help: `Usage: xen-pmem status [--json]

Reads the state the running xen-pmemd keeps in ${DEFAULT_STATE_DIR}: each pmem device, its
state (absent, rejected, reported, unsupported, retrying, failed, removed), the reason,
the physical ranges it reported or would report, and when that last changed.

  --json          one JSON object: daemon {running, pid, startedAt, ready, capability}
                  and devices [...] (addresses as hex strings, sizes in bytes)
  --state-dir DIR daemon state (default ${DEFAULT_STATE_DIR})
  --help          this text

Exit codes: 0 the daemon is running, 1 it is not (the last state is still shown), 2 error.`,

  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { json: { type: 'boolean' }, 'state-dir': { type: 'string', default: DEFAULT_STATE_DIR } },
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
      io.out(JSON.stringify({
        daemon: { running, pid: state.pid, startedAt: state.startedAt, updatedAt: state.updatedAt, ready: state.ready, capability: state.capability },
        devices: state.devices.map(recordToJson),
      }));
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

function recordToJson(record: DeviceRecord): Record<string, unknown> {
  const json: Record<string, unknown> = {
    device: record.device, devPath: record.devPath, namespace: record.namespace, mode: record.mode,
    region: record.region, state: record.state, reason: record.reason, message: record.message, since: record.since,
  };
  if (record.nextAttempt) json.nextAttempt = record.nextAttempt;
  if (record.notes) json.notes = record.notes;
  const layout = record.layout;
  if (layout) {
    const range = (r: { start: bigint; size: bigint }) => ({ start: hex(r.start), size: toSafeNumber(r.size) });
    json.layout = {
      uuid: layout.uuid,
      region: range(layout.region), reserved: range(layout.reserved), data: range(layout.data),
      pfns: Object.fromEntries(Object.entries(layout.request).map(([k, v]) => [k, hex(v as bigint)])),
    };
  }
  return json;
}

function describeState(state: DaemonState, running: boolean): string {
  const capability = state.capability;
  const lines = [
    running
      ? `xen-pmemd is running (pid ${state.pid}, since ${state.startedAt}${state.ready ? '' : ', still in coldplug'})`
      : `xen-pmemd is NOT running; last state written by pid ${state.pid} at ${state.updatedAt}:`,
  ];
  if (capability) {
    lines.push(capability.kind !== 'unsupported'
      ? `Xen ${capability.xenVersion ?? ''} accepts ${interfaceNamed(capability.kind)?.title ?? capability.kind}`
      : `Xen does not accept ${interfaceFor(null).title}: ${capability.message ?? capability.reason}`);
  }
  if (state.devices.length === 0) lines.push('No pmem devices.');
  for (const record of state.devices) {
    lines.push('');
    lines.push(`${record.device.padEnd(8)} ${record.state.toUpperCase().padEnd(12)} ${record.reason}   since ${record.since}`);
    if (record.layout) {
      const l = record.layout;
      lines.push(`  region   ${hexRange(l.region.start, l.region.size)}   reserved ${hexRange(l.reserved.start, l.reserved.size)}   data ${hexRange(l.data.start, l.data.size)}`);
    }
    lines.push(`  ${record.message}`);
    for (const note of record.notes ?? []) lines.push(`  note: ${note}`);
    if (record.nextAttempt) lines.push(`  next attempt at ${record.nextAttempt}`);
  }
  return lines.join('\n');
}
