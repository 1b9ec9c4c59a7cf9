import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { DEFAULT_GUEST_ADDRESS, planGuestPmem } from '../../core/guest-frames.js';
import { halfOpenRange, hex, humanSize, parseSize } from '../../core/units.js';
import { DEFAULT_STATE_DIR, loadState } from '../../daemon/state-store.js';
import type { DeviceRecord } from '../../format/records.js';
import { HypercallBridge } from '../../xen/bridge.js';
import { CommandError, EXIT_OK, type Command } from '../command.js';

export const attachCommand: Command = {
  name: 'attach',
  summary: 'give a paused guest part of a reported device\'s data area as persistent memory',
  help: `Usage: xen-pmem attach DOMAIN DEVICE [--size SIZE] [--offset SIZE] [--at ADDRESS] [--dry-run]

Gives DOMAIN (a PVH or HVM guest's name or domain id, best created paused with
"xl create -p") frames of DEVICE's data area as its own memory, write-back like RAM,
through Xen's XENPF_pmem assign. DEVICE is a device xen-pmemd reported, by the name
"xen-pmem status" shows (pmem0) or by its super block's UUID, which stays the same
across reboots. Xen checks that every frame is in a data range it holds and free, and
that the guest has nothing at those addresses; it gives the frames back to the pool,
with what the guest wrote, when the guest is destroyed. The guest learns of the range
from the ACPI tables "xen-pmem guest-tables" makes, at the front of its initrd. The flow:
xl create -p GUEST.cfg; xen-pmem attach GUEST DEVICE; xl unpause GUEST.

  --size SIZE       how much to give (e.g. 1G; default: the rest of the data area)
  --offset SIZE     where to start, from the start of the data area (default 0); the
                    same offset gives a guest the same bytes after a reboot
  --at ADDRESS      the guest-physical address (default ${hex(DEFAULT_GUEST_ADDRESS)}, above the RAM of a
                    guest of up to 3 GiB); 2 MiB alignment lets Xen use superpages
  --dry-run         print what would be given and give nothing
  --state-dir DIR   daemon state (default ${DEFAULT_STATE_DIR})
  --help            this text

Exit codes: 0 given (or, with --dry-run, would be), 2 refused or error.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true,
      options: {
        size: { type: 'string' }, offset: { type: 'string' }, at: { type: 'string' },
        'dry-run': { type: 'boolean' }, 'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
      },
    });
    if (positionals.length !== 2) throw new CommandError(`expected DOMAIN and DEVICE, got ${positionals.length} arguments (see --help)`);
    const [domain, device] = positionals as [string, string];
    const size = values.size === undefined ? null : sizeOption('--size', values.size);
    const offset = values.offset === undefined ? 0n : sizeOption('--offset', values.offset);
    const guestAddress = values.at === undefined ? DEFAULT_GUEST_ADDRESS : addressOption(values.at);

    const loaded = await loadState(values['state-dir']);
    if (loaded.kind !== 'loaded') throw new CommandError(`no daemon state in ${values['state-dir']}: ${loaded.kind === 'unreadable' ? loaded.message : 'xen-pmemd has not run'}`);
    const record = findDevice(loaded.state.devices, device);
    const request = record.layout!.request;
    const plan = planGuestPmem({ dataSpfn: request.dataSpfn, dataEpfn: request.dataEpfn, offset, size, guestAddress });
    if (!plan.ok) throw new CommandError(`${record.device}: ${plan.message}`);
    const { frames } = plan;
    const what = `${humanSize(frames.nr * 4096n)} of ${record.device}'s data area (frames ${halfOpenRange(frames.mfn, frames.mfn + frames.nr)}) at guest address ${hex(frames.gfn * 4096n)}`;
    if (values['dry-run']) {
      io.out(`would give ${domain} ${what}`);
      return EXIT_OK;
    }

    const domid = await domainId(domain);
    const opening = await io.xencall();
    const bridge = new HypercallBridge(() => opening);
    try {
      const held = await bridge.held();
      if (held.kind !== 'answered') throw new CommandError(`cannot ask Xen what it holds: ${held.message}`);
      if (!held.value.some((region) => region.layout.dataSpfn === request.dataSpfn && region.layout.dataEpfn === request.dataEpfn)) {
        throw new CommandError(`Xen holds no data range ${halfOpenRange(request.dataSpfn, request.dataEpfn)} for ${record.device}: see "xen-pmem status"`);
      }
      const answer = await bridge.assign({ mfn: frames.mfn, gfn: frames.gfn, nr: frames.nr, domid });
      if (answer.kind !== 'assigned') throw new CommandError(`${answer.message} (${answer.reason})`);
    } finally {
      bridge.close();
    }
    io.out(`gave ${domain} (domain ${domid}) ${what}`);
    return EXIT_OK;
  },
};

function sizeOption(name: string, text: string): bigint {
  const bytes = parseSize(text);
  if (bytes === null) throw new CommandError(`${name} "${text}" is not a size (e.g. 1G, 512M, 4096)`);
  return bytes;
}

function addressOption(text: string): bigint {
  if (/^0x[0-9a-f]+$/i.test(text)) return BigInt(text);
  return sizeOption('--at', text);
}

/** A reported device by name or super block UUID. */
function findDevice(records: readonly DeviceRecord[], wanted: string): DeviceRecord {
  const name = wanted.replace(/^\/dev\//, '');
  const matches = records.filter((record) => record.device === name || record.layout?.uuid === wanted.toLowerCase());
  if (matches.length === 0) throw new CommandError(`xen-pmemd knows no device ${wanted} (see "xen-pmem status")`);
  const record = matches[0]!;
  if (record.state !== 'reported' || !record.layout) throw new CommandError(`${record.device} is ${record.state} (${record.reason}), not reported: Xen gives guests only what it holds`);
  return record;
}

/** A domain id as given, or the toolstack's id for a name. */
async function domainId(domain: string): Promise<number> {
  if (/^\d+$/.test(domain)) {
    const domid = Number(domain);
    if (domid > 0x7fef) throw new CommandError(`domain id ${domid} is not a guest's (0-32751)`);
    return domid;
  }
  try {
    const { stdout } = await promisify(execFile)('xl', ['domid', domain], { encoding: 'utf8' });
    return Number(stdout.trim());
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new CommandError(`no domain named ${domain}: ${stderr || (error as Error).message}`);
  }
}
