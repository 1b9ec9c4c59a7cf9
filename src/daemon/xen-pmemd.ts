#!/usr/bin/env node
// xen-pmemd: wires the real ports (sysfs, block devices, libxencall, node-udev, journald, sd_notify,
// /run state) to the controller and runs until SIGTERM.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDevice } from '../io/device.js';
import { openXencall } from '../native/libxencall.js';
import { udevEventSource } from '../native/udev.js';
import { listPmemNamespaces, readPmemByBlockName, readPmemBySyspath } from '../sysfs/model.js';
import type { SysfsRoots } from '../sysfs/types.js';
import { TOOL_VERSION } from '../version.js';
import { HypercallBridge } from '../xen/bridge.js';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, type Config } from './config.js';
import { Controller } from './controller.js';
import { createLogger } from './log.js';
import { createNotifier } from './notify.js';
import { LEDGER_FILE, LedgerJournal } from './ledger.js';
import { DEFAULT_STATE_DIR, loadPreviousRun, StateStore } from './state-store.js';
import { DAEMON_HELP, EXIT_CONFIG } from './usage.js';

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string', default: DEFAULT_CONFIG_PATH },
        'dry-run': { type: 'boolean' },
        'log-level': { type: 'string' },
        'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
        'sys-root': { type: 'string', default: '/sys' },
        'dev-root': { type: 'string', default: '/dev' },
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
    }));
  } catch (error) {
    process.stderr.write(`xen-pmemd: ${(error as Error).message} (see --help)\n`);
    return 2;
  }
  if (values.help) { process.stdout.write(DAEMON_HELP + '\n'); return 0; }
  if (values.version) { process.stdout.write(`xen-pmemd ${TOOL_VERSION}\n`); return 0; }

  let config: Config;
  try {
    config = await loadConfig(values.config);
  } catch (error) {
    process.stderr.write(`xen-pmemd: configuration error: ${(error as Error).message}\n`);
    return EXIT_CONFIG;
  }
  if (values['dry-run']) config = { ...config, dryRun: true };
  const level = values['log-level'] ?? config.logLevel;
  let log;
  try {
    log = createLogger({ level, env: process.env });
  } catch (error) {
    process.stderr.write(`xen-pmemd: configuration error: --log-level: ${(error as Error).message}\n`);
    return EXIT_CONFIG;
  }
  const notifier = createNotifier(process.env, {
    onSendFailure: (state) => log.debug({ reason: 'notify-failed' }, `could not tell systemd ${state.split('=')[0]}`),
  });
  process.on('uncaughtException', (error) => {
    log.error({ reason: 'internal-error' }, `xen-pmemd stops on an unexpected error: ${error.stack ?? error.message}`);
    log.flush();
    process.exit(1);
  });

  const stateDir = values['state-dir'];
  const store = new StateStore(stateDir);
  const journal = new LedgerJournal(stateDir);
  const previous = await loadPreviousRun(stateDir);
  for (const problem of previous.problems) log.error({ reason: 'state-unreadable' }, problem);
  // Compaction rewrites the journal from what replay understood: only when it understood all.
  if (previous.state && previous.state.ledger.length > 0 && previous.problems.length === 0) {
    await journal.compact(previous.state.ledger).catch((error) => {
      log.warn({ reason: 'state-unwritable' }, `cannot compact ${stateDir}/${LEDGER_FILE}: ${(error as Error).message}`);
    });
  }

  const libraryPath = config.xencallLibrary ?? process.env.XEN_PMEM_LIBXENCALL;
  const opened = config.dryRun ? null : openXencall(libraryPath);
  const port = opened && 'platformOp' in opened ? opened : null;
  const bridge = new HypercallBridge(port, opened && !('platformOp' in opened) ? { dryRun: config.dryRun, unavailable: opened.message } : { dryRun: config.dryRun });

  const roots: SysfsRoots = { sysRoot: values['sys-root'], devRoot: values['dev-root'] };
  const controller = new Controller(config, {
    listNamespaces: () => listPmemNamespaces(roots),
    readByBlockName: (name) => readPmemByBlockName(roots, name),
    readBySyspath: (syspath) => readPmemBySyspath(roots, syspath),
    openReader: (devPath) => openDevice(devPath, 'read'),
    bridge,
    saveState: (state) => store.save(state),
    recordLedger: (op, entry) => journal.append(op, entry),
    log,
    notifier,
    now: () => new Date(),
  }, previous.state);

  // Installed before coldplug: a stop asked for at any moment from here on is orderly.
  const stopRequested = new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  log.info({ version: TOOL_VERSION }, `xen-pmemd ${TOOL_VERSION} starting${config.dryRun ? ' in dry-run mode' : ''}`);
  // Listen before enumerating, so a device that appears during coldplug is not missed.
  const events = udevEventSource();
  try {
    events.start((event) => controller.handleEvent(event));
  } catch (error) {
    log.error({ reason: 'udev-unavailable' }, `cannot listen for udev events (${(error as Error).message}); hotplugged pmem will not be seen until restart`);
  }
  controller.probeHypervisor();
  await controller.coldplug();
  notifier.ready(controller.summary());
  notifier.startWatchdog();
  log.info({ ready: true }, `coldplug done: ${controller.summary()}`);

  await stopRequested;
  notifier.stopping();
  await controller.stop();
  notifier.stop();
  log.info({}, 'xen-pmemd stopped');
  log.flush();
  // Not events.stop(): node-udev 1.0.1's close() releases the monitor's handle, and the garbage
  // collector's finalizer then stops and unrefs it a second time (a SIGSEGV at the next
  // collection or at exit). The monitors stay open and the process ends here; the controller
  // is stopped, so events that still arrive are ignored.
  process.exit(0);
}

main().then((code) => { process.exitCode = code; });
