// The daemon's composition: wires the real ports (sysfs, block devices, libxencall, journald,
// sd_notify, /run state) to the controller and runs until SIGTERM. The udev event source comes
// from the launcher (xen-pmemd.ts gives node-udev's), so that everything else a benchmark measures
// is the daemon as installed: the same function, modules and start-up.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openDevice } from '../io/device.js';
import { openLockedReader } from '../io/lock.js';
import type { FlockPort } from '../io/ports.js';
import { loadLibc } from '../native/libc.js';
import { LIBXENCALL_ENV, openXencall } from '../native/libxencall.js';
import { sysfsDrivers } from '../sysfs/driver.js';
import { listPmemNamespaces, readPmemByBlockName, readPmemBySyspath, readXenGuestType } from '../sysfs/model.js';
import { DEFAULT_ROOTS, type SysfsRoots } from '../sysfs/types.js';
import { TOOL_VERSION } from '../version.js';
import { HypercallBridge } from '../xen/bridge.js';
import { DEFAULT_CONFIG_PATH, type Config } from './config.js';
import { loadConfig } from './config-file.js';
import { Controller } from './controller.js';
import { Lifecycle } from './lifecycle.js';
import type { EventSource } from './ports.js';
import type { Component } from './lifecycle.js';
import { createLogger, loadPino, type DaemonLogger } from './log.js';
import { METRICS_DIR, MetricsWriter, textfileWriter, unreachableBecause } from './metrics.js';
import { createNotifier } from './notify.js';
import { LEDGER_FILE, LedgerJournal } from './ledger.js';
import { DEFAULT_STATE_DIR, loadPreviousRun, StateStore } from './state-store.js';
import { DAEMON_HELP, EXIT_CONFIG } from './usage.js';

/** What a launcher hands the daemon: its arguments, its environment, and where udev events come from. */
export interface DaemonLaunch {
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Called once, after the configuration is read; started before coldplug. */
  events(): EventSource;
  /** Where sysfs and /dev are: the host's unless a launcher over a fixture tree says otherwise. */
  roots?: SysfsRoots;
}

/** Runs the daemon until SIGTERM; resolves with the exit status of a run that ends early. */
export async function runDaemon(launch: DaemonLaunch): Promise<number> {
  const env = launch.env;
  let values;
  try {
    ({ values } = parseArgs({
      args: launch.args,
      options: {
        config: { type: 'string', default: DEFAULT_CONFIG_PATH },
        'dry-run': { type: 'boolean' },
        'log-level': { type: 'string' },
        'state-dir': { type: 'string', default: DEFAULT_STATE_DIR },
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
    log = createLogger({ level, env });
  } catch (error) {
    process.stderr.write(`xen-pmemd: configuration error: --log-level: ${(error as Error).message}\n`);
    return EXIT_CONFIG;
  }
  // pino only when the lines are JSON: under journald libsystemd takes every one.
  if (log.sink === 'json') await loadPino();
  const notifier = createNotifier(env, {
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

  const libraryPath = config.xencallLibrary ?? env[LIBXENCALL_ENV];
  // Opened at the first question to Xen: a dry run asks none, and never loads libxencall.
  const bridge = new HypercallBridge(() => openXencall(libraryPath));

  const flock = loadDeviceLocks(log);

  const roots = launch.roots ?? DEFAULT_ROOTS;
  const controller = new Controller(config, {
    listNamespaces: () => listPmemNamespaces(roots),
    readByBlockName: (name) => readPmemByBlockName(roots, name),
    readBySyspath: (syspath) => readPmemBySyspath(roots, syspath),
    openReader: (devPath) => (flock ? openLockedReader(devPath, flock) : openDevice(devPath, 'read')),
    bridge,
    drivers: sysfsDrivers(roots),
    xenGuestType: readXenGuestType(roots),
    saveState: (state) => store.save(state),
    recordLedger: (steps) => journal.append(steps),
    log,
    notifier,
    now: () => new Date(),
  }, previous.state, previous.ledgerKnown);

  // Installed before coldplug: a stop asked for at any moment from here on is orderly.
  const stopRequested = new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  log.info({ version: TOOL_VERSION }, `xen-pmemd ${TOOL_VERSION} starting${config.dryRun ? ' in dry-run mode' : ''}`);
  // The components, in the order they start: the metrics file first, so it exists during coldplug
  // and its last version (up 0) is written after everything else stopped; listen before
  // enumerating, so a device that appears during coldplug is not missed; the controller's start
  // is coldplug.
  const metrics = new MetricsWriter({ source: controller.status, write: textfileWriter(join(stateDir, METRICS_DIR)), log, version: TOOL_VERSION });
  const unreachable = await unreachableBecause(stateDir);
  if (unreachable) log.notice({ reason: 'metrics-unreachable' }, `node_exporter cannot read the metrics file: ${unreachable} (the unit sets RuntimeDirectoryMode=0711; restart xen-pmemd)`);
  const listener = udevListener(launch.events(), (event) => { void controller.handleEvent(event); }, log);
  const daemon = new Lifecycle([metrics, listener, controller], log, notifier, () => controller.summary());
  // A SIGTERM during coldplug (a slow hypervisor can make it long) stops it there.
  const stopEarly = stopRequested.then(() => 'stop' as const);
  if ((await Promise.race([daemon.start().then(() => 'started' as const), stopEarly])) === 'started') {
    log.info({ ready: true }, `coldplug done: ${controller.summary()}`);
  }

  await stopRequested;
  await daemon.stop();
  log.info({}, 'xen-pmemd stopped');
  log.flush();
  // The process ends here rather than when the loop drains: node-udev 1.0.1's close() releases a
  // monitor's handle that the garbage collector's finalizer releases a second time (a SIGSEGV at
  // the next collection or at exit), so the listener only stops delivering events and the monitors
  // stay open until exit.
  process.exit(0);
}

/**
 * libc's flock, for the shared lock around each read of a device (src/io/lock.ts). Without it
 * the daemon reads as it did before the convention, and says so.
 */
function loadDeviceLocks(log: DaemonLogger): FlockPort | null {
  try {
    return loadLibc();
  } catch (error) {
    log.warn({ reason: 'locks-unavailable' }, `devices are read without the block-device lock: ${(error as Error).message}`);
    return null;
  }
}

/**
 * The udev listener as a component: it starts listening before the controller's coldplug lists
 * the devices, so a device that appears in between is not missed. Without udev the daemon still
 * decides what coldplug finds; it says so and goes on. Its stop only ends the delivery (the event
 * source keeps its sockets until the process ends).
 */
function udevListener(events: EventSource, onEvent: Parameters<EventSource['start']>[0], log: DaemonLogger): Component {
  return {
    name: 'udev',
    async start() {
      try {
        events.start(onEvent);
      } catch (error) {
        log.error({ reason: 'udev-unavailable' }, `cannot listen for udev events (${(error as Error).message}); hotplugged pmem will not be seen until restart`);
      }
    },
    async stop() {
      events.stop();
    },
  };
}
