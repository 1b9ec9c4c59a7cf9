// What the Debian package scenario (lab/guest/debian-package.ts) brings back from the Dom0, and
// the pure reading of it that guest and host share: file listings taken before the install and
// after the purge, and which differences are the package manager's own bookkeeping.

import type { CommandRecord, DiskFacts, JournalEntry, StatusJson, UnitSnapshot } from './daemon-results.js';

export const PACKAGE_RESULT_FILE = 'debian-package.json';

/**
 * Directories listed whole (every file below them): where the package's files, its maintainer
 * scripts (enablement links, deb-systemd-helper's state) and dpkg write. The package's own
 * directories are listed too, one level deep (LAB_PACKAGE_DIRS, from dpkg-deb -c on the host).
 */
export const LISTED_TREES = ['/etc', '/var/lib', '/var/log', '/var/cache/man', '/usr/lib/xen-pmem', '/usr/share/doc/xen-pmem'];

/**
 * What the package manager and man-db keep about themselves, which a purge may leave changed:
 * dpkg's and apt's records and logs, debconf's, man-db's index (its trigger runs mandb, which
 * also tags a cache directory per manual locale).
 */
const BOOKKEEPING = [
  /^\/var\/lib\/dpkg\//,
  /^\/var\/lib\/apt\//,
  /^\/var\/cache\/apt\//,
  /^\/var\/cache\/debconf\//,
  /^\/var\/cache\/man\//,
  /^\/var\/log\/(dpkg\.log|alternatives\.log|apt\/)/,
];

export function isBookkeeping(path: string): boolean {
  return BOOKKEEPING.some((pattern) => pattern.test(path)) && !path.includes('xen-pmem');
}

/**
 * A formatted copy man-db keeps of a page someone read ("cat page", /var/cache/man/cat8/…):
 * man-db's cache, not a file of the package; man-db.service deletes copies unread for a week.
 */
export function isCatPage(path: string): boolean {
  return /^\/var\/cache\/man\/(?:[^/]+\/)?cat\d\/[^/]+$/.test(path);
}

export interface ListingDiff {
  added: string[];
  removed: string[];
}

/** Paths in one listing and not the other (directories end in `/`, symbolic links in ` -> target`). */
export function diffListings(before: string[], after: string[]): ListingDiff {
  const old = new Set(before);
  const now = new Set(after);
  return { added: after.filter((path) => !old.has(path)), removed: before.filter((path) => !now.has(path)) };
}

/** The differences a purge may not leave: anything but bookkeeping and man-db's copies of pages read. */
export function leftovers(diff: ListingDiff): ListingDiff {
  const kept = (path: string): boolean => !isBookkeeping(path) && !isCatPage(path);
  return { added: diff.added.filter(kept), removed: diff.removed.filter(kept) };
}

/** One `apt-get` step with what the package manager and the service manager say right after it. */
export interface AptStep {
  apt: CommandRecord;
  /** `dpkg-query -W -f '${Status} ${Version}' xen-pmem`, or its error. */
  dpkg: string;
  unit: UnitSnapshot;
  /** The daemon's processes in the unit's cgroup. */
  pids: string[];
}

/** What an operator sees of the running daemon. */
export interface DaemonView {
  status: StatusJson | null;
  statusExit: number | null;
  hypervisorLog: string[];
  ledger: string[];
  journal: JournalEntry[];
}

/** The journal as an operator reads it with the catalog (`journalctl -x`), and by MESSAGE_ID. */
export interface JournalCatalogView {
  /** `journalctl -b -x -u xen-pmemd`: each entry with a catalog entry is followed by its text. */
  explained: CommandRecord;
  /** `journalctl -b -o json MESSAGE_ID=<reported>`, no unit named: how a fleet finds reports. */
  reports: JournalEntry[];
  /** The same for reported-earlier, the line of a restarted daemon that found its report. */
  reportedEarlier: JournalEntry[];
  /** The lines of `journalctl --list-catalog` defined by xen-pmem. */
  catalog: string[];
}

/** The metrics file as node_exporter's user sees it. */
export interface MetricsView {
  /** Mode of /run/xen-pmem, as `stat` gives it (0711). */
  runDirMode: number;
  /** `cat` of the file as nobody (setpriv): what node_exporter can read. */
  readAsNobody: CommandRecord;
  /** `ls /run/xen-pmem` as nobody: what it cannot. */
  listAsNobody: CommandRecord;
  /** `promtool check metrics` on the file, when the host had promtool (LAB_PROMTOOL). */
  promtool: CommandRecord | null;
}

export interface UdevView {
  trigger: CommandRecord;
  /** SYSTEMD_WANTS of the disk in udev's database after the change event, or null. */
  systemdWants: string | null;
}

export interface PackageScenarioResult {
  phase: string;
  failure?: { phase: string; message: string };
  disk?: string;
  /** The blank NVDIMM's disk, which stays (the reported one is unbound): where the udev rule is watched. */
  watchDisk?: string;
  facts?: DiskFacts;
  /** The host image's /usr/sbin/policy-rc.d (Docker's "exit 101") was taken out of the guest. */
  removedPolicyRcD?: boolean;
  /** The last apt-get run, whatever happened after it: for a failure message. */
  lastApt?: CommandRecord;
  baseline?: { listing: string[]; dpkg: string; unit: UnitSnapshot; udev: UdevView };
  install?: AptStep & {
    files: string[];
    ruleFile: boolean;
    udev: UdevView;
    /** `systemctl show -p WantedBy xen-pmemd.service`: the disk's device unit once the rule ran. */
    wantedBy: string;
    daemon: DaemonView;
    man: CommandRecord;
    manPaths: CommandRecord;
    conffile: string;
    journal: JournalCatalogView;
    metrics: MetricsView;
  };
  edit?: { before: string; after: string };
  upgrade?: AptStep & {
    before: UnitSnapshot;
    conffile: string;
    /** Files next to the conffile: dpkg leaves .dpkg-dist or .dpkg-new when it could not merge. */
    confDir: string[];
    udev: UdevView;
    /** Journal entries of the new daemon at debug priority (the edited logLevel at work). */
    debugEntries: JournalEntry[];
    daemon: DaemonView;
    journal: JournalCatalogView;
  };
  remove?: AptStep & {
    before: UnitSnapshot;
    oldPidAlive: boolean;
    ruleFile: boolean;
    udev: UdevView;
    /** The unit after the change event: the rule is gone, so nothing started it. */
    unitAfterTrigger: UnitSnapshot;
    conffile: string | null;
    runDir: string[];
    ledger: string[];
    enablementLink: boolean;
  };
  purge?: AptStep & { listing: string[]; runDir: string[]; ledger: string[]; etcDir: boolean; catalog: string[] };
}
