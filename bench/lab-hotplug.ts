// Item 5: hotplug in the lab (a real kernel, udevd and journald in the QEMU Xen Dom0 of lab/).
// A prepared NVDIMM is plugged in through QMP while bench/lab/hotplug-timing.sh records
// `udevadm monitor --kernel --udev` and the daemon's journal. From the CLOCK_MONOTONIC stamps:
// udevd's time is kernel uevent → udevd's processed event for the pmem disk; the daemon's is that
// processed event → the journal entry of its decision.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { MiB } from '../src/core/units.js';
import { runCli } from '../fixtures/cli.js';
import { makeScratchDir, makeSparseImage } from '../fixtures/images.js';
import { spread, type Spread } from './stats.js';

export interface LabFigures {
  status: 'measured' | 'pending';
  reason?: string;
  /** What is ready on this side, for the pending note. */
  harness?: string;
  runs?: number;
  udevdMs?: Spread;
  daemonMs?: Spread;
  /** The daemon's time over udevd's, hotplug by hotplug. */
  ratio?: Spread;
  /** Start→READY of the two units, from systemd's own monotonic timestamps in the Dom0. */
  startup?: { daemonMs: number; udevdMs: number; daemonExecToReadyMs: number; udevdExecToReadyMs: number };
}

export interface UnitTimes {
  /** When the start job began (ExecStartPre and all): InactiveExitTimestampMonotonic, µs. */
  inactiveExit: number;
  /** When the main process was started: ExecMainStartTimestampMonotonic, µs. */
  execMainStart: number;
  /** When it became active: READY=1 for a Type=notify unit. ActiveEnterTimestampMonotonic, µs. */
  activeEnter: number;
}

/**
 * `systemctl show -p InactiveExitTimestampMonotonic -p ExecMainStartTimestampMonotonic
 * -p ActiveEnterTimestampMonotonic UNIT...`: one block of NAME=value lines per unit, in the order
 * asked, separated by empty lines.
 */
export function parseUnitTimes(text: string): UnitTimes[] {
  return text.trim().split(/\n\s*\n/).map((block) => {
    const values = new Map(block.split('\n').map((line) => line.trim().split('=', 2) as [string, string]));
    const number = (name: string): number => {
      const value = Number(values.get(name));
      if (!Number.isFinite(value) || value <= 0) throw new Error(`systemctl show gave no ${name}`);
      return value;
    };
    return { inactiveExit: number('InactiveExitTimestampMonotonic'), execMainStart: number('ExecMainStartTimestampMonotonic'), activeEnter: number('ActiveEnterTimestampMonotonic') };
  });
}

export interface MonitorEvent {
  source: 'KERNEL' | 'UDEV';
  /** Seconds on CLOCK_MONOTONIC. */
  at: number;
  action: string;
  devpath: string;
  subsystem: string;
}

const MONITOR_LINE = /^(KERNEL|UDEV)\s*\[(\d+\.\d+)\]\s+(\S+)\s+(\S+)\s+\((\S+)\)\s*$/;

export function parseMonitor(text: string): MonitorEvent[] {
  const events: MonitorEvent[] = [];
  for (const line of text.split('\n')) {
    const match = MONITOR_LINE.exec(line.trim());
    if (!match) continue;
    events.push({ source: match[1] as 'KERNEL' | 'UDEV', at: Number(match[2]), action: match[3]!, devpath: match[4]!, subsystem: match[5]! });
  }
  return events;
}

export interface HotplugTiming {
  device: string;
  udevdMs: number;
  daemonMs: number;
}

/**
 * For each `device`: the kernel's and udevd's `add` of `…/block/<device>`, and the first journal
 * entry (JSON lines of `journalctl -o json`) in which xen-pmemd states a decision for it.
 */
export function hotplugTimings(devices: readonly string[], monitor: MonitorEvent[], journalJsonLines: string): HotplugTiming[] | string {
  const entries = journalJsonLines.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  const timings: HotplugTiming[] = [];
  for (const device of devices) {
    const add = (source: 'KERNEL' | 'UDEV'): MonitorEvent | undefined => monitor.find((event) =>
      event.source === source && event.action === 'add' && event.subsystem === 'block' && event.devpath.endsWith(`/block/${device}`));
    const kernel = add('KERNEL');
    const udev = add('UDEV');
    const decision = entries.find((entry) => entry.PMEM_DEVICE === device && typeof entry.PMEM_STATE === 'string');
    if (!kernel || !udev) return `udevadm monitor saw no kernel and udev add of ${device}`;
    if (!decision) return `xen-pmemd logged no decision for ${device}`;
    const decidedMs = Number(decision.__MONOTONIC_TIMESTAMP) / 1000;
    timings.push({ device, udevdMs: (udev.at - kernel.at) * 1000, daemonMs: decidedMs - udev.at * 1000 });
  }
  return timings;
}

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SCENARIO = join(REPO, 'bench', 'lab', 'hotplug-timing.sh');
const HOTPLUGS = 6;
const NVDIMM_BYTES = 256n * MiB;
const HARNESS = 'Ready on this side: bench/lab/hotplug-timing.sh (the guest scenario) and bench/lab-hotplug.ts ' +
  '(prepares each NVDIMM image with `xen-pmem setup`, plugs it in through the lab\'s QMP, and pairs the KERNEL and UDEV ' +
  'lines of `udevadm monitor` with the journal\'s monotonic stamp of the daemon\'s decision; parseMonitor and ' +
  'hotplugTimings are pure). It runs as soon as the lab is committed.';

interface LabApi {
  withLab<T>(options: Record<string, unknown>, body: (lab: {
    waitForFile(name: string, timeoutMs?: number): Promise<string>;
    readResult(name: string): Promise<string>;
    signalGuest(name: string, content?: string): Promise<void>;
    hotplugNvdimm(spec: { id: string; imagePath: string; sizeBytes: bigint }): Promise<void>;
  }) => Promise<T>): Promise<T>;
}

/** The lab is usable once its entry point and its document are part of the repository. */
function labCommitted(): boolean {
  const listed = spawnSync('git', ['-C', REPO, 'ls-files', '--error-unmatch', 'lab/vm.ts', 'docs/lab.md'], { stdio: 'ignore' });
  return listed.status === 0 && existsSync(join(REPO, 'dist', 'lab', 'vm.js'));
}

export async function labHotplug(progress: (line: string) => void): Promise<LabFigures> {
  if (!labCommitted()) {
    return { status: 'pending', reason: 'the lab (lab/vm.ts, docs/lab.md) is not in the repository yet; its files are still being written', harness: HARNESS };
  }
  const scratch = makeScratchDir('bench-lab');
  try {
    const lab = (await import(pathToFileURL(join(REPO, 'dist', 'lab', 'vm.js')).href)) as LabApi;
    const boot = makeSparseImage(join(scratch.dir, 'boot.img'), NVDIMM_BYTES);
    const devices = Array.from({ length: HOTPLUGS }, (_, index) => `pmem${index + 1}`);
    progress(`lab: booting the Xen Dom0 for ${HOTPLUGS} hotplugs`);
    const [monitorText, journal, unitText] = await lab.withLab({
      nvdimms: [{ id: 'nv0', imagePath: boot, sizeBytes: NVDIMM_BYTES }],
      scenario: SCENARIO,
      timeoutMs: 8 * 60_000,
      env: { BENCH_HOTPLUGS: String(HOTPLUGS) },
      hotplugSlots: HOTPLUGS,
      hotplugBytes: BigInt(HOTPLUGS) * NVDIMM_BYTES,
    }, async (vm) => {
      for (let index = 1; index <= HOTPLUGS; index++) {
        const image = makeSparseImage(join(scratch.dir, `hotplug-${index}.img`), NVDIMM_BYTES);
        const setup = runCli(['setup', image]);
        if (setup.code !== 0) throw new Error(`xen-pmem setup ${image} failed: ${setup.stderr.trim()}`);
        await vm.waitForFile(`bench-ready-${index}`, 180_000);
        await vm.hotplugNvdimm({ id: `hp${index}`, imagePath: image, sizeBytes: NVDIMM_BYTES });
        await vm.signalGuest(`bench-plugged-${index}`);
        progress(`lab: hotplug ${index}/${HOTPLUGS} done`);
      }
      await vm.waitForFile('xen-pmemd-journal.json', 180_000);
      return [await vm.readResult('udev-monitor.txt'), await vm.readResult('xen-pmemd-journal.json'), await vm.readResult('unit-times.txt').catch(() => '')];
    });
    const timings = hotplugTimings(devices, parseMonitor(monitorText), journal);
    if (typeof timings === 'string') return { status: 'pending', reason: `the lab ran, but ${timings}`, harness: HARNESS };
    let startup: LabFigures['startup'];
    try {
      const [daemon, udevd] = parseUnitTimes(unitText);
      if (daemon && udevd) {
        startup = {
          daemonMs: (daemon.activeEnter - daemon.inactiveExit) / 1000,
          udevdMs: (udevd.activeEnter - udevd.inactiveExit) / 1000,
          daemonExecToReadyMs: (daemon.activeEnter - daemon.execMainStart) / 1000,
          udevdExecToReadyMs: (udevd.activeEnter - udevd.execMainStart) / 1000,
        };
      }
    } catch (error) {
      progress(`lab: no unit start-up times: ${(error as Error).message}`);
    }
    return {
      status: 'measured', runs: timings.length, udevdMs: spread(timings.map((t) => t.udevdMs)), daemonMs: spread(timings.map((t) => t.daemonMs)),
      ratio: spread(timings.map((t) => t.daemonMs / t.udevdMs)), ...(startup ? { startup } : {}),
    };
  } catch (error) {
    return { status: 'pending', reason: `the lab could not run here: ${error instanceof Error ? error.message : String(error)}`, harness: HARNESS };
  } finally {
    scratch.remove();
  }
}
