import { uninstall } from '../../install/install.js';
import { DEFAULT_PREFIX, UNIT_NAME } from '../../install/layout.js';
import type { Command } from '../command.js';
import { finish, installOptions, installStep } from './install.js';

export const uninstallCommand: Command = {
  name: 'uninstall',
  summary: 'remove exactly what "xen-pmem install" wrote',
  help: `Usage: xen-pmem uninstall [--prefix DIR] [--root DIR] [--no-reload]

Stops and disables ${UNIT_NAME} when systemd runs (otherwise removes its enablement
links offline), then deletes every file and directory listed in
PREFIX/lib/xen-pmem/install-manifest.json, and asks systemd and udevd to reload and
journalctl to rebuild its catalog index.
Files that install did not write are left alone, and so are /run/xen-pmem (what was
reported to Xen, which keeps it until reboot) and /etc/xen-pmem (settings).

  --prefix DIR   the prefix given to install (default ${DEFAULT_PREFIX})
  --root DIR     the root given to install (default /)
  --no-reload    do not stop the unit or ask systemd and udevd to reload
  --help         this text

Exit codes: 0 removed, 2 usage or I/O error, nothing installed, or a step that failed.`,

  async run(args, io) {
    const report = installStep(() => uninstall(installOptions('uninstall', args)));
    io.out(`removed ${report.files.length} files installed for ${report.layout.prefix}${report.root === '/' ? '' : ` below ${report.root}`}`);
    return finish(report, io);
  },
};
