// A PV DomU beside the adds, to prove that what maps the M2P still works after Xen took a region:
// the toolstack's save and restore map the machine-to-phys table read-only, and an add that
// brings a new M2P slot must leave that mapping possible. The toolstack (xl, xenstored,
// xenconsoled) is the Dom0's own Debian package; the guest is the lab's kernel with a busybox
// initramfs that counts seconds on its console (lab/domu.ts makes both on the host).

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import type { CommandRecord } from './daemon-results.js';
import { run } from './daemon-dom0.js';
import { log, waitUntil } from './results.js';

const NAME = 'xen-pmem-pv';
const CONSOLE_LOG = `/var/log/xen/console/guest-${NAME}.log`;

/** One step with the guest: the commands it took, and whether the guest ran on afterwards. */
export interface PvGuestStep {
  ok: boolean;
  /** Why not, or what showed that it ran on. */
  detail: string;
  commands: CommandRecord[];
}

function step(commands: CommandRecord[], ok: boolean, detail: string): PvGuestStep {
  return { ok, detail, commands: commands.map((record) => ({ ...record, stdout: record.stdout.slice(-2000), stderr: record.stderr.slice(-2000) })) };
}

function failed(commands: CommandRecord[]): CommandRecord | undefined {
  return commands.find((record) => record.status !== 0);
}

/** How far the guest's console log is written now. */
function consoleEnd(): number {
  return existsSync(CONSOLE_LOG) ? readFileSync(CONSOLE_LOG).length : 0;
}

/** The last `tick N` the guest printed after byte `from` of its console log, or null. */
function tickAfter(from: number): number | null {
  if (!existsSync(CONSOLE_LOG)) return null;
  const ticks = [...readFileSync(CONSOLE_LOG).subarray(from).toString('utf8').matchAll(/tick (\d+)/g)];
  return ticks.length === 0 ? null : Number(ticks[ticks.length - 1]![1]);
}

/** The guest counts on after byte `from` of its console log: it runs, and says so. */
async function runsOn(from: number): Promise<{ ok: boolean; detail: string }> {
  try {
    await waitUntil(`${NAME} to print a tick`, () => tickAfter(from) !== null, 60_000, 500);
  } catch (error) {
    const list = run('xl', ['list']);
    const logs = run('ls', ['-l', '/var/log/xen/console']);
    const dmesg = run('xl', ['dmesg']);
    const console = existsSync(CONSOLE_LOG) ? readFileSync(CONSOLE_LOG, 'utf8').slice(-1500) : '(no console log)';
    return { ok: false, detail: `${(error as Error).message}\n--- xl list\n${list.stdout}${list.stderr}\n--- console logs\n${logs.stdout}${logs.stderr}\n--- ${CONSOLE_LOG}\n${console}\n--- xl dmesg (end)\n${dmesg.stdout.split('\n').slice(-25).join('\n')}` };
  }
  const list = run('xl', ['list', NAME]);
  const state = list.stdout.split('\n').find((line) => line.startsWith(NAME))?.trim().split(/\s+/)[4] ?? '?';
  return { ok: list.status === 0 && !state.includes('c'), detail: `tick ${tickAfter(from)} on its console; xl list state ${state}` };
}

/** xenstored and xenconsoled, with the guest's console logged to a file. */
export function startToolstack(): PvGuestStep {
  const commands: CommandRecord[] = [];
  // Built in on some kernels, modules on others: a failure here is not one yet.
  commands.push({ ...run('modprobe', ['-a', 'xen-evtchn', 'xen-gntdev', 'xen-gntalloc', 'xen-privcmd']), status: 0 });
  // xenconsoled logs into the directory but does not make it.
  mkdirSync(dirname(CONSOLE_LOG), { recursive: true });
  const defaults = existsSync('/etc/default/xen') ? readFileSync('/etc/default/xen', 'utf8') : '';
  writeFileSync('/etc/default/xen', `${defaults}\nXENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"\n`);
  // Run as the script itself: systemd's LSB hook would hand it to a xen.service this root lacks.
  commands.push(run('env', ['SYSTEMCTL_SKIP_REDIRECT=1', '/etc/init.d/xen', 'start'], 120_000));
  commands.push(run('xl', ['info']));
  const bad = failed(commands);
  return step(commands, !bad, bad ? `${bad.command} exited ${bad.status}: ${bad.stderr.trim()}` : 'xenstored and xenconsoled up');
}

/** `xl create` of the PV guest, then its first ticks. */
export async function createGuest(kernel: string, ramdisk: string): Promise<PvGuestStep> {
  const config = `/run/${NAME}.cfg`;
  writeFileSync(config, [
    `name = "${NAME}"`, 'type = "pv"', `kernel = "${kernel}"`, `ramdisk = "${ramdisk}"`,
    'memory = 96', 'vcpus = 1', 'extra = "console=hvc0 rdinit=/init quiet"', 'on_poweroff = "destroy"', 'on_crash = "preserve"', '',
  ].join('\n'));
  const create = run('xl', ['create', config], 120_000);
  if (create.status !== 0) return step([create], false, `xl create exited ${create.status}: ${create.stderr.trim()}`);
  const ran = await runsOn(0);
  return step([create], ran.ok, ran.detail);
}

/** `xl save` (the domain is gone), `xl restore`, and the guest counting on. */
export async function saveAndRestore(label: string): Promise<PvGuestStep> {
  log(`pv guest: save and restore (${label})`);
  // /var/tmp, not /run: /run's tmpfs is too small for a guest's memory image.
  const file = `/var/tmp/${NAME}-${label}.save`;
  const before = consoleEnd();
  const save = run('xl', ['save', NAME, file], 180_000);
  if (save.status !== 0) return step([save], false, `xl save exited ${save.status}: ${save.stderr.trim()}`);
  const restore = run('xl', ['restore', file], 180_000);
  rmSync(file, { force: true });
  if (restore.status !== 0) return step([save, restore], false, `xl restore exited ${restore.status}: ${restore.stderr.trim()}`);
  const ran = await runsOn(before);
  return step([save, restore], ran.ok, ran.detail);
}

/** `xl save -c`: a checkpoint of the running guest, to be restored later. */
export function checkpoint(): { step: PvGuestStep; file: string } {
  const file = `/var/tmp/${NAME}-checkpoint.save`;
  const save = run('xl', ['save', '-c', NAME, file], 180_000);
  return { step: step([save], save.status === 0, save.status === 0 ? `checkpoint at tick ${tickAfter(0)}` : `xl save -c exited ${save.status}: ${save.stderr.trim()}`), file };
}

/** The running guest destroyed and the checkpoint restored in its place. */
export async function restoreCheckpoint(file: string): Promise<PvGuestStep> {
  const destroy = run('xl', ['destroy', NAME]);
  // The name is free once xl no longer lists it.
  await waitUntil(`${NAME} to be gone`, () => run('xl', ['list', NAME]).status !== 0, 30_000, 500).catch((error: Error) => log(error.message));
  const before = consoleEnd();
  const restore = run('xl', ['restore', file], 180_000);
  if (restore.status !== 0) return step([destroy, restore], false, `xl restore exited ${restore.status}: ${restore.stderr.trim()}`);
  const ran = await runsOn(before);
  return step([destroy, restore], ran.ok, ran.detail);
}

export function destroyGuest(): void {
  run('xl', ['destroy', NAME]);
}
