// The Debian package's maintainer behaviour in the Dom0, with real dpkg, apt, systemd and udev:
// install an older build (LAB_DEB_PREVIOUS), see the daemon enabled, started and reporting, and
// the udev rule active; edit the conffile; upgrade to the current build (LAB_DEB_CURRENT), see
// the daemon restarted, nothing reported twice and the edit kept (and in effect); remove, see the
// daemon stopped, the rule gone and the ledger kept; purge, and list what is left.
//
// The test hypervisor stands in for Xen's missing pmem support as in daemon-test-xen, except that
// it is named by XEN_PMEM_LIBXENCALL in its drop-in: /etc/xen-pmem/config.json belongs to the
// package. The equipment is in place before the first listing, so the listings compare only what
// the package did.
//
// Also what the package adds for operators: the journal explained by the message catalog
// (journalctl -x, MESSAGE_ID=, the catalog index systemd's trigger rebuilt) and the metrics file
// as node_exporter's unprivileged user reads it.
//
// Settings (lab.env): LAB_DEB_PREVIOUS, LAB_DEB_CURRENT (paths of the two .deb files, visible at
// the same paths in the guest), LAB_PACKAGE_DIRS (the package's directories, one per line),
// LAB_PROMTOOL (optional: a promtool to check the metrics file with).
// Result: debian-package.json, rewritten after every phase.

import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { messageIdOf } from '../../src/daemon/catalog.js';
import { METRICS_DIR, METRICS_FILE } from '../../src/daemon/metrics.js';

import {
  STATE_DIR, UNIT, daemonReady, diskFacts, installTestHypervisor, ledgerLines, pmemDisks, readText, run, runOk, statusJson,
  testHypervisorLog, unitJournal, unitPids, unitSnapshot, waitForDeviceState, waitForDisks, waitForUnit,
} from './daemon-dom0.js';
import { parseJournal, type CommandRecord, type JournalEntry } from './daemon-results.js';
import {
  isBookkeeping, LISTED_TREES, PACKAGE_RESULT_FILE, type AptStep, type DaemonView, type JournalCatalogView, type MetricsView, type PackageScenarioResult, type UdevView,
} from './package-results.js';
import { log, phaseRunner, putResult, sleep, waitUntil } from './results.js';

const PREVIOUS = process.env.LAB_DEB_PREVIOUS ?? '';
const CURRENT = process.env.LAB_DEB_CURRENT ?? '';
const PACKAGE_DIRS = (process.env.LAB_PACKAGE_DIRS ?? '').split('\n').filter((dir) => dir !== '');
/** The host's promtool, if it has one (the host root is the guest's). */
const PROMTOOL = process.env.LAB_PROMTOOL ?? '';
const METRICS_PATH = join(STATE_DIR, METRICS_DIR, METRICS_FILE);
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];
const PACKAGED_CLI = '/usr/sbin/xen-pmem';
const CONFFILE = '/etc/xen-pmem/config.json';
const RULE = '/usr/lib/udev/rules.d/69-xen-pmem.rules';
const POLICY_RC_D = '/usr/sbin/policy-rc.d';
/** man-db's trigger rebuilds its index only while this file exists. */
const MAN_DB_AUTO_UPDATE = '/var/lib/man-db/auto-update';
const EMPTY_LISTS = '/run/xen-pmem-lab/apt-lists';
const ENABLEMENT_LINK = `/etc/systemd/system/multi-user.target.wants/${UNIT}`;
/** apt and dpkg under emulation: each maintainer script step is a process start or several. */
const APT_TIMEOUT_MS = 600_000;

process.env.DEBIAN_FRONTEND = 'noninteractive';
process.env.MANPAGER = 'cat';
process.env.MANWIDTH = '80';

const result: PackageScenarioResult = { phase: 'start' };
const phase = phaseRunner(PACKAGE_RESULT_FILE, result);

/** Every path below the listed trees and in the package's directories, sorted. */
function listing(): string[] {
  const paths = new Set<string>();
  const describe = (path: string): string | null => {
    try {
      const stat = lstatSync(path);
      if (stat.isDirectory()) return `${path}/`;
      if (stat.isSymbolicLink()) return `${path} -> ${readlinkSync(path)}`;
      return path;
    } catch {
      return null;
    }
  };
  const walk = (dir: string, deep: boolean): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    // In the package manager's own directories only entries named after the package count
    // (isBookkeeping): the thousands of others are not stat'ed, each a round trip over 9p.
    const bookkeeping = isBookkeeping(`${dir}/`);
    for (const entry of entries) {
      if (bookkeeping && !entry.name.includes('xen-pmem')) {
        if (deep && entry.isDirectory()) walk(join(dir, entry.name), true);
        continue;
      }
      const path = join(dir, entry.name);
      const described = describe(path);
      if (described) paths.add(described);
      if (deep && entry.isDirectory()) walk(path, true);
    }
  };
  for (const tree of LISTED_TREES) {
    const top = describe(tree);
    if (top) paths.add(top);
    walk(tree, true);
  }
  for (const dir of PACKAGE_DIRS) {
    const top = describe(dir);
    if (top) paths.add(top);
    walk(dir, false);
  }
  return [...paths].sort();
}

function dpkgState(): string {
  const query = run('dpkg-query', ['-W', '-f', '${Status} ${Version}', 'xen-pmem']);
  return query.status === 0 ? query.stdout.trim() : `not known to dpkg (${query.stderr.trim().split('\n')[0] ?? ''})`;
}

/**
 * apt without repositories: every dependency of the package is installed already, so apt needs
 * only dpkg's status and the .deb. Reading the host's full package lists took apt 12 s per call
 * under emulation, 2.5 s without them; what dpkg and the maintainer scripts do is the same.
 */
const APT_WITHOUT_REPOSITORIES = [
  '-o', 'Dir::Etc::SourceList=/dev/null', '-o', `Dir::Etc::SourceParts=${EMPTY_LISTS}`, '-o', `Dir::State::Lists=${EMPTY_LISTS}`,
  '-o', 'Dir::Cache::pkgcache=', '-o', 'Dir::Cache::srcpkgcache=',
];

function apt(args: string[]): CommandRecord {
  mkdirSync(join(EMPTY_LISTS, 'partial'), { recursive: true });
  // No --force-conf* option: an upgrade that wanted to ask about the conffile would fail here
  // (stdin is not a terminal).
  const record = run('apt-get', [...APT_WITHOUT_REPOSITORIES, '-y', '--no-install-recommends', ...args], APT_TIMEOUT_MS);
  if (record.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${record.status}):\n${record.stdout.slice(-2000)}\n${record.stderr.slice(-2000)}`);
  return record;
}

function aptStep(args: string[]): AptStep {
  const record = apt(args);
  result.lastApt = record;
  return { apt: record, dpkg: dpkgState(), unit: unitSnapshot(), pids: unitPids() };
}

/** A change event for the disk, processed before this returns; then its SYSTEMD_WANTS in udev's database. */
function udevView(disk: string): UdevView {
  const trigger = run('udevadm', ['trigger', '--action=change', '--settle', `/sys/class/block/${disk}`]);
  return { trigger, systemdWants: systemdWants(disk) };
}

function systemdWants(disk: string): string | null {
  const info = run('udevadm', ['info', '--query=property', `--name=/dev/${disk}`]);
  const line = info.stdout.split('\n').find((entry) => entry.startsWith('SYSTEMD_WANTS='));
  return line ? line.slice('SYSTEMD_WANTS='.length) : null;
}

function daemonView(): DaemonView {
  let status: DaemonView['status'] = null;
  let statusExit: number | null = null;
  try {
    ({ status, exitCode: statusExit } = statusJson(PACKAGED_CLI));
  } catch (error) {
    log(`xen-pmem status --json gave no JSON: ${(error as Error).message}`);
  }
  return { status, statusExit, hypervisorLog: testHypervisorLog(), ledger: ledgerLines(), journal: unitJournal().entries };
}

/** Journal entries of this boot matching MESSAGE_ID=, across every unit. */
function byMessageId(id: string): JournalEntry[] {
  const record = run('journalctl', ['--no-pager', '-b', '-o', 'json', `MESSAGE_ID=${id}`]);
  return record.stdout.trim() === '' ? [] : parseJournal(record.stdout);
}

/** xen-pmem's entries in journalctl's catalog index. */
function catalogEntries(): string[] {
  return run('journalctl', ['--list-catalog']).stdout.split('\n').filter((line) => / xen-pmem: /.test(line));
}

function journalCatalogView(): JournalCatalogView {
  return {
    explained: run('journalctl', ['--no-pager', '-b', '-x', '-u', UNIT]),
    reports: byMessageId(messageIdOf('reported')),
    reportedEarlier: byMessageId(messageIdOf('reported-earlier')),
    catalog: catalogEntries(),
  };
}

function metricsView(): MetricsView {
  return {
    runDirMode: statSync(STATE_DIR).mode & 0o7777,
    readAsNobody: run('setpriv', [...NOBODY, 'cat', METRICS_PATH]),
    listAsNobody: run('setpriv', [...NOBODY, 'ls', STATE_DIR]),
    // promtool check metrics reads the text on its standard input.
    promtool: PROMTOOL !== '' ? run('sh', ['-c', '"$0" check metrics < "$1"', PROMTOOL, METRICS_PATH]) : null,
  };
}

function dirEntries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function waitForDaemon(notPid?: string): Promise<void> {
  await waitForUnit('active with a daemon past coldplug', (s) => s.properties.ActiveState === 'active' && s.properties.MainPID !== notPid,
    180_000, UNIT, () => daemonReady(notPid));
}

async function main(): Promise<void> {
  if (!existsSync(PREVIOUS) || !existsSync(CURRENT)) throw new Error(`LAB_DEB_PREVIOUS (${PREVIOUS}) and LAB_DEB_CURRENT (${CURRENT}) must name .deb files`);

  await phase('boot', async () => {
    await waitForDisks(['pmem0', 'pmem1'], 60_000);
    // The prepared NVDIMM has partitions; the blank one stays a disk after the report, when the
    // daemon has unbound the prepared one's namespace for Xen.
    const disks = pmemDisks();
    result.disk = disks.find((name) => existsSync(`/sys/class/block/${name}/${name}p1`));
    result.watchDisk = disks.find((name) => name !== result.disk);
    if (!result.disk || !result.watchDisk) throw new Error(`want one prepared and one blank disk, have ${disks.join(' ')}`);
    result.facts = diskFacts(result.disk);
  });
  const disk = result.disk!;
  const watchDisk = result.watchDisk!;

  await phase('baseline', () => {
    // The lab's host is a container image, which carries Docker's policy-rc.d: "exit 101", never
    // start a service from a maintainer script. A Dom0 has none, and with it in place
    // deb-systemd-invoke would not start the daemon: it goes from the guest's overlay.
    if (existsSync(POLICY_RC_D)) {
      rmSync(POLICY_RC_D);
      result.removedPolicyRcD = true;
    }
    // man-db's trigger, which every install, upgrade, remove and purge sets off, rebuilds the
    // index of every manual page on the system (for apropos and whatis; man reads the pages
    // themselves): thousands of files over 9p under emulation. Switched off in the guest, as
    // container images do; `man xen-pmem` below does not need the index.
    rmSync(MAN_DB_AUTO_UPDATE, { force: true });
    installTestHypervisor('pmem', 'environment');
    result.baseline = { listing: listing(), dpkg: dpkgState(), unit: unitSnapshot(), udev: udevView(watchDisk) };
  });

  await phase('install', async () => {
    const step = aptStep(['install', PREVIOUS]);
    await waitForDaemon();
    await waitForDeviceState(disk, ['reported', 'rejected', 'unsupported', 'failed'], 60_000);
    const files = run('dpkg-query', ['-L', 'xen-pmem']).stdout.split('\n').filter((line) => line !== '');
    const udev = udevView(watchDisk);
    const wantedBy = run('systemctl', ['show', '-p', 'WantedBy', '--value', UNIT]).stdout.trim();
    const man = run('man', ['xen-pmem']);
    const manPaths = run('man', ['-w', 'xen-pmem', 'xen-pmemd', 'xen-pmem.json']);
    // The metrics writer coalesces for a second after the last decision.
    await waitUntil('the metrics file to show the report', () => /^xen_pmem_reports_total 1$/m.test(readText(METRICS_PATH) ?? ''), 30_000, 500)
      .catch((error: Error) => log(error.message));
    result.install = {
      ...step, files, ruleFile: existsSync(RULE), udev, wantedBy, daemon: daemonView(), man, manPaths, conffile: readText(CONFFILE) ?? '',
      journal: journalCatalogView(), metrics: metricsView(),
    };
  });

  await phase('edit', () => {
    const before = readFileSync(CONFFILE, 'utf8');
    // A harmless change whose effect shows: the upgraded daemon logs unchanged decisions too.
    const after = before.replace('"logLevel": "info"', '"logLevel": "debug"');
    if (after === before) throw new Error(`${CONFFILE} has no "logLevel": "info" to change:\n${before}`);
    writeFileSync(CONFFILE, after);
    result.edit = { before, after };
  });

  await phase('upgrade', async () => {
    const before = unitSnapshot();
    const step = aptStep(['install', CURRENT]);
    await waitForDaemon(before.properties.MainPID);
    const unit = unitSnapshot();
    await waitForDeviceState(disk, ['reported', 'rejected', 'unsupported', 'failed'], 60_000);
    // An unchanged decision is logged at debug only: the change event makes one.
    const udev = udevView(watchDisk);
    const pid = unit.properties.MainPID;
    let debugEntries: ReturnType<typeof unitJournal>['entries'] = [];
    await waitUntil('a debug line from the upgraded daemon', () => {
      debugEntries = unitJournal([`_PID=${pid}`, '-p', 'debug..debug']).entries;
      return debugEntries.length > 0;
    }, 30_000, 1000).catch((error: Error) => log(error.message));
    result.upgrade = {
      ...step, unit, before, conffile: readText(CONFFILE) ?? '', confDir: dirEntries('/etc/xen-pmem'), udev, debugEntries, daemon: daemonView(),
      journal: journalCatalogView(),
    };
  });

  await phase('remove', async () => {
    const before = unitSnapshot();
    const step = aptStep(['remove', 'xen-pmem']);
    const oldPid = before.properties.MainPID ?? '';
    const udev = udevView(watchDisk);
    // Had the rule survived, the change event would have queued a start of the unit.
    await sleep(2000);
    result.remove = {
      ...step,
      before,
      oldPidAlive: oldPid !== '' && oldPid !== '0' && existsSync(`/proc/${oldPid}`),
      ruleFile: existsSync(RULE),
      udev,
      unitAfterTrigger: unitSnapshot(),
      conffile: readText(CONFFILE),
      runDir: dirEntries(STATE_DIR),
      ledger: ledgerLines(),
      enablementLink: lstatOrNull(ENABLEMENT_LINK),
    };
  });

  await phase('purge', () => {
    const step = aptStep(['purge', 'xen-pmem']);
    result.purge = { ...step, listing: listing(), runDir: dirEntries(STATE_DIR), ledger: ledgerLines(), etcDir: existsSync('/etc/xen-pmem'), catalog: catalogEntries() };
  });

  result.phase = 'done';
  putResult(PACKAGE_RESULT_FILE, result);
}

function lstatOrNull(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

main().catch((error: Error) => {
  result.failure = { phase: result.phase, message: error.message };
  putResult(PACKAGE_RESULT_FILE, result);
  log(`debian-package failed in phase ${result.phase}: ${error.message}`);
  process.exitCode = 1;
});
