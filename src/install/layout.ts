// Where an installation puts things, and the text of the generated files. Pure: no file is read
// or written here, so every path and every rendered line can be tested directly.

import { posix } from 'node:path';

import { CATALOG_FILE_NAME } from '../daemon/catalog.js';

export const DEFAULT_PREFIX = '/usr/local';
export const DEFAULT_ROOT = '/';

export const UNIT_NAME = 'xen-pmemd.service';
export const RULE_NAME = '69-xen-pmem.rules';
/** Where an operator's own units live: above the distribution's, kept by package upgrades. */
export const UNIT_DIR = '/etc/systemd/system';
export const RULE_DIR = '/etc/udev/rules.d';
/**
 * systemd reads message catalogs from /usr/lib/systemd/catalog (the distribution's) and
 * /usr/local/lib/systemd/catalog; there is none under /etc. Whatever the prefix, the catalog
 * goes to the local one.
 */
export const CATALOG_DIR = '/usr/local/lib/systemd/catalog';
/** Where the build leaves the catalog (packaging/catalog.ts), relative to the source tree. */
export const CATALOG_SOURCE = `dist/catalog/${CATALOG_FILE_NAME}`;
/** The repository files the unit and the rule are made from. */
export const UNIT_TEMPLATE = 'systemd/xen-pmemd.service';
export const RULE_TEMPLATE = 'udev/69-xen-pmem.rules';
export const MANIFEST_NAME = 'install-manifest.json';

/** Reason codes of `InstallError`, stable for scripts and tests. */
export type InstallErrorCode =
  | 'usage'
  | 'prefix-invalid'
  | 'root-invalid'
  | 'project-incomplete'
  | 'would-overwrite'
  | 'not-installed'
  | 'manifest-invalid'
  | 'io-failed';

export class InstallError extends Error {
  constructor(readonly code: InstallErrorCode, message: string) {
    super(message);
  }
}

/** Paths as the installed system sees them (before `root` is put in front). */
export interface InstallLayout {
  prefix: string;
  libDir: string;
  sbinDir: string;
  manifest: string;
  unit: string;
  rule: string;
  /** The journal message catalog, for `journalctl -x`. */
  catalog: string;
}

// Paths end up in a shell script, in ExecStart= and in a JSON manifest. Keeping them to these
// characters rules out quoting mistakes in all three and systemd's `%` specifiers.
const SAFE_PATH = /^\/[A-Za-z0-9._+\-/]*$/;

/** Checks `--prefix`: absolute, normalized, plain characters, not `/`. */
export function checkPrefix(prefix: string): string {
  if (!SAFE_PATH.test(prefix)) {
    throw new InstallError('prefix-invalid', `prefix "${prefix}" must be an absolute path made of letters, digits and . _ + - /`);
  }
  const normalized = posix.normalize(prefix).replace(/\/+$/, '');
  if (normalized === '' || normalized !== prefix.replace(/\/+$/, '') || normalized.split('/').includes('..')) {
    throw new InstallError('prefix-invalid', `prefix "${prefix}" must be a normalized path other than / (for example ${DEFAULT_PREFIX})`);
  }
  return normalized;
}

/** Checks `--root`: an absolute directory path; `/` means the running system. */
export function checkRoot(root: string): string {
  if (!root.startsWith('/') || root.includes('\0')) {
    throw new InstallError('root-invalid', `root "${root}" must be an absolute path`);
  }
  return posix.normalize(root);
}

export function layoutFor(prefix: string): InstallLayout {
  const libDir = `${prefix}/lib/xen-pmem`;
  return {
    prefix,
    libDir,
    sbinDir: `${prefix}/sbin`,
    manifest: `${libDir}/${MANIFEST_NAME}`,
    unit: `${UNIT_DIR}/${UNIT_NAME}`,
    rule: `${RULE_DIR}/${RULE_NAME}`,
    catalog: `${CATALOG_DIR}/${CATALOG_FILE_NAME}`,
  };
}

/** The place on disk of a system path, for an installation into `root` (DESTDIR). */
export function underRoot(root: string, systemPath: string): string {
  return root === '/' ? systemPath : posix.join(root, systemPath);
}

/** Single-quotes a word for /bin/sh. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * A launcher: exec (not a child), so the daemon keeps the PID systemd started, which
 * NotifyAccess=main and WATCHDOG_PID rely on, and signals reach node directly.
 */
export function renderLauncher(
  name: string,
  nodePath: string,
  script: string,
  nodeFlags: readonly string[] = [],
  origin = 'written by "install.js install", removed by "install.js uninstall"',
): string {
  return [
    '#!/bin/sh',
    `# ${name}: ${origin}.`,
    `exec ${[nodePath, ...nodeFlags, script].map(shellQuote).join(' ')} "$@"`,
    '',
  ].join('\n');
}

/** The unit with its one ExecStart= line pointing at `daemonPath`; every other line unchanged. */
export function renderUnit(template: string, daemonPath: string): string {
  const lines = template.split('\n');
  const execStart = lines.flatMap((line, index) => (/^ExecStart=/.test(line) ? [index] : []));
  if (execStart.length !== 1) {
    throw new InstallError('project-incomplete', `the unit template has ${execStart.length} ExecStart= lines; it needs exactly 1`);
  }
  lines[execStart[0]!] = `ExecStart=${daemonPath}`;
  return lines.join('\n');
}
