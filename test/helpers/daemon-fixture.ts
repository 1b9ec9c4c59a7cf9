// A fixture host for the daemon: a sysfs tree, /dev nodes that are sparse images prepared by the
// real layout writer (sfdisk included), the test hypervisor with its state and call log, and a
// state directory. Controller tests build in-process ports over it; daemon tests hand its paths
// and environment to the real entry point.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { planLayout, type LayoutPlan } from '../../src/core/planner.js';
import type { Superblock } from '../../src/core/superblock.js';
import { configSchema, type Config } from '../../src/daemon/config.js';
import type { DaemonPorts } from '../../src/daemon/controller.js';
import type { DaemonLogger, LogFields, LogLevel } from '../../src/daemon/log.js';
import type { Notifier } from '../../src/daemon/notify.js';
import { StateStore } from '../../src/daemon/state-store.js';
import { LedgerJournal } from '../../src/daemon/ledger.js';
import { openDevice } from '../../src/io/device.js';
import type { DeviceReader } from '../../src/io/ports.js';
import { writeLayout } from '../../src/io/layout-writer.js';
import { openXencall } from '../../src/native/libxencall.js';
import { listPmemNamespaces, readPmemByBlockName, readPmemBySyspath } from '../../src/sysfs/model.js';
import type { SysfsRoots } from '../../src/sysfs/types.js';
import { HypercallBridge } from '../../src/xen/bridge.js';
import { makeSysfsTree, type NamespacePaths, type SysfsTree, type SysfsTreeSpec } from '../fixtures/sysfs-tree.js';
import { buildTestHypervisor } from '../hypervisor/build.js';
import { makeSparseImage } from './images.js';

/** What the test hypervisor logged for one call (see docs/hypercall.md, TEST_XEN_LOG). */
export interface XenCall {
  op: 'platform_op' | 'xen_version' | 'other';
  line: string;
  cmd: number | null;
  spfn: bigint | null;
  epfn: bigint | null;
  rsvSpfn: bigint | null;
  rsvEpfn: bigint | null;
  dataSpfn: bigint | null;
  dataEpfn: bigint | null;
  ret: number | null;
  /** `OK`, `EINVAL`, `ENOMEM`, ... */
  result: string | null;
  rule: number | null;
}

export interface PreparedDevice {
  devPath: string;
  size: bigint;
  plan: LayoutPlan;
  superblock: Superblock;
}

export interface PrepareOptions {
  namespaceUuid?: string | null;
  /** The reservation UUID; random when omitted. */
  uuid?: string;
}

export interface XenEnvOptions {
  mode?: string;
  delayMs?: number;
}

export class DaemonHost {
  readonly roots: SysfsRoots;
  readonly stateDir: string;
  readonly xenStatePath: string;
  readonly xenLogPath: string;

  constructor(readonly dir: string, readonly tree: SysfsTree, readonly library: string) {
    this.roots = tree.roots;
    this.stateDir = join(dir, 'run', 'xen-pmem');
    this.xenStatePath = join(dir, 'xen-state');
    this.xenLogPath = join(dir, 'xen-log');
  }

  /** The namespace paths of a block device, e.g. `pmem0`. */
  namespaceOf(blockName: string): NamespacePaths & { blockDir: string } {
    for (const paths of this.tree.namespaces.values()) {
      if (paths.blockName === blockName && paths.blockDir !== null) return paths as NamespacePaths & { blockDir: string };
    }
    throw new Error(`the fixture has no block device ${blockName}`);
  }

  devPath(blockName: string): string {
    return join(this.roots.devRoot, blockName);
  }

  /** The block device's size as its sysfs `size` attribute says (512-byte sectors). */
  async blockSize(blockName: string): Promise<bigint> {
    const sectors = (await readFile(join(this.namespaceOf(blockName).blockDir, 'size'), 'utf8')).trim();
    return BigInt(sectors) * 512n;
  }

  /** Turns the empty /dev node into an all-zero sparse image of the block device's size. */
  async blank(blockName: string): Promise<string> {
    return makeSparseImage(this.devPath(blockName), await this.blockSize(blockName));
  }

  /** As `xen-pmem setup` does it: planner, sfdisk and the super block writer on a sparse image. */
  async prepare(blockName: string, options: PrepareOptions = {}): Promise<PreparedDevice> {
    const devPath = await this.blank(blockName);
    const size = await this.blockSize(blockName);
    const planned = planLayout(size, []);
    if (!planned.ok) throw new Error(`cannot plan ${blockName} (${size} bytes): ${planned.message}`);
    const written = await writeLayout(devPath, planned.plan, {
      namespaceUuid: options.namespaceUuid ?? null,
      ...(options.uuid !== undefined ? { uuid: options.uuid } : {}),
    });
    if (written.verdict.status !== 'valid') throw new Error(`prepared ${blockName} does not scan as valid: ${show(written.verdict)}`);
    return { devPath, size, plan: planned.plan, superblock: written.superblock };
  }

  /** The environment that points the daemon's libxencall at the test hypervisor. */
  xenEnv(options: XenEnvOptions = {}): Record<string, string> {
    const env: Record<string, string> = {
      XEN_PMEM_LIBXENCALL: this.library,
      TEST_XEN_MODE: options.mode ?? 'rfc',
      TEST_XEN_STATE: this.xenStatePath,
      TEST_XEN_LOG: this.xenLogPath,
    };
    if (options.delayMs !== undefined) env.TEST_XEN_DELAY_MS = String(options.delayMs);
    return env;
  }

  /** The test hypervisor reads its knobs on every call: this sets them for this process. */
  useXenInProcess(options: XenEnvOptions = {}): void {
    delete process.env.TEST_XEN_DELAY_MS;
    Object.assign(process.env, this.xenEnv(options));
  }

  xenCalls(): XenCall[] {
    if (!existsSync(this.xenLogPath)) return [];
    return readFileSync(this.xenLogPath, 'utf8').split('\n').filter((line) => line !== '').map(parseXenLogLine);
  }

  /** pmem_add calls that carried a region: every op-64 call except the all-zero capability probe. */
  regionAdds(): XenCall[] {
    return this.xenCalls().filter((call) => call.op === 'platform_op' && call.cmd === 64 && call.spfn !== 0n);
  }

  /** The regions the test hypervisor holds, from its state file. */
  xenRegions(): { spfn: bigint; epfn: bigint }[] {
    if (!existsSync(this.xenStatePath)) return [];
    const regions: { spfn: bigint; epfn: bigint }[] = [];
    for (const line of readFileSync(this.xenStatePath, 'utf8').split('\n')) {
      const match = /^added ([0-9a-f]+) ([0-9a-f]+)$/.exec(line);
      if (match) regions.push({ spfn: BigInt('0x' + match[1]!), epfn: BigInt('0x' + match[2]!) });
    }
    return regions;
  }

  /** A bridge over the real koffi path into the test hypervisor. */
  openBridge(dryRun = false): HypercallBridge {
    const port = openXencall(this.library);
    if ('error' in port) throw new Error(`the test hypervisor did not open: ${port.message}`);
    return new HypercallBridge(port, { dryRun });
  }

  /** In-process ports over this host: the real sysfs reader, device reader, bridge and store. */
  ports(overrides: Partial<DaemonPorts> & { log: DaemonLogger }): DaemonPorts {
    const store = new StateStore(this.stateDir);
    const journal = new LedgerJournal(this.stateDir);
    return {
      listNamespaces: () => listPmemNamespaces(this.roots),
      readByBlockName: (name) => readPmemByBlockName(this.roots, name),
      readBySyspath: (syspath) => readPmemBySyspath(this.roots, syspath),
      openReader: (devPath): Promise<DeviceReader> => openDevice(devPath, 'read'),
      bridge: overrides.bridge ?? this.openBridge(),
      saveState: (state) => store.save(state),
      recordLedger: (op, entry) => journal.append(op, entry),
      notifier: recordingNotifier(),
      now: () => new Date(),
      ...overrides,
    };
  }

  async writeConfig(content: unknown): Promise<string> {
    const path = join(this.dir, 'config.json');
    await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

export async function makeDaemonHost(label: string, spec: SysfsTreeSpec): Promise<DaemonHost> {
  const dir = await mkdtemp(join(tmpdir(), `xen-pmem-${label}-`));
  const tree = await makeSysfsTree(dir, spec);
  return new DaemonHost(dir, tree, buildTestHypervisor());
}

export function parseXenLogLine(line: string): XenCall {
  const field = (name: string): string | null => new RegExp(`(?:^| )${name}=(\\S+)`).exec(line)?.[1] ?? null;
  const big = (name: string): bigint | null => {
    const text = field(name);
    return text === null ? null : BigInt(text);
  };
  const number = (name: string): number | null => {
    const text = field(name);
    return text === null ? null : Number(text);
  };
  const op = line.startsWith('platform_op ') ? 'platform_op' : line.startsWith('xen_version ') ? 'xen_version' : 'other';
  return {
    op,
    line,
    cmd: number('cmd'),
    spfn: big('spfn'),
    epfn: big('epfn'),
    rsvSpfn: big('rsv_spfn'),
    rsvEpfn: big('rsv_epfn'),
    dataSpfn: big('data_spfn'),
    dataEpfn: big('data_epfn'),
    ret: number('ret'),
    result: / ret=-?\d+ (\S+)/.exec(line)?.[1] ?? null,
    rule: number('rule'),
  };
}

/** The config every daemon starts from, with retries fast enough for a test. */
export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return configSchema.parse({ retry: { initialMs: 10, maxMs: 40 }, ...overrides });
}

export interface LogEntry {
  level: LogLevel;
  fields: LogFields;
  message: string;
}

export interface RecordingLogger extends DaemonLogger {
  readonly entries: LogEntry[];
}

export function recordingLogger(): RecordingLogger {
  const entries: LogEntry[] = [];
  const at = (level: LogLevel) => (fields: LogFields, message: string): void => {
    entries.push({ level, fields, message });
  };
  return {
    entries,
    sink: 'json',
    debug: at('debug'),
    info: at('info'),
    notice: at('notice'),
    warn: at('warn'),
    error: at('error'),
    flush() {},
  };
}

export interface RecordingNotifier extends Notifier {
  readonly sent: string[];
}

export function recordingNotifier(): RecordingNotifier {
  const sent: string[] = [];
  return {
    sent,
    active: true,
    watchdogIntervalMs: null,
    ready: (status) => { sent.push(`READY=1\nSTATUS=${status}`); },
    status: (text) => { sent.push(`STATUS=${text}`); },
    stopping: () => { sent.push('STOPPING=1'); },
    startWatchdog() {},
    stop() {},
  };
}

/** Resolves when `condition` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** JSON for assertion messages: BigInts in hex, as the project prints them. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_key, each: unknown) => (typeof each === 'bigint' ? '0x' + each.toString(16) : each));
}
