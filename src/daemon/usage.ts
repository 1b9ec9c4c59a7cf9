// xen-pmemd's --help text. The daemon prints it, and the build renders it into xen-pmemd(8)
// (packaging/man), so the two cannot differ. Its shape is the one every help text of the
// project has (src/cli/command.ts).

import { DEFAULT_CONFIG_PATH } from './config.js';
import { DEFAULT_STATE_DIR } from './state-store.js';

/** sysexits' EX_CONFIG: the unit does not restart on it (RestartPreventExitStatus). */
export const EXIT_CONFIG = 78;

export const DAEMON_HELP = `Usage: xen-pmemd [--config PATH] [--dry-run] [--log-level LEVEL]

Finds pmem devices prepared by "xen-pmem setup" (at start and on hotplug), validates them
and reports their ranges to the Xen hypervisor with XENPF_pmem (platform op 67),
exactly once. Before each report it unbinds the device's namespace from its driver:
Xen refuses a region the Dom0 still maps. In a PV Dom0 it rejects fsdax namespaces
(unbinding their pfn device crashes the kernel): use raw ones there.
Normally started by systemd (xen-pmemd.service) or by the udev rule on pmem hotplug.

  --config PATH      configuration file (default ${DEFAULT_CONFIG_PATH})
  --dry-run          log the hypercalls instead of making them
  --log-level LEVEL  debug, info, warn or error (overrides the config)
  --state-dir DIR    where the exactly-once state lives (default ${DEFAULT_STATE_DIR})
  --version          print the version and exit
  --help             this text

Exit codes: 0 stopped by SIGTERM or SIGINT, 1 stopped by an unexpected error, 2 usage error, ${EXIT_CONFIG} a bad configuration file.`;
