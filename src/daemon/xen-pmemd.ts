#!/usr/bin/env node
// xen-pmemd, the launcher: the daemon (run-daemon.ts) with udev's processed events from node-udev.

import { udevEventSource } from '../native/udev.js';
import { runDaemon } from './run-daemon.js';

runDaemon({ args: process.argv.slice(2), env: process.env, events: () => udevEventSource() })
  .then((code) => { process.exitCode = code; });
