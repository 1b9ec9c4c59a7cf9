// The proof scenario, inside the Dom0: what the kernel, udev and ndctl show for NVDIMMs at boot,
// during a hotplug and after an fsdax namespace is made, plus one real hypercall. One node
// process does it all, because every process start is slow in a PV Dom0 under TCG.
//
// Results: environment.json, nd-boot.json, udev-hotplug.txt, nd-hotplug.json,
// ndctl-init-labels.json, nd-labelled.json, ndctl-create-namespace.json, udev-create-namespace.txt, nd-fsdax.json, ndctl-list.json,
// hypercall.json. Markers: ready-for-hotplug (the host then plugs the NVDIMM).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';

import { MiB, alignDown, hex } from '../../src/core/units.js';
import { openXencall } from '../../src/native/libxencall.js';
import { encodeRegion, PROBE_INDEX, XENPF_PMEM, XENVER_VERSION } from '../../src/xen/xenpf-pmem.js';
import { snapshotNd } from './nd-snapshot.js';
import { log, mark, putResult, uptimeSeconds, waitUntil } from './results.js';

const BOOT_NVDIMMS = Number(process.env.LAB_BOOT_NVDIMMS ?? '2');
const HOTPLUG_TIMEOUT_MS = Number(process.env.LAB_HOTPLUG_TIMEOUT_MS ?? '60000');
/** ndctl refuses namespace sizes that are not a multiple of the region's alignment. */
const FALLBACK_REGION_ALIGN_BYTES = 16n * MiB;

function run(command: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

function ndNames(): string[] {
  const dir = '/sys/bus/nd/devices';
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** `udevadm monitor --udev --property`, kept running until stop() returns what it printed. */
async function startUdevMonitor(): Promise<{ stop: (seen?: (printed: string) => boolean, what?: string) => Promise<string> }> {
  const child: ChildProcess = spawn('udevadm', ['monitor', '--udev', '--property'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    output += chunk;
  });
  // udevadm prints its header once its netlink socket is bound; events before that are lost.
  await waitUntil('udevadm monitor to start', () => output.includes('UDEV'), 20_000, 50);
  return {
    /**
     * Stops once `seen` holds for what it printed: `udevadm settle` returns when udev's queue is
     * empty, but the monitor may not have printed (or node read) the last events by then.
     */
    stop: async (seen: (printed: string) => boolean = () => true, what = 'the last events') => {
      await waitUntil(`udevadm monitor to print ${what}`, () => seen(output), 30_000, 50).catch((error: Error) => log(error.message));
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('close', resolve));
      return output;
    },
  };
}

function settle(): void {
  run('udevadm', ['settle', '--timeout=30']);
}

async function main(): Promise<void> {
  const uptimeAtStart = uptimeSeconds();
  const bootDisks = Array.from({ length: BOOT_NVDIMMS }, (_, index) => `/dev/pmem${index}`);
  await waitUntil(bootDisks.join(' '), () => bootDisks.every((disk) => existsSync(disk)), 120_000);
  settle();
  // Read once udev has settled the boot NVDIMMs: the modules it loaded for them are in by then,
  // whenever coldplug got to them (in the Debian 13 Dom0 later than the program's first line).
  putResult('environment.json', {
    kernelRelease: release(),
    xenCapabilities: readFileSync('/proc/xen/capabilities', 'utf8').trim(),
    pid1: readFileSync('/proc/1/comm', 'utf8').trim(),
    kernelCommandLine: readFileSync('/proc/cmdline', 'utf8').trim(),
    modulesLoaded: readFileSync('/proc/modules', 'utf8').split('\n').map((line) => line.split(' ')[0])
      .filter((name): name is string => !!name && /^(nfit|libnvdimm|nd_pmem|nd_btt|dax_pmem|device_dax|xen_privcmd|xenfs)$/.test(name)).sort(),
    xenDevices: existsSync('/dev/xen') ? readdirSync('/dev/xen').sort() : [],
    uptimeAtStart,
  });
  putResult('nd-boot.json', snapshotNd());
  log(`boot NVDIMMs seen: ${bootDisks.join(' ')}`);

  const before = new Set(ndNames());
  const hotplugMonitor = await startUdevMonitor();
  mark('ready-for-hotplug', String(uptimeSeconds()));
  await waitUntil('a new nd region', () => ndNames().some((name) => name.startsWith('region') && !before.has(name)), HOTPLUG_TIMEOUT_MS);
  const region = ndNames().find((name) => name.startsWith('region') && !before.has(name))!;
  const regionIndex = region.slice('region'.length);
  // The region's driver creates the namespace seed last; its bind event ends the burst.
  await waitUntil(`namespace${regionIndex}.0 bound`, () => existsSync(`/sys/bus/nd/devices/namespace${regionIndex}.0/driver`), 30_000);
  settle();
  const namespace = `namespace${regionIndex}.0`;
  const disk = new RegExp(`^UDEV .* add +\\S+/${namespace}/block/pmem${regionIndex} \\(block\\)$`, 'm');
  const bound = new RegExp(`^UDEV .* bind +\\S+/${namespace} \\(nd\\)$`, 'm');
  putResult('udev-hotplug.txt', await hotplugMonitor.stop((printed) => disk.test(printed) && bound.test(printed), `${namespace}'s bind and pmem${regionIndex}'s add`));
  putResult('nd-hotplug.json', snapshotNd());
  log(`hotplugged ${region} seen`);

  // QEMU's label area starts out blank, and a region without an index block is label-less: one
  // raw namespace over all of it that ndctl will not sub-divide. Writing empty labels (with the
  // region disabled, as ndctl requires) makes it a labelled region that takes sized namespaces.
  const regionDir = `/sys/bus/nd/devices/${region}`;
  const dimm = readFileSync(`${regionDir}/mapping0`, 'utf8').split(',')[0]!.trim();
  const labelSteps = [
    ['disable-region', region],
    ['init-labels', dimm],
    ['enable-region', region],
  ].map((args) => ({ command: `ndctl ${args.join(' ')}`, ...run('ndctl', args) }));
  putResult('ndctl-init-labels.json', labelSteps.map((step) => ({ command: step.command, status: step.status, stderr: step.stderr.trim() })));
  const failedStep = labelSteps.find((step) => step.status !== 0);
  if (failedStep) throw new Error(`${failedStep.command} failed (${failedStep.status}): ${failedStep.stderr.trim()}`);
  settle();
  putResult('nd-labelled.json', snapshotNd());

  const available = BigInt(readFileSync(`${regionDir}/available_size`, 'utf8').trim());
  const alignText = existsSync(`${regionDir}/align`) ? readFileSync(`${regionDir}/align`, 'utf8').trim() : '';
  // The kernel prints the region's align in hex (0x1000000).
  const align = /^(0x[0-9a-f]+|\d+)$/i.test(alignText) && BigInt(alignText) > 0n ? BigInt(alignText) : FALLBACK_REGION_ALIGN_BYTES;
  const size = alignDown(available, align);
  // fsdax keeps the pages' memmap on the device by default (--map=dev). In a PV Dom0 that fails:
  // the kernel builds an on-device memmap only with 2 MiB mappings (PSE), which Xen PV guests
  // lack ("vmemmap_populate: no cpu support for altmap allocations", probe -ENOMEM). The first
  // attempt records that; the second keeps the memmap in RAM (--map=mem).
  const attempts: Array<Record<string, unknown>> = [];
  let createdWith: string | null = null;
  let createEvents = '';
  for (const map of ['dev', 'mem']) {
    const args = ['create-namespace', '--mode=fsdax', `--map=${map}`, `--region=${region}`, `--size=${size}`];
    const monitor = await startUdevMonitor();
    const created = run('ndctl', args);
    settle();
    // A namespace made: its pfn device's bind and disk are the last of the burst.
    const pfnDisk = new RegExp(`^UDEV .* add +\\S+/pfn${regionIndex}\\.\\d+/block/pmem\\S* \\(block\\)$`, 'm');
    const pfnBound = new RegExp(`^UDEV .* bind +\\S+/pfn${regionIndex}\\.\\d+ \\(nd\\)$`, 'm');
    const events = created.status === 0
      ? await monitor.stop((printed) => pfnDisk.test(printed) && pfnBound.test(printed), 'the pfn device\'s bind and its disk\'s add')
      : await monitor.stop();
    attempts.push({ command: `ndctl ${args.join(' ')}`, status: created.status, output: parseJson(created.stdout), stderr: created.stderr.trim() });
    if (created.status === 0) {
      createdWith = map;
      createEvents = events;
      break;
    }
  }
  putResult('udev-create-namespace.txt', createEvents);
  putResult('ndctl-create-namespace.json', {
    regionAvailableBytes: available.toString(),
    regionAlignBytes: align.toString(),
    createdWithMap: createdWith,
    attempts,
  });
  if (createdWith === null) throw new Error(`ndctl create-namespace failed with --map=dev and --map=mem on ${region}`);
  putResult('nd-fsdax.json', snapshotNd());
  const listed = run('ndctl', ['list', '--regions', '--namespaces', '--dimms', '--idle', '--verbose']);
  putResult('ndctl-list.json', parseJson(listed.stdout) ?? { status: listed.status, stderr: listed.stderr });
  log(`fsdax namespace on ${region}: ${hex(size)} bytes requested`);

  putResult('hypercall.json', await hypercallProof());
}

/** Two real hypercalls through libxencall: xen_version, and platform_op 67 with the daemon's probe. */
async function hypercallProof(): Promise<Record<string, unknown>> {
  const opening = openXencall();
  if (opening.kind !== 'opened') return { opened: false, error: opening.reason, message: opening.message };
  const xencall = opening.port;
  try {
    const version = await xencall.xenVersion(XENVER_VERSION, 0);
    const probe = encodeRegion(PROBE_INDEX);
    const answer = await xencall.platformOp(probe);
    return {
      opened: true,
      xenVersion: { rc: version.rc, major: version.rc >> 16, minor: version.rc & 0xffff },
      platformOp: {
        cmd: XENPF_PMEM,
        rc: answer.rc,
        errno: answer.errno,
        bufferUnchanged: Buffer.compare(probe, answer.after) === 0,
      },
    };
  } finally {
    xencall.close();
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text.trim() || null;
  }
}

main().catch((error: Error) => {
  log(`prove-nd failed: ${error.message}`);
  process.exitCode = 1;
});
