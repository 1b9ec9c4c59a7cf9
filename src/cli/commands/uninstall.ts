import { parseArgs } from 'node:util';

import { uninstall, type InstallReport } from '../../install/install.js';
import { DEFAULT_PREFIX, InstallError, UNIT_NAME } from '../../install/layout.js';
import { CommandError, EXIT_OK, type Command } from '../command.js';
import { finish } from './install.js';

export const uninstallCommand: Command = {
  name: 'uninstall',
  summary: 'remove exactly what "xen-pmem install" wrote',
  help: `Usage: xen-pmem uninstall [--prefix DIR] [--root DIR] [--no-reload]

Stops and disables ${UNIT_NAME} when systemd runs (otherwise removes its enablement
links offline), then deletes every file and directory listed in
PREFIX/lib/xen-pmem/install-manifest.json, and asks systemd and udevd to reload.
Files that install did not write are left alone, and so are /run/xen-pmem (what was
reported to Xen, which keeps it until reboot) and /etc/xen-pmem (settings).

  --prefix DIR   the prefix given to install (default ${DEFAULT_PREFIX})
  --root DIR     the root given to install (default /)
  --no-reload    do not stop the unit or ask systemd and udevd to reload
  --help         this text

Exit codes: 0 removed, 2 usage or I/O error, nothing installed, or a step that failed.`,

  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        prefix: { type: 'string' },
        root: { type: 'string' },
        'no-reload': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.out(uninstallCommand.help);
      return EXIT_OK;
    }
    if (positionals.length > 0) throw new CommandError(`uninstall takes no arguments, got: ${positionals.join(' ')}`);
    let report: InstallReport;
    try {
      report = uninstall({ prefix: values.prefix, root: values.root, reload: !values['no-reload'] });
    } catch (error) {
      if (error instanceof InstallError) throw new CommandError(`${error.message} [${error.code}]`);
      throw error;
    }
    io.out(`removed ${report.files.length} files installed for ${report.layout.prefix}${report.root === '/' ? '' : ` below ${report.root}`}`);
    return finish(report, io);
  },
};
