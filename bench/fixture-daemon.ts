// xen-pmemd's entry point (runDaemon with node-udev's events, as the installed launcher runs it)
// over a fixture host's sysfs and /dev, for the coldplug benchmark. Bundled with the runtime's
// options (bench/daemon-bundle.ts), so it runs the installed code; the roots are this program's
// flags (fixtures/daemon-launcher.ts), not the daemon's.
//
//   node [daemon flags] fixture-daemon.mjs --sys-root DIR --dev-root DIR [xen-pmemd options]

import { splitRoots } from '../fixtures/daemon-launcher.js';
import { udevEventSource } from '../src/native/udev.js';
import { runDaemon } from '../src/daemon/run-daemon.js';

const { roots, args } = splitRoots(process.argv.slice(2));
runDaemon({ args, env: process.env, events: () => udevEventSource(), roots }).then((code) => { process.exitCode = code; });
