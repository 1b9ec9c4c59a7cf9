#!/usr/bin/env node
// Installing from a checkout, for a Dom0 that is not Debian (Debian's is the package: npm run
// package, docs/operations.md). It copies the built runtime (dist/runtime), writes the launchers,
// the systemd unit, the udev rule and the journal catalog, and records what it wrote so that
// uninstall removes exactly that. It lives here, beside the Debian package's build, and not in
// the xen-pmem command: it needs the checkout it copies from, which an installed xen-pmem (the
// package's, or this script's own copy) does not have.
//
//   node dist/packaging/install.js install   [--prefix DIR] [--root DIR] [--no-reload]
//   node dist/packaging/install.js uninstall [--prefix DIR] [--root DIR] [--no-reload]

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { CATALOG_FILE_NAME } from '../src/daemon/catalog.js';
import { CATALOG_DIR, DEFAULT_PREFIX, InstallError, UNIT_NAME } from '../src/install/layout.js';
import { install, uninstall, type InstallReport } from './install/install.js';

/** dist/packaging/install.js → the checkout it was built in. */
const PROJECT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const INSTALL_HELP = `Usage: node dist/packaging/install.js install|uninstall [--prefix DIR] [--root DIR] [--no-reload]

install copies the built xen-pmem runtime (dist/runtime: the bundled JavaScript and the
native packages node-udev and koffi) to PREFIX/lib/xen-pmem, writes the launchers
PREFIX/sbin/xen-pmem and PREFIX/sbin/xen-pmemd, installs /etc/systemd/system/${UNIT_NAME},
/etc/udev/rules.d/69-xen-pmem.rules and the journal message catalog
${CATALOG_DIR}/${CATALOG_FILE_NAME}, and asks systemd and udevd to reload and journalctl to
rebuild its catalog index when they run. Everything written is recorded in
PREFIX/lib/xen-pmem/install-manifest.json. Run it from a built checkout (npm ci && npm run build).

uninstall stops and disables ${UNIT_NAME} when systemd runs (otherwise removes its enablement
links offline), then deletes every file and directory the manifest lists. Files install did not
write are left alone, and so are /run/xen-pmem (what was reported to Xen, which keeps it until
reboot) and /etc/xen-pmem (settings).

  --prefix DIR   where the program goes (default ${DEFAULT_PREFIX})
  --root DIR     below DIR instead of / (a staging tree); nothing is reloaded
  --no-reload    do not run systemctl, udevadm control --reload or journalctl --update-catalog
  --help         this text

Exit codes: 0 done, 2 usage or I/O error, nothing installed (uninstall), or a step that failed.`;

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** install or uninstall with `args`; the exit code. Never throws. */
export function runInstall(argv: readonly string[], io: Output, projectDir: string = PROJECT_DIR): number {
  const [action, ...args] = argv;
  if (action === '--help' || action === '-h' || argv.includes('--help')) {
    io.out(INSTALL_HELP);
    return 0;
  }
  if (action !== 'install' && action !== 'uninstall') {
    io.err(`install.js: say install or uninstall, not ${action === undefined ? 'nothing' : `"${action}"`} (see --help)`);
    return 2;
  }
  let report: InstallReport;
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { prefix: { type: 'string' }, root: { type: 'string' }, 'no-reload': { type: 'boolean' } },
    });
    if (positionals.length > 0) throw new InstallError('usage', `${action} takes no arguments, got: ${positionals.join(' ')}`);
    const options = { prefix: values.prefix, root: values.root, reload: !values['no-reload'] };
    report = action === 'install' ? install({ projectDir, ...options }) : uninstall(options);
  } catch (error) {
    const code = error instanceof InstallError ? ` [${error.code}]` : '';
    io.err(`install.js ${action}: ${(error as Error).message}${code}`);
    return 2;
  }
  const where = `${report.layout.prefix}${report.root === '/' ? '' : ` below ${report.root}`}`;
  io.out(action === 'install'
    ? `installed ${report.files.length} files for ${where}: ${report.layout.sbinDir}/xen-pmemd, ${report.layout.unit}, ${report.layout.rule}`
    : `removed ${report.files.length} files installed for ${where}`);
  for (const note of report.notes) io.out(`note: ${note}`);
  for (const problem of report.problems) io.err(`error: ${problem}`);
  return report.problems.length > 0 ? 2 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = runInstall(process.argv.slice(2), {
    out: (text) => { process.stdout.write(text + '\n'); },
    err: (text) => { process.stderr.write(text + '\n'); },
  });
}
