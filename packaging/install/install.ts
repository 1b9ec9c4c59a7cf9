// Copies the built project onto a system (or into a staging root) and takes it off again.
// install writes:
//   <prefix>/lib/xen-pmem/                                the runtime directory a build makes
//                                                          (dist/runtime: bundles, native packages)
//   <prefix>/sbin/xen-pmem, <prefix>/sbin/xen-pmemd      launchers that exec this machine's node
//   /etc/systemd/system/xen-pmemd.service                 ExecStart= rendered for <prefix>
//   /etc/udev/rules.d/69-xen-pmem.rules
//   /usr/local/lib/systemd/catalog/xen-pmem.catalog       the journal message catalog
//   <prefix>/lib/xen-pmem/install-manifest.json           what uninstall removes, and only that
// then asks systemd and udevd to reload and journalctl to rebuild its catalog index, when they
// run and the root is the running system.

import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import { join, posix } from 'node:path';

import { errorCode as errnoCode } from '../../src/core/errno.js';

import { describeFailure, realHost, type HostPort } from './host.js';
import {
  CATALOG_SOURCE,
  checkPrefix,
  checkRoot,
  DEFAULT_PREFIX,
  DEFAULT_ROOT,
  InstallError,
  layoutFor,
  renderLauncher,
  renderUnit,
  RULE_TEMPLATE,
  UNIT_NAME,
  UNIT_TEMPLATE,
  underRoot,
  type InstallLayout,
} from '../../src/install/layout.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, parseManifest, serializeManifest, type InstallManifest } from './manifest.js';
import { parseRuntimeManifest, RUNTIME_MANIFEST, type RuntimeManifest } from '../../src/install/runtime-manifest.js';

export interface InstallOptions {
  /** The built source tree: dist/runtime (made by npm run build), systemd/, udev/. */
  projectDir: string;
  /** Default /usr/local. */
  prefix?: string;
  /** Default `/`; anything else stages the files below it (like DESTDIR) and reloads nothing. */
  root?: string;
  /** Ask systemd and udevd to reload (default true); they are asked only when running and root is `/`. */
  reload?: boolean;
  host?: HostPort;
  /** The node the launchers exec; default the one running this code. */
  nodePath?: string;
}

export interface UninstallOptions {
  prefix?: string;
  root?: string;
  reload?: boolean;
  host?: HostPort;
}

export interface InstallReport {
  root: string;
  layout: InstallLayout;
  /** System paths written (install) or removed (uninstall), in that order. */
  files: string[];
  /** Things the operator should know that are not failures. */
  notes: string[];
  /** Steps that failed after the files were in place (a reload, stopping the unit). */
  problems: string[];
}

/** The daemon's launcher name, as package.json's "bin" calls it. */
const DAEMON_BIN = 'xen-pmemd';
const TEMP_SUFFIX = '.xen-pmem-new';
/** Where a build leaves the runtime directory, relative to the source tree. */
export const RUNTIME_DIR = 'dist/runtime';
// A service with ProtectHome=yes cannot see these, so a node under them cannot start the daemon.
const HIDDEN_FROM_SERVICE = ['/home/', '/root/', '/run/user/'];

interface PlannedFile {
  /** System path of the file to create. */
  target: string;
  mode: number;
  source?: string;
  content?: string;
  linkTarget?: string;
}

export function install(options: InstallOptions): InstallReport {
  const prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
  const root = existingRoot(options.root ?? DEFAULT_ROOT);
  const layout = layoutFor(prefix);
  const nodePath = options.nodePath ?? process.execPath;
  const host = options.host ?? realHost;
  const notes: string[] = [];
  const problems: string[] = [];

  const { plan, toolVersion } = planInstall(options.projectDir, layout, nodePath);
  const previous = readManifestIfAny(root, layout);
  const previousFiles = new Set(previous?.files ?? []);
  refuseForeignFiles(root, plan, previousFiles);

  const written: string[] = [];
  const createdDirs: string[] = [];
  try {
    for (const file of plan) {
      ensureParents(root, file.target, createdDirs);
      writePlanned(root, file);
      written.push(file.target);
    }
    const keptDirs = removeStale(root, previous, new Set(written));
    const manifest: InstallManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      toolVersion,
      prefix,
      files: written,
      directories: sortParentsFirst([...new Set([...keptDirs, ...createdDirs])]),
    };
    ensureParents(root, layout.manifest, createdDirs);
    writePlanned(root, { target: layout.manifest, mode: 0o644, content: serializeManifest(manifest) });
  } catch (error) {
    rollBack(root, written.filter((path) => !previousFiles.has(path)), createdDirs);
    if (error instanceof InstallError) throw error;
    throw new InstallError('io-failed', `install stopped and removed what it had added: ${describeIoError(error)}`);
  }

  if (HIDDEN_FROM_SERVICE.some((dir) => nodePath.startsWith(dir))) {
    notes.push(`node is ${nodePath}, which ProtectHome=yes hides from the service: install node under /usr and run install again`);
  }
  if (HIDDEN_FROM_SERVICE.some((dir) => `${prefix}/`.startsWith(dir))) {
    notes.push(`prefix ${prefix} is hidden from the service by ProtectHome=yes: the unit cannot start the daemon there; install under /usr/local or /opt`);
  }
  for (const step of [askManagersToReload(root, options.reload ?? true, host), updateCatalog(root, options.reload ?? true, host)]) {
    notes.push(...step.notes);
    problems.push(...step.problems);
  }
  if (root === '/') {
    notes.push(`the daemon starts when a pmem disk appears; for disks already present run: systemctl start ${UNIT_NAME}`);
  }
  return { root, layout, files: written, notes, problems };
}

export function uninstall(options: UninstallOptions = {}): InstallReport {
  const prefix = checkPrefix(options.prefix ?? DEFAULT_PREFIX);
  const root = existingRoot(options.root ?? DEFAULT_ROOT);
  const layout = layoutFor(prefix);
  const host = options.host ?? realHost;
  const reload = options.reload ?? true;
  const notes: string[] = [];
  const problems: string[] = [];

  const manifest = readManifestIfAny(root, layout);
  if (manifest === null) {
    throw new InstallError('not-installed', `nothing to uninstall under prefix ${prefix}: ${underRoot(root, layout.manifest)} does not exist`);
  }

  if (manifest.files.includes(layout.unit) && existsSync(underRoot(root, layout.unit))) {
    const released = releaseUnit(root, reload, host);
    notes.push(...released.notes);
    problems.push(...released.problems);
  }

  const removed: string[] = [];
  let missing = 0;
  for (const path of [...manifest.files].reverse()) {
    if (removeFile(root, path)) removed.push(path);
    else missing++;
  }
  if (missing > 0) notes.push(`${missing} recorded file(s) were already gone`);
  removeFile(root, layout.manifest);
  for (const dir of sortParentsFirst(manifest.directories).reverse()) {
    const outcome = removeDirectory(root, dir);
    if (outcome === 'not-empty') notes.push(`kept ${dir}: it holds files that install.js install did not write`);
  }

  for (const step of [askManagersToReload(root, reload, host), updateCatalog(root, reload, host)]) {
    notes.push(...step.notes);
    problems.push(...step.problems);
  }
  if (root === '/') {
    notes.push('kept /run/xen-pmem (what was reported to Xen, gone at reboot) and /etc/xen-pmem (settings), if present');
  }
  return { root, layout, files: removed, notes, problems };
}

// --- planning -------------------------------------------------------------------------

function readProjectFile(projectDir: string, relative: string): string {
  const path = join(projectDir, relative);
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new InstallError('project-incomplete', `cannot read ${path} (${describeIoError(error)}): run install from a built source tree (npm ci && npm run build)`);
  }
}

/** dist/runtime of a built tree: the bundles and native packages, with runtime.json naming the launchers. */
function readRuntime(projectDir: string): { dir: string; manifest: RuntimeManifest } {
  const dir = join(projectDir, RUNTIME_DIR);
  if (!isDirectory(dir)) {
    throw new InstallError('project-incomplete', `${dir} does not exist: run npm run build first`);
  }
  const parsed = parseRuntimeManifest(readProjectFile(projectDir, `${RUNTIME_DIR}/${RUNTIME_MANIFEST}`));
  if (typeof parsed === 'string') {
    throw new InstallError('project-incomplete', `${join(dir, RUNTIME_MANIFEST)} is not usable: ${parsed} (run npm run build again)`);
  }
  return { dir, manifest: parsed };
}

function planInstall(projectDir: string, layout: InstallLayout, nodePath: string): { plan: PlannedFile[]; toolVersion: string } {
  const runtime = readRuntime(projectDir);
  const unitTemplate = readProjectFile(projectDir, UNIT_TEMPLATE);
  const ruleText = readProjectFile(projectDir, RULE_TEMPLATE);
  if (runtime.manifest.launchers[DAEMON_BIN] === undefined) {
    throw new InstallError('project-incomplete', `${RUNTIME_MANIFEST} has no ${DAEMON_BIN} launcher for the unit to start`);
  }

  const plan: PlannedFile[] = copyTree(runtime.dir, layout.libDir, () => true);
  for (const [name, launcher] of Object.entries(runtime.manifest.launchers).sort(([a], [b]) => a.localeCompare(b))) {
    if (!existsSync(join(runtime.dir, launcher.script))) {
      throw new InstallError('project-incomplete', `${join(runtime.dir, launcher.script)} (launcher ${name}) does not exist: run npm run build again`);
    }
    plan.push({
      target: `${layout.sbinDir}/${name}`,
      mode: 0o755,
      content: renderLauncher(name, nodePath, posix.join(layout.libDir, launcher.script), launcher.nodeFlags),
    });
  }

  plan.push({ target: layout.unit, mode: 0o644, content: renderUnit(unitTemplate, `${layout.sbinDir}/${DAEMON_BIN}`) });
  plan.push({ target: layout.rule, mode: 0o644, content: ruleText });
  plan.push({ target: layout.catalog, mode: 0o644, content: readProjectFile(projectDir, CATALOG_SOURCE) });
  return { plan, toolVersion: runtime.manifest.version };
}

/** Every file and symlink below `sourceDir`, mapped under `targetDir`. */
function copyTree(sourceDir: string, targetDir: string, keep: (name: string, depth: number) => boolean, depth = 0): PlannedFile[] {
  const files: PlannedFile[] = [];
  const entries = readdirSync(sourceDir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    if (!keep(entry.name, depth)) continue;
    const source = join(sourceDir, entry.name);
    const target = `${targetDir}/${entry.name}`;
    if (entry.isDirectory()) {
      files.push(...copyTree(source, target, keep, depth + 1));
    } else if (entry.isSymbolicLink()) {
      files.push({ target, mode: 0o777, linkTarget: readlinkSync(source) });
    } else if (entry.isFile()) {
      // Keep the execute bits (native modules, scripts); never set-id bits.
      files.push({ target, mode: lstatSync(source).mode & 0o777, source });
    }
  }
  return files;
}

// --- writing --------------------------------------------------------------------------

function readManifestIfAny(root: string, layout: InstallLayout): InstallManifest | null {
  const path = underRoot(root, layout.manifest);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return null;
    throw new InstallError('io-failed', `cannot read ${path}: ${describeIoError(error)}`);
  }
  return parseManifest(text, path);
}

function refuseForeignFiles(root: string, plan: readonly PlannedFile[], ours: ReadonlySet<string>): void {
  const foreign = plan.filter((file) => !ours.has(file.target) && lstatOrNull(underRoot(root, file.target)) !== null);
  if (foreign.length === 0) return;
  const first = underRoot(root, foreign[0]!.target);
  const [what, them] = foreign.length > 1 ? [`${first} and ${foreign.length - 1} more files exist that were`, 'them'] : [`${first} exists and was`, 'it'];
  throw new InstallError('would-overwrite', `${what} not written by install.js install: move ${them} away first (installed under another prefix? run install.js uninstall --prefix with that prefix)`);
}

function ensureParents(root: string, target: string, created: string[]): void {
  const missing: string[] = [];
  for (let dir = posix.dirname(target); dir !== '/' && lstatOrNull(underRoot(root, dir)) === null; dir = posix.dirname(dir)) {
    missing.unshift(dir);
  }
  for (const dir of missing) {
    mkdirSync(underRoot(root, dir), { mode: 0o755 });
    created.push(dir);
  }
}

/** Writes next to the target, then renames over it: a running daemon keeps its old files whole. */
function writePlanned(root: string, file: PlannedFile): void {
  const path = underRoot(root, file.target);
  const temp = path + TEMP_SUFFIX;
  if (lstatOrNull(temp) !== null) unlinkSync(temp);
  if (file.linkTarget !== undefined) {
    symlinkSync(file.linkTarget, temp);
  } else {
    if (file.source !== undefined) copyFileSync(file.source, temp);
    else writeFileSync(temp, file.content ?? '');
    chmodSync(temp, file.mode);
  }
  renameSync(temp, path);
}

/** Removes what the previous installation had and this one does not; returns its directories still in use. */
function removeStale(root: string, previous: InstallManifest | null, current: ReadonlySet<string>): string[] {
  if (previous === null) return [];
  for (const path of previous.files) {
    if (!current.has(path)) removeFile(root, path);
  }
  const kept: string[] = [];
  for (const dir of sortParentsFirst(previous.directories).reverse()) {
    if (removeDirectory(root, dir) === 'not-empty') kept.push(dir);
  }
  return kept;
}

function rollBack(root: string, files: readonly string[], dirs: readonly string[]): void {
  for (const path of [...files].reverse()) removeFile(root, path);
  for (const dir of [...dirs].reverse()) removeDirectory(root, dir);
}

function removeFile(root: string, path: string): boolean {
  try {
    unlinkSync(underRoot(root, path));
    return true;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return false;
    throw new InstallError('io-failed', `cannot remove ${underRoot(root, path)}: ${describeIoError(error)}`);
  }
}

function removeDirectory(root: string, dir: string): 'removed' | 'gone' | 'not-empty' {
  try {
    rmdirSync(underRoot(root, dir));
    return 'removed';
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT') return 'gone';
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return 'not-empty';
    throw new InstallError('io-failed', `cannot remove ${underRoot(root, dir)}: ${describeIoError(error)}`);
  }
}

function sortParentsFirst(dirs: readonly string[]): string[] {
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

// --- service managers -----------------------------------------------------------------

export interface StepOutcome {
  notes: string[];
  problems: string[];
}

/** systemctl daemon-reload and udevadm control --reload, each only where its manager runs. */
export function askManagersToReload(root: string, reload: boolean, host: HostPort): StepOutcome {
  if (!reload) return { notes: ['systemd and udev were not asked to reload (--no-reload)'], problems: [] };
  if (root !== '/') {
    return { notes: [`files are staged under ${root}; on that system run: systemctl daemon-reload && udevadm control --reload`], problems: [] };
  }
  const outcome: StepOutcome = { notes: [], problems: [] };
  const steps: Array<{ running: boolean; argv: string[]; absent: string }> = [
    { running: host.systemdRunning(), argv: ['systemctl', 'daemon-reload'], absent: 'systemd is not running here: skipped systemctl daemon-reload' },
    { running: host.udevdRunning(), argv: ['udevadm', 'control', '--reload'], absent: 'udevd is not running here: skipped udevadm control --reload' },
  ];
  for (const step of steps) {
    if (!step.running) {
      outcome.notes.push(step.absent);
      continue;
    }
    const result = host.run(step.argv);
    if (result.status !== 0) outcome.problems.push(describeFailure(step.argv, result));
  }
  return outcome;
}

/**
 * journalctl reads catalogs through an index it builds with --update-catalog (the Debian package
 * gets this from systemd's own trigger on /usr/lib/systemd/catalog). Run where systemd runs.
 */
export function updateCatalog(root: string, reload: boolean, host: HostPort): StepOutcome {
  if (!reload) return { notes: [], problems: [] };
  if (root !== '/') return { notes: ['on that system also run: journalctl --update-catalog'], problems: [] };
  if (!host.systemdRunning()) return { notes: ['systemd is not running here: skipped journalctl --update-catalog'], problems: [] };
  const argv = ['journalctl', '--update-catalog'];
  const result = host.run(argv);
  return { notes: [], problems: result.status === 0 ? [] : [describeFailure(argv, result)] };
}

/** Stops and disables the unit on a running system; otherwise removes its enablement links offline. */
export function releaseUnit(root: string, reload: boolean, host: HostPort): StepOutcome {
  if (root === '/' && reload && host.systemdRunning()) {
    const argv = ['systemctl', 'disable', '--now', UNIT_NAME];
    const result = host.run(argv);
    return { notes: [], problems: result.status === 0 ? [] : [describeFailure(argv, result)] };
  }
  // `systemctl --root` edits the links `systemctl enable` made without talking to systemd.
  const argv = ['systemctl', `--root=${root}`, 'disable', UNIT_NAME];
  const result = host.run(argv);
  if (result.status === 0) return { notes: [], problems: [] };
  return { notes: [`${describeFailure(argv, result)}; remove any ${UNIT_NAME} links under ${underRoot(root, '/etc/systemd/system')} by hand`], problems: [] };
}

function existingRoot(root: string): string {
  const checked = checkRoot(root);
  if (!isDirectory(checked)) throw new InstallError('root-invalid', `root ${checked} is not an existing directory`);
  return checked;
}

// --- small helpers --------------------------------------------------------------------

function lstatOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

function isDirectory(path: string): boolean {
  return lstatOrNull(path)?.isDirectory() ?? false;
}

function describeIoError(error: unknown): string {
  if (error instanceof InstallError) return error.message;
  const code = errnoCode(error);
  const path = typeof error === 'object' && error !== null && 'path' in error ? String((error as { path: unknown }).path) : undefined;
  if (code && path) return `${code} on ${path}`;
  return error instanceof Error ? error.message : String(error);
}
