import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { install, type InstallReport } from '../../install/install.js';
import { CATALOG_FILE_NAME } from '../../daemon/catalog.js';
import { CATALOG_DIR, DEFAULT_PREFIX, InstallError, UNIT_NAME } from '../../install/layout.js';
import { CommandError, EXIT_OK, EXIT_USAGE_OR_IO, type Command, type CommandIO } from '../command.js';

/**
 * The built source tree this code runs from: dist/src/cli/commands/install.js (tsc's output) and
 * dist/runtime/xen-pmem.mjs (the bundle) both lie inside it. An installed copy has none above it.
 */
function projectDir(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'systemd', 'xen-pmemd.service')) && existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) {
      throw new CommandError('install copies a built source tree and this xen-pmem is not running from one: run it from a checkout (npm ci && npm run build && node dist/runtime/xen-pmem.mjs install) [project-incomplete]');
    }
  }
}

export const installCommand: Command = {
  name: 'install',
  summary: 'install the daemon, its launchers, the systemd unit and the udev rule',
  help: `Usage: xen-pmem install [--prefix DIR] [--root DIR] [--no-reload]

Copies the built xen-pmem runtime (dist/runtime: the bundled JavaScript and the native
packages node-udev and koffi) to PREFIX/lib/xen-pmem, writes the launchers PREFIX/sbin/xen-pmem and
PREFIX/sbin/xen-pmemd, installs /etc/systemd/system/${UNIT_NAME},
/etc/udev/rules.d/69-xen-pmem.rules and the journal message catalog
${CATALOG_DIR}/${CATALOG_FILE_NAME}, and asks systemd and udevd to reload and
journalctl to rebuild its catalog index when they run. Everything written is recorded,
so "xen-pmem uninstall" removes exactly that.
Run it from a built source tree (npm ci && npm run build).

  --prefix DIR   where the program goes (default ${DEFAULT_PREFIX})
  --root DIR     install below DIR instead of / (a staging tree); nothing is reloaded
  --no-reload    do not run systemctl daemon-reload, udevadm control --reload or
                 journalctl --update-catalog
  --help         this text

Exit codes: 0 installed, 2 usage or I/O error, or a reload that failed.`,

  async run(args, io) {
    const options = installOptions('install', args);
    const report = installStep(() => install({ projectDir: projectDir(), ...options }));
    const where = report.root === '/' ? report.layout.prefix : `${report.layout.prefix} below ${report.root}`;
    io.out(`installed ${report.files.length} files for ${where}: ${report.layout.sbinDir}/xen-pmemd, ${report.layout.unit}, ${report.layout.rule}`);
    return finish(report, io);
  },
};

/** The options install and uninstall share (`--help` is answered by the command table). */
export function installOptions(name: string, args: string[]): { prefix: string | undefined; root: string | undefined; reload: boolean } {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { prefix: { type: 'string' }, root: { type: 'string' }, 'no-reload': { type: 'boolean' } },
  });
  if (positionals.length > 0) throw new CommandError(`${name} takes no arguments, got: ${positionals.join(' ')}`);
  return { prefix: values.prefix, root: values.root, reload: !values['no-reload'] };
}

/** Runs install or uninstall; an InstallError becomes the command's one line with its code. */
export function installStep(step: () => InstallReport): InstallReport {
  try {
    return step();
  } catch (error) {
    if (error instanceof InstallError) throw new CommandError(`${error.message} [${error.code}]`);
    throw error;
  }
}

/** Notes go to stdout; failed steps to stderr and exit code 2. Shared with uninstall. */
export function finish(report: InstallReport, io: CommandIO): number {
  for (const note of report.notes) io.out(`note: ${note}`);
  for (const problem of report.problems) io.err(`error: ${problem}`);
  return report.problems.length > 0 ? EXIT_USAGE_OR_IO : EXIT_OK;
}
