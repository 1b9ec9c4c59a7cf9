// npm run demo: xen-pmem end to end in a Xen Dom0 under QEMU, told so that someone who has never
// seen the project can follow it. The Dom0 is Debian 13 (its own root, Linux 6.12, systemd 257,
// Node 20.19) unless `--dom0 debian12` asks for Debian 12 (the host's root, Linux 6.1). The
// hypervisor must implement the pmem platform op: it is the project's patch series (hypervisor/)
// applied to Debian's Xen source, built once and cached by lab/hypervisor.ts, which today builds
// Debian 12's Xen 4.17 only; both Dom0 releases boot on it (the demo uses no toolstack, and
// libxencall's hypercall interface does not change between Xen releases). Two NVDIMMs at boot
// (one prepared on the host with `xen-pmem setup`, one blank), a third prepared one hotplugged
// while the daemon runs. The product is installed in the Dom0 the way the README says. For every
// NVDIMM the demo shows what the daemon logged beside what Xen printed on its console, and which
// Debian, kernel, Xen and Node it ran. It ends with a guest: two more boots over one NVDIMM image
// (lab/guest-chain.ts), in which a PVH guest given pmem by `xen-pmem attach` writes a file on a DAX
// file system and, after the host rebooted, a new guest given the same range reads it back.
// Progress goes to stderr while the lab boots and works; the story goes to stdout at the end.
//
// Usage: npm run demo [-- --dom0 debian13|debian12]

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { GiB, hex, hexRange, humanSize, MiB } from '../src/core/units.js';
import {
  DEMO_RESULT_FILE, field, outcomeEntries, renderEntry,
  type DemoPart, type DemoResult, type DiskFacts, type StatusDevice,
} from './guest/daemon-results.js';
import { LabError } from './errors.js';
import { GUEST_ADDRESS, guestLine, runGuestChain, sha256, type GuestChain } from './guest-chain.js';
import { blankImage, nvdimmPlacement, preparedImage, type PlacedNvdimm } from './nvdimm-images.js';
import { prepareNewestPatchedXen, type PatchedXen } from './hypervisor.js';
import { DEFAULT_DOM0, DOM0_RELEASES, prepareLab, repositoryDir, type Dom0Release } from './prepare.js';
import { readRun, waitForMarkerOrEnd, type ScenarioRun } from './scenario-run.js';
import { describePhaseTimes, phaseTimes } from './timeline.js';
import { withLab } from './vm.js';
import { parseXenPmemLines, type XenPmemLine } from './xen-console.js';

const SIZE = 256n * MiB;
/** The guest's part: a 2 GiB NVDIMM, of which a guest is given 1 GiB. */
const GUEST_NVDIMM = 2n * GiB;
const GUEST_PMEM = 1n * GiB;
/**
 * A hard limit for a hung run only: the demo takes one to two minutes, and a busy machine may make
 * that several times longer without anything being wrong. Progress shows all the while.
 */
const LIMIT_MS = 900_000;

interface Nvdimm {
  id: string;
  image: string;
  how: string;
}

const startedAt = Date.now();
const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

/** Progress while waiting: the lab's own lines, with the Dom0's console lines made readable. */
function progress(line: string): void {
  const waiting = /^waiting for \S+; serial: (.*)$/.exec(line);
  const text = waiting
    ? `Dom0: ${waiting[1]!.replace(/^\[\s*[\d.]+\]\s+\S+\[\d+\]:\s+/, '').replace(/^lab: /, '')}`
    : line;
  process.stderr.write(`  [${((Date.now() - startedAt) / 1000).toFixed(0).padStart(3)} s] ${text}\n`);
}

/**
 * The hypervisor: the newest base with hypervisor/'s series that can be built here. Debian 13's
 * Xen 4.20 when its source is at hand (the archive, or XEN_PMEM_XEN_SOURCE), else Debian 12's
 * 4.17 with the same series, saying why. Either boots both Dom0 releases.
 */
async function demoHypervisor(): Promise<PatchedXen> {
  const { xen, fallback } = await prepareNewestPatchedXen(progress);
  if (fallback !== null) progress(`Xen 4.20 cannot be built here (${fallback}); the demo boots Xen 4.17 with the same series`);
  return xen;
}

function dom0FromArguments(): Dom0Release | string {
  const { values } = parseArgs({ options: { dom0: { type: 'string' } }, allowPositionals: false });
  return values.dom0 ?? DEFAULT_DOM0;
}

async function main(): Promise<number> {
  const release = dom0FromArguments();
  if (!DOM0_RELEASES.includes(release as Dom0Release)) {
    process.stderr.write(`npm run demo: --dom0 ${release} is none of ${DOM0_RELEASES.join(', ')}\n`);
    return 2;
  }
  const dom0 = release as Dom0Release;
  if (process.getuid?.() !== 0) {
    process.stderr.write('npm run demo needs root: it runs QEMU with the host root shared into the guest, and apt-get for the lab\'s packages.\n');
    return 2;
  }
  out('xen-pmem demo: persistent memory for Xen, prepared and reported from Dom0');
  out();
  out('Xen keeps a page_info and a machine-to-phys entry for every 4 KiB page it manages; for pmem those');
  out('must live on the pmem itself. `xen-pmem setup` reserves that area on an NVDIMM (behind a checksummed');
  out('super block), and the daemon xen-pmemd finds it at boot or hotplug, maps it to physical addresses and');
  out('tells Xen with the XENPF_pmem platform op (67). This boots Xen with the project\'s patch series');
  out(`and a PV Dom0 of Debian ${dom0 === 'debian13' ? '13' : '12'} under QEMU, with emulated NVDIMMs, and shows both sides; then it gives`);
  out('a guest pmem and reboots the host to show the guest\'s bytes survive. Four to six minutes (longer on a');
  out('busy machine, and more the first time, when the hypervisor is built).');
  out();
  progress('preparing the lab (QEMU, Xen, the Dom0 kernels and Debian 13\'s root in /var/cache/xen-pmem-lab)');
  const artifacts = await prepareLab({ log: progress });
  progress('the patched hypervisor (built from Debian\'s Xen source and hypervisor/ the first time, then cached)');
  const xen = await demoHypervisor();
  const images = await mkdtemp(join(tmpdir(), 'xen-pmem-demo-'));
  const nvdimms: Nvdimm[] = [
    { id: 'nv0', image: join(images, 'nv0.img'), how: 'prepared on the host with `xen-pmem setup nv0.img`, present at boot' },
    { id: 'nv1', image: join(images, 'nv1.img'), how: 'blank, present at boot' },
    { id: 'nv2', image: join(images, 'nv2.img'), how: 'prepared on the host, hotplugged over QMP while the daemon runs' },
  ];
  let run: DemoRun;
  try {
    progress('nv0: xen-pmem setup on its image file (GPT by sfdisk, super block at 1 MiB, Xen\'s area at 2 MiB)');
    preparedImage(nvdimms[0]!.image, SIZE);
    blankImage(nvdimms[1]!.image, SIZE);
    preparedImage(nvdimms[2]!.image, SIZE);
    run = await withLab({
      artifacts,
      dom0,
      xenImage: xen.xenImage,
      nvdimms: nvdimms.slice(0, 2).map((nvdimm) => ({ id: nvdimm.id, imagePath: nvdimm.image, sizeBytes: SIZE })),
      scenario: 'demo',
      xenArgs: [...xen.bootArgs],
      env: { LAB_BOOT_DISKS: '2' },
      timeoutMs: LIMIT_MS,
      log: progress,
    }, async (lab) => {
      if (await waitForMarkerOrEnd(lab, 'hotplug')) {
        await lab.hotplugNvdimm({ id: 'nv2', imagePath: nvdimms[2]!.image, sizeBytes: SIZE });
      }
      const placement = await nvdimmPlacement(lab.qmp).catch(() => []);
      await lab.waitForFile('done');
      const serial = await readFile(lab.serialLogPath, 'utf8');
      return { ...(await readRun<DemoResult>(lab, DEMO_RESULT_FILE)), placement, serial, xenLines: parseXenPmemLines(serial), xenVersion: xen.sourceVersion };
    });
  } finally {
    await rm(images, { recursive: true, force: true });
  }
  report(run, nvdimms);
  out(`Ran: ${ranOn(run)}.`);
  if (run.exitStatus !== '0' || run.result?.phase !== 'done') {
    out(`The demo did not run to its end (${run.result?.failure ? `${run.result.failure.phase}: ${run.result.failure.message}` : `exit status ${run.exitStatus}`}).`);
    out('--- the Dom0\'s last lines ---');
    out(run.scenarioLogTail);
    out('--- the serial console\'s last lines ---');
    out(run.serialTail);
    return 1;
  }
  out(`(In the Dom0: ${describePhaseTimes(phaseTimes(run.serial))}.)`);

  progress('a guest given pmem: two more boots of the same hypervisor, over one NVDIMM image');
  const chain = await runGuestChain({ artifacts, xen, nvdimmBytes: GUEST_NVDIMM, guestBytes: GUEST_PMEM, log: progress });
  const told = tellGuestChain(chain, xen);
  out(`Done in ${((Date.now() - startedAt) / 1000).toFixed(0)} s.`);
  return told ? 0 : 1;
}

/** The guest's part of the story; false when the chain did not run to its end. */
function tellGuestChain(chain: GuestChain, xen: PatchedXen): boolean {
  const [first, second] = chain.boots;
  const a = first?.result?.guests.find((guest) => guest.name === 'pmem-a');
  const c = second?.result?.guests.find((guest) => guest.name === 'pmem-c');
  const consoleOf = (guest: { console: string[] } | undefined): void => {
    for (const text of guest?.console ?? []) out(`      ${text}`);
  };
  out();
  out('='.repeat(100));
  out('A guest gets persistent memory, and finds it again after the host reboots');
  out(`  Xen ${xen.base} with the series and its own release's Dom0 (${first?.result ? 'its xl starts the guests' : 'did not boot'}). The host made the`);
  out(`  guest's ACPI tables with \`xen-pmem guest-tables --size ${humanSize(GUEST_PMEM)} --at ${hex(GUEST_ADDRESS)}\` and put them in front of`);
  out('  its initrd; the NVDIMM (a sparse file) was prepared with `xen-pmem setup`.');
  out();
  out('  First boot: the daemon reported the NVDIMM; guest pmem-a (PVH) was created paused, then');
  out(`    $ xen-pmem attach pmem-a pmem0 --size ${humanSize(GUEST_PMEM)} --at ${hex(GUEST_ADDRESS)}`);
  out(`    ${a?.attach?.stdout.trim() || a?.attach?.stderr.trim() || '(not run)'}`);
  const held = first?.result?.owners['pmem-a holds'];
  if (held) out(`    xen-pmem status: ${held.map((run) => `[${run.spfn}, ${run.epfn}) held by domain ${run.domid}`).join(', ')}`);
  const refused = first?.result?.heldElsewhere?.stderr.trim();
  if (refused) out(`    another guest asking for the same frames: ${refused}`);
  out('    pmem-a, unpaused; its console:');
  consoleOf(a);
  out('  The host reboots: QEMU stops, and boots the same hypervisor over the same image file.');
  out('  Second boot: the daemon reported the NVDIMM again; guest pmem-c is given the same range:');
  out(`    ${c?.attach?.stdout.trim() || c?.attach?.stderr.trim() || '(not run)'}`);
  out('    pmem-c\'s console:');
  consoleOf(c);
  const wrote = guestLine(first, 'pmem-a', 'read');
  const read = guestLine(second, 'pmem-c', 'read');
  const onDisk = chain.fileBytes ? sha256(chain.fileBytes) : null;
  const same = wrote !== undefined && wrote === read && wrote.endsWith(chain.pattern) && onDisk === chain.pattern;
  out(`  The file's bytes, read on the host from the image file where pmem-a's extents say: sha256 ${onDisk ?? '(not found)'}`);
  out(same
    ? '  pmem-c read back what pmem-a wrote before the reboot, and the bytes are in the NVDIMM itself.'
    : '  The guests did NOT read back the same bytes (see the consoles above).');
  out();
  return same && chain.boots.every((boot) => boot.exitStatus === '0' && boot.result?.phase === 'done');
}

/** `Debian GNU/Linux 13 (trixie) 13.2, Linux 6.12.117+deb13-amd64, Xen 4.17.5-pmem, Node v20.19.2, systemd 257 (…)` */
function ranOn(run: DemoRun): string {
  const system = run.result?.system;
  if (!system) return 'the Dom0 did not say what it runs';
  return `${system.os} ${system.debianVersion}, Linux ${system.kernelRelease}, Xen ${system.xen ?? '?'} (patched xen ${run.xenVersion}), Node ${system.node}, ${system.systemd}`;
}

interface DemoRun extends ScenarioRun<DemoResult> {
  placement: PlacedNvdimm[];
  serial: string;
  xenLines: XenPmemLine[];
  xenVersion: string;
}

function report(run: DemoRun, nvdimms: Nvdimm[]): void {
  const result = run.result;
  if (!result) return;
  const part = result.patchedXen;
  const disks = [...(result.bootDisks ?? []), ...(part ? [part.hotplug.facts] : [])];
  const diskOf = (id: string): DiskFacts | undefined => {
    const placed = run.placement.find((nvdimm) => nvdimm.id === id);
    return placed && disks.find((facts) => BigInt(facts.namespaceResource) === BigInt(placed.address));
  };

  out();
  out('='.repeat(100));
  out('The machine');
  const system = result.system;
  out(`  Xen ${system?.xen ?? '?'}: Debian's xen ${run.xenVersion} source with the XENPF_pmem patch series of hypervisor/`);
  out(`  (docs/hypervisor.md). Dom0: ${system?.os ?? '?'} (Debian ${system?.debianVersion ?? '?'}), kernel ${result.kernelRelease ?? '?'} (PV),`);
  out(`  ${system?.systemd ?? 'systemd'} as PID 1, node ${system?.node ?? '?'}; all under QEMU (TCG). NVDIMMs are QEMU nvdimm`);
  out('  devices backed by sparse files on the host. Installed in the Dom0 as the README says, from the checkout');
  out(`  ${repositoryDir()} (the guest sees it at the same path): \`node dist/packaging/install.js install\`, then \`systemctl enable --now xen-pmemd\`.`);
  if (result.install) {
    out(`  (install took ${(result.install.command.ms / 1000).toFixed(1)} s, enable --now ${(result.install.enable.ms / 1000).toFixed(1)} s: the daemon is`);
    out('   Type=notify and tells systemd it is ready only once every NVDIMM present at start is decided.)');
  }
  if (!part) return;

  out();
  out('='.repeat(100));
  out('Each NVDIMM: where it is, what the daemon decided, and what Xen says it took');
  out(`  The daemon's verdict on the hypervisor: ${part.status.daemon.capability?.kind === 'xenpf-pmem' ? `Xen ${part.status.daemon.capability.xenVersion} implements XENPF_pmem (proven by one harmless probe)` : JSON.stringify(part.status.daemon.capability)}`);
  out();
  for (const nvdimm of nvdimms) describeNvdimm(nvdimm, diskOf(nvdimm.id), run, part);
  const hotplugged = part.hotplug;
  const [line] = outcomeEntries(part.journal, hotplugged.disk);
  if (line && hotplugged.udevInitializedUs) {
    const seconds = (Number(field(line, '__MONOTONIC_TIMESTAMP')) - Number(hotplugged.udevInitializedUs)) / 1e6;
    out(`  The hotplugged NVDIMM was decided ${seconds.toFixed(2)} s after udev announced /dev/${hotplugged.disk}, by the same daemon (pid ${part.unit.properties.MainPID}).`);
    out();
  }
  out('  The daemon\'s journal (journalctl -u xen-pmemd; seconds since boot, priority, who, message):');
  for (const entry of part.journal) out(`    ${renderEntry(entry)}`);
  out();
  out('  Xen\'s console (its pmem lines: one per add it took or refused):');
  for (const xenLine of run.xenLines) out(`    ${xenLine.line.replace(/^.*?\(XEN\) /, '(XEN) ')}`);
  out();
  out('  xen-pmem status:');
  for (const text of part.statusText.trimEnd().split('\n')) out(`    ${text}`);
  out();
  out('='.repeat(100));
  summary(run, nvdimms, diskOf);
  out();
}

/** Xen's console line that accepted the region starting at this PFN, if it did. */
function xenAdded(run: DemoRun, spfn: string): Extract<XenPmemLine, { kind: 'added' }> | undefined {
  return run.xenLines.find((line): line is Extract<XenPmemLine, { kind: 'added' }> => line.kind === 'added' && hex(line.request.spfn) === spfn);
}

function describeNvdimm(nvdimm: Nvdimm, facts: DiskFacts | undefined, run: DemoRun, part: DemoPart): void {
  const placed = run.placement.find((entry) => entry.id === nvdimm.id);
  out(`  ${nvdimm.id}  ${humanSize(SIZE)}, ${nvdimm.how}`);
  if (!placed || !facts) {
    out('    not seen in the Dom0');
    out();
    return;
  }
  const device = deviceOf(part, facts.disk);
  const row = (label: string, value: string): void => out(`    ${label.padEnd(17)} ${value}`);
  row('QEMU put it at', `${placed.address}  →  /dev/${facts.disk} in the Dom0 (${facts.namespace} in ${facts.region}, ${facts.parent.startsWith('pfn') ? 'fsdax' : 'raw'})`);
  const layout = device?.layout;
  if (layout) {
    row('physical range', `${hexRange(BigInt(layout.region.start), BigInt(layout.region.size))}  (the whole device: Xen's "pmem region")`);
    row('reserved for Xen', `${hexRange(BigInt(layout.reserved.start), BigInt(layout.reserved.size))}  (${humanSize(BigInt(layout.reserved.size))} for page_info and M2P entries)`);
    row('data for guests', `${hexRange(BigInt(layout.data.start), BigInt(layout.data.size))}  (${humanSize(BigInt(layout.data.size))})`);
  } else {
    row('physical range', `${physicalRange(facts)}  (nothing reserved: no layout on it)`);
  }
  row('super block', superblockVerdict(part, facts.disk));
  row('state', device ? `${device.state.toUpperCase()} (${device.reason})` : 'not decided');
  const [line] = outcomeEntries(part.journal, facts.disk);
  if (line) row('xen-pmemd said', field(line, 'MESSAGE') ?? '');
  const spfn = layout?.pfns.spfn ?? hex(BigInt(facts.pfnResource ?? facts.namespaceResource) >> 12n);
  const added = xenAdded(run, spfn);
  const heard = run.xenLines.filter((entry) => hex(entry.request.spfn) === spfn);
  row('Xen said', added ? added.line.replace(/^.*?\(XEN\) /, '(XEN) ') : heard.length > 0 ? heard.map((entry) => entry.line.replace(/^.*?\(XEN\) /, '(XEN) ')).join(' / ') : 'nothing: the daemon reported nothing for it');
  if (added && layout) {
    const p = layout.pfns;
    const same = [added.request.spfn, added.request.epfn, added.request.rsvSpfn, added.request.rsvEpfn, added.request.dataSpfn, added.request.dataEpfn]
      .map((value) => hex(value)).join(' ') === [p.spfn, p.epfn, p.rsvSpfn, p.rsvEpfn, p.dataSpfn, p.dataEpfn].join(' ');
    row('the six PFNs', same ? 'the same on both sides' : 'DIFFER between the daemon and Xen');
    row('Xen used', `${hex(added.reservedPagesUsed)} of the ${hex(added.reservedPages)} reserved pages (${humanSize(added.reservedPagesUsed * 4096n)} of ${humanSize(added.reservedPages * 4096n)}: frame table ${added.chunks.frameTable}, M2P ${added.chunks.m2p} chunks of 2 MiB)`);
  }
  out();
}

function deviceOf(part: DemoPart, disk: string): StatusDevice | undefined {
  return part.status.devices.find((entry) => entry.device === disk);
}

function physicalRange(facts: DiskFacts): string {
  return hexRange(BigInt(facts.pfnResource ?? facts.namespaceResource), BigInt(facts.sectors) * 512n);
}

/** What `xen-pmem list` found on the disk: valid (and from which copy), absent or invalid (why). */
function superblockVerdict(part: DemoPart, disk: string): string {
  const listed = (part.list as Array<{ blockdev?: string; superblock?: { status: string; source?: string; reason?: string } }>)
    .find((entry) => entry.blockdev === disk);
  const sb = listed?.superblock;
  // A reported disk is gone by then: the daemon unbound its namespace so that Xen could take it.
  if (!sb) return deviceOf(part, disk)?.layout ? 'valid (read by the daemon; the disk is unbound now)' : 'not read';
  return `${sb.status}${sb.source ? ` (read from the ${sb.source} copy)` : ''}${sb.reason ? ` [${sb.reason}]` : ''}`;
}

function summary(run: DemoRun, nvdimms: Nvdimm[], diskOf: (id: string) => DiskFacts | undefined): void {
  const part = run.result?.patchedXen;
  const rows = [['NVDIMM', 'device', 'physical range', 'super block', 'xen-pmemd', 'Xen']];
  for (const nvdimm of nvdimms) {
    const facts = diskOf(nvdimm.id);
    const device = facts && part ? deviceOf(part, facts.disk) : undefined;
    if (!facts || !part) {
      rows.push([nvdimm.id, '-', '-', '-', '-', '-']);
      continue;
    }
    const added = device?.layout?.pfns.spfn ? xenAdded(run, device.layout.pfns.spfn) : undefined;
    rows.push([
      nvdimm.id, `/dev/${facts.disk}`, physicalRange(facts), superblockVerdict(part, facts.disk).split(' ')[0]!,
      device ? `${device.state} (${device.reason})` : '-', added ? 'added' : 'nothing',
    ]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  out('In short');
  for (const row of rows) out(`  ${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}`);
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  const reason = error instanceof LabError ? ` [${error.reason}]` : '';
  process.stderr.write(`npm run demo failed${reason}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
