// Boots Xen with a PV Dom0 (systemd as PID 1) under QEMU/TCG — Debian 13's Xen 4.20 with a
// Debian 13 Dom0 by default, Debian 12's Xen 4.17 with the host's own root on request, or any
// hypervisor image the caller built — with NVDIMMs from sparse image files, and hands the caller
// a Lab to talk to it: files in the per-run results share, QMP for hotplug, the serial log for
// diagnosis. No QEMU outlives its run: it is killed when the time limit runs out, when the
// caller's checks fail, when this process exits or gets a signal, and (through setpriv
// --pdeathsig) when this process dies without a chance to clean up.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

import { hex, humanSize } from '../src/core/units.js';
import { LabError } from './errors.js';
import {
  DEFAULT_DOM0, DOM0_RELEASES, guestSourceDir, prepareLab, repositoryDir, type Dom0Release, type LabArtifacts, type ReleaseArtifacts,
} from './prepare.js';
import { stderrProgress, type ProgressLog } from './progress.js';
import { QmpClient } from './qmp.js';
import { checkNvdimm, CPU_MODELS, maxMemoryBytes, qemuArguments, type CpuModel, type NvdimmSpec, type VmConfig } from './qemu-args.js';
import { lastGuestStep } from './timeline.js';

export type { CpuModel, NvdimmSpec } from './qemu-args.js';
export type { Dom0Release } from './prepare.js';

export interface LabOptions {
  /** NVDIMMs present at boot. Missing image files are created sparse at the given size. */
  nvdimms: NvdimmSpec[];
  /** Guest script: an absolute path, or a name in lab/guest/scenarios (`prove-nd` or `prove-nd.sh`). */
  scenario: string;
  /** Hard limit for the whole run, boot to teardown. */
  timeoutMs: number;
  /** Variables for the scenario, written to lab.env in the results share. */
  env?: Record<string, string>;
  /** Keep the guest up after its scenario ends (the host then ends the run). */
  keepRunning?: boolean;
  /**
   * Which Dom0: `debian13` (the default: its own root from Debian 13's packages, Linux 6.12) or
   * `debian12` (the host's root, Linux 6.1).
   */
  dom0?: Dom0Release;
  /**
   * The hypervisor's multiboot ELF; by default the Dom0 release's own Debian Xen (4.20 for
   * Debian 13, 4.17 for Debian 12). The patched build (lab/hypervisor.ts) is passed here.
   */
  xenImage?: string;
  /** QEMU's CPU model (qemu-args.ts CPU_MODELS); XEN_PMEM_LAB_CPU, else `qemu64`. */
  cpu?: CpuModel;
  /**
   * Host directories or files the guest must see at the same path. The checkout and the kernel's
   * modules always are; with the host's root (Debian 12) everything else is too.
   */
  hostPaths?: string[];
  memoryMiB?: number;
  dom0MemoryMiB?: number;
  /** Virtual CPUs. One by default: on a busy 2-core host two vCPUs made the boot twice as slow. */
  cpus?: number;
  hotplugSlots?: number;
  hotplugBytes?: bigint;
  kernelArgs?: string[];
  xenArgs?: string[];
  /** Where serial.log, qmp.sock and results/ go; a fresh directory under /tmp by default. */
  runDir?: string;
  /** `on-success` (default) removes the run directory after a run without error; `never` keeps it. XEN_PMEM_LAB_KEEP=1 keeps every one. */
  removeRunDir?: 'on-success' | 'never';
  artifacts?: LabArtifacts;
  log?: ProgressLog;
}

export interface Lab {
  readonly runDir: string;
  /** The host side of /lab/results in the guest. */
  readonly resultsDir: string;
  readonly serialLogPath: string;
  readonly qmp: QmpClient;
  readonly artifacts: LabArtifacts;
  /** The Dom0 release this run booted, with its kernel, root and own Xen. */
  readonly dom0: ReleaseArtifacts;
  /** The hypervisor image this run booted, and QEMU's CPU model. */
  readonly xenImage: string;
  readonly cpuModel: CpuModel;
  /** Waits until the guest has put result `name` in the share; returns its host path. */
  waitForFile(name: string, timeoutMs?: number): Promise<string>;
  readResult(name: string): Promise<string>;
  readJson<T = unknown>(name: string): Promise<T>;
  hasResult(name: string): boolean;
  /** Drops a file into the share for the guest (`lab_wait_host NAME` waits for it). */
  signalGuest(name: string, content?: string): Promise<void>;
  /** Plugs another NVDIMM into the running guest through QMP. */
  hotplugNvdimm(spec: NvdimmSpec): Promise<void>;
  /** The last `lines` lines of the serial log, escape sequences removed. */
  serialTail(lines?: number): string;
  /** Waits for the guest to power off by itself (its scenario ended). */
  waitForPoweroff(timeoutMs?: number): Promise<void>;
  /** Milliseconds since QEMU started. */
  elapsedMs(): number;
}

const POLL_MS = 200;
const PROGRESS_EVERY_MS = 5_000;

/**
 * Runs `body` against a freshly booted lab VM and tears the VM down afterwards, whatever happens.
 * Throws LabUnavailableError when the lab cannot be prepared on this machine.
 */
export async function withLab<T>(options: LabOptions, body: (lab: Lab) => Promise<T>): Promise<T> {
  const log = options.log ?? stderrProgress('lab');
  const artifacts = options.artifacts ?? (await prepareLab({ log }));
  const release = options.dom0 ?? DEFAULT_DOM0;
  if (!DOM0_RELEASES.includes(release)) throw new LabError('bad-options', `dom0 "${release}" is none of ${DOM0_RELEASES.join(', ')}`);
  const dom0 = artifacts.releases[release];
  const cpuModel = options.cpu ?? labCpuModel();
  if (!(cpuModel in CPU_MODELS)) throw new LabError('bad-options', `cpu "${cpuModel}" is none of ${Object.keys(CPU_MODELS).join(', ')}`);
  const runDir = options.runDir ?? join(tmpdir(), 'xen-pmem-lab', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  const resultsDir = join(runDir, 'results');
  await mkdir(resultsDir, { recursive: true });
  for (const nvdimm of options.nvdimms) await ensureImage(nvdimm);

  const config: VmConfig = {
    qemu: artifacts.qemu,
    xenImage: options.xenImage ?? dom0.xen.image,
    kernelImage: dom0.kernelImage,
    initramfs: dom0.initramfs,
    rootDir: dom0.root,
    hostPaths: options.hostPaths ?? [],
    cpuModel: CPU_MODELS[cpuModel],
    modulesDir: dom0.modulesDir,
    guestDir: guestSourceDir(),
    scenarioPath: resolveScenario(options.scenario),
    resultsDir,
    serialLogPath: join(runDir, 'serial.log'),
    qmpSocketPath: join(runDir, 'qmp.sock'),
    nvdimms: options.nvdimms,
    memoryMiB: options.memoryMiB ?? 2048,
    dom0MemoryMiB: options.dom0MemoryMiB ?? 1024,
    cpus: options.cpus ?? labCpus(),
    hotplugSlots: options.hotplugSlots ?? 4,
    hotplugBytes: options.hotplugBytes ?? 8n * 1024n * 1024n * 1024n,
    kernelArgs: options.kernelArgs ?? [],
    xenArgs: options.xenArgs ?? [],
  };
  const args = qemuArguments(config);
  await writeFile(join(resultsDir, 'lab.env'), labEnvironment(options));
  await writeFile(join(runDir, 'qemu.cmdline'), [config.qemu, ...args].map(shellQuote).join(' ') + '\n');

  log(`Dom0 ${dom0.release} (Debian ${dom0.debian}, Linux ${dom0.kernelRelease}, node ${dom0.packages.nodejs ?? '?'}), hypervisor ${config.xenImage === dom0.xen.image ? `Debian's Xen ${dom0.xen.packageVersion}` : config.xenImage}, cpu ${cpuModel}`);
  const vm = new RunningVm(config, args, log, options.timeoutMs, artifacts, dom0, cpuModel);
  let succeeded = false;
  try {
    await vm.start();
    const running = body(vm.lab);
    // After a timeout the body may still reject on its own; that must not become an unhandled rejection.
    running.catch(() => undefined);
    const result = await Promise.race([running, vm.deadline]);
    succeeded = true;
    return result;
  } catch (error) {
    throw vm.explain(error);
  } finally {
    await vm.stop();
    const keep = process.env.XEN_PMEM_LAB_KEEP === '1' || options.removeRunDir === 'never' || !succeeded;
    if (keep) log(`run directory kept: ${runDir}`);
    else await rm(runDir, { recursive: true, force: true });
  }
}

function resolveScenario(scenario: string): string {
  const candidates = isAbsolute(scenario)
    ? [scenario]
    : [join(guestSourceDir(), 'scenarios', scenario), join(guestSourceDir(), 'scenarios', `${scenario}.sh`)];
  const found = candidates.find((path) => existsSync(path));
  if (found === undefined) throw new LabError('bad-options', `scenario ${scenario} not found (looked at ${candidates.join(', ')})`);
  return found;
}

function labEnvironment(options: LabOptions): string {
  const variables: Record<string, string> = {
    LAB_REPO: repositoryDir(),
    LAB_KEEP_RUNNING: options.keepRunning ? '1' : '0',
    ...options.env,
  };
  return Object.entries(variables).map(([name, value]) => {
    if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) throw new LabError('bad-options', `scenario variable "${name}" must be upper case letters, digits and _`);
    return `${name}=${shellQuote(value)}\n`;
  }).join('');
}

function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Creates a missing image sparse; an existing one must already have the NVDIMM's size. */
async function ensureImage(nvdimm: NvdimmSpec): Promise<void> {
  checkNvdimm(nvdimm);
  const existing = await stat(nvdimm.imagePath).catch(() => null);
  if (existing === null) {
    const handle = await open(nvdimm.imagePath, 'wx');
    try {
      await handle.truncate(Number(nvdimm.sizeBytes));
    } finally {
      await handle.close();
    }
    return;
  }
  if (BigInt(existing.size) !== nvdimm.sizeBytes) {
    throw new LabError('bad-options', `image ${nvdimm.imagePath} is ${existing.size} bytes but NVDIMM ${nvdimm.id} wants ${nvdimm.sizeBytes} (${humanSize(nvdimm.sizeBytes)})`);
  }
}

// Every QEMU this process started and has not yet seen exit; killed on exit and on signals.
const liveQemus = new Set<ChildProcess>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', killAllQemus);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllQemus();
      // Keep the signal's usual meaning unless someone else has taken charge of it.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

function killAllQemus(): void {
  for (const child of liveQemus) child.kill('SIGKILL');
  liveQemus.clear();
}

class RunningVm {
  readonly lab: Lab;
  readonly deadline: Promise<never>;
  private child: ChildProcess | null = null;
  private qmpClient: QmpClient | null = null;
  private exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private exitWaiters: Array<() => void> = [];
  private qemuStderr = '';
  private startedAt = Date.now();
  private timedOut = false;
  private deadlineTimer: NodeJS.Timeout | null = null;
  private failDeadline: (error: Error) => void = () => {};
  private plugged: NvdimmSpec[];
  /** The result file the host is waiting for, named when the run's limit runs out. */
  private waitingFor: string | null = null;

  constructor(
    private readonly config: VmConfig,
    private readonly args: string[],
    private readonly log: ProgressLog,
    private readonly timeoutMs: number,
    artifacts: LabArtifacts,
    dom0: ReleaseArtifacts,
    cpuModel: CpuModel,
  ) {
    this.plugged = [...config.nvdimms];
    this.deadline = new Promise<never>((_, reject) => {
      this.failDeadline = reject;
    });
    this.deadline.catch(() => undefined);
    const vm = this;
    this.lab = {
      runDir: resolve(config.resultsDir, '..'),
      resultsDir: config.resultsDir,
      serialLogPath: config.serialLogPath,
      artifacts,
      dom0,
      xenImage: config.xenImage,
      cpuModel,
      get qmp(): QmpClient {
        if (vm.qmpClient === null) throw new LabError('qmp-failed', 'QMP is not connected');
        return vm.qmpClient;
      },
      waitForFile: (name, timeoutMs) => this.waitForFile(name, timeoutMs),
      readResult: (name) => readFile(this.resultPath(name), 'utf8'),
      readJson: async <R>(name: string) => JSON.parse(await readFile(this.resultPath(name), 'utf8')) as R,
      hasResult: (name) => existsSync(this.resultPath(name)),
      signalGuest: async (name, content = '') => {
        const path = this.resultPath(name);
        await writeFile(`${path}.host-partial`, content);
        await rename(`${path}.host-partial`, path);
      },
      hotplugNvdimm: (spec) => this.hotplugNvdimm(spec),
      serialTail: (lines = 40) => this.serialTail(lines),
      waitForPoweroff: (timeoutMs) => this.waitForPoweroff(timeoutMs),
      elapsedMs: () => Date.now() - this.startedAt,
    };
  }

  async start(): Promise<void> {
    installExitHooks();
    const nvdimms = this.config.nvdimms.map((nvdimm) => `${nvdimm.id} ${humanSize(nvdimm.sizeBytes)}`).join(', ');
    this.log(`booting Xen + Dom0 (${nvdimms || 'no NVDIMMs'}), serial log ${this.config.serialLogPath}`);
    this.startedAt = Date.now();
    // setpriv makes the kernel kill QEMU if this process dies, even by SIGKILL.
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', this.config.qemu, ...this.args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    liveQemus.add(child);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.qemuStderr = (this.qemuStderr + chunk).slice(-8192);
    });
    child.on('exit', (code, signal) => {
      liveQemus.delete(child);
      this.exited = { code, signal };
      for (const waiter of this.exitWaiters.splice(0)) waiter();
    });
    child.on('error', (error) => {
      liveQemus.delete(child);
      this.qemuStderr += `\n${error.message}`;
      this.exited = { code: null, signal: null };
      for (const waiter of this.exitWaiters.splice(0)) waiter();
    });

    this.deadlineTimer = setTimeout(() => {
      this.timedOut = true;
      child.kill('SIGKILL');
      this.failDeadline(new LabError('timeout', `the lab run hit its time limit of ${this.timeoutMs / 1000} s ${this.whereItStopped()}`, this.serialTail(40)));
    }, this.timeoutMs);

    try {
      this.qmpClient = await Promise.race([
        QmpClient.connect(this.config.qmpSocketPath, 15_000),
        this.exitPromise().then(() => {
          throw this.exitError('before its QMP socket answered');
        }),
      ]);
    } catch (error) {
      throw error instanceof LabError ? error : new LabError('qemu-failed', (error as Error).message);
    }
  }

  async stop(): Promise<void> {
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    if (this.exited === null && this.child !== null) {
      await this.qmpClient?.quit();
      const exited = await Promise.race([this.exitPromise().then(() => true), sleep(3_000).then(() => false)]);
      if (!exited) this.child.kill('SIGKILL');
      await this.exitPromise();
    }
    this.qmpClient?.close();
    this.log(`VM gone after ${((Date.now() - this.startedAt) / 1000).toFixed(1)} s`);
  }

  /** Turns any failure during a run into one that says what the guest printed last. */
  explain(error: unknown): Error {
    if (error instanceof LabError) {
      return error.serialTail || error.reason === 'bad-options' ? error : new LabError(error.reason, error.message, this.serialTail(40));
    }
    const original = error instanceof Error ? error : new Error(String(error));
    const wrapped = new LabError('guest-failed', `a check failed while the lab ran: ${original.message}`, this.serialTail(40));
    (wrapped as Error & { cause?: unknown }).cause = original;
    return wrapped;
  }

  private resultPath(name: string): string {
    if (name.includes('/') || name.startsWith('.')) throw new LabError('bad-options', `result name "${name}" must be a plain file name`);
    return join(this.config.resultsDir, name);
  }

  private async waitForFile(name: string, timeoutMs = this.timeoutMs): Promise<string> {
    const path = this.resultPath(name);
    const waitStarted = Date.now();
    let lastProgress = waitStarted;
    this.waitingFor = name;
    for (;;) {
      if (existsSync(path)) {
        this.waitingFor = null;
        return path;
      }
      if (this.timedOut) throw new LabError('timeout', `the run's time limit ran out ${this.whereItStopped()}`, this.serialTail(40));
      if (this.exited !== null) throw this.exitError(`before it produced ${name}`);
      const now = Date.now();
      if (now - waitStarted > timeoutMs) {
        throw new LabError('timeout', `the guest did not produce ${name} within ${timeoutMs / 1000} s (its last step: ${lastGuestStep(this.serialText())})`, this.serialTail(40));
      }
      if (now - lastProgress >= PROGRESS_EVERY_MS) {
        lastProgress = now;
        this.log(`waiting for ${name}; serial: ${this.serialTail(1).slice(0, 110)}`);
      }
      await sleep(POLL_MS);
    }
  }

  private async hotplugNvdimm(spec: NvdimmSpec): Promise<void> {
    await ensureImage(spec);
    if (this.plugged.some((nvdimm) => nvdimm.id === spec.id)) {
      throw new LabError('bad-options', `NVDIMM id ${spec.id} is already plugged`);
    }
    const room = maxMemoryBytes({ ...this.config, nvdimms: [] }) - BigInt(this.config.memoryMiB) * 1024n * 1024n;
    const used = [...this.plugged, spec].reduce((sum, nvdimm) => sum + nvdimm.sizeBytes, 0n);
    if (used > room) {
      throw new LabError('bad-options', `NVDIMM ${spec.id} (${humanSize(spec.sizeBytes)}) does not fit: the VM has ${humanSize(room)} of NVDIMM address space and ${humanSize(used - spec.sizeBytes)} is plugged`);
    }
    this.log(`hotplugging ${spec.id} (${humanSize(spec.sizeBytes)}${spec.labelSizeBytes ? `, label-size ${hex(spec.labelSizeBytes)}` : ''})`);
    await this.lab.qmp.addMemoryBackendFile(`${spec.id}-mem`, spec.imagePath, spec.sizeBytes);
    await this.lab.qmp.addNvdimm(spec.id, `${spec.id}-mem`, spec.labelSizeBytes, spec.address);
    this.plugged.push(spec);
  }

  private async waitForPoweroff(timeoutMs = this.timeoutMs): Promise<void> {
    const finished = await Promise.race([this.exitPromise().then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!finished) throw new LabError('timeout', `the guest did not power off within ${timeoutMs} ms`, this.serialTail(40));
    if (this.timedOut) throw new LabError('timeout', 'the run\'s time limit ran out before the guest powered off', this.serialTail(40));
  }

  private exitPromise(): Promise<void> {
    if (this.exited !== null) return Promise.resolve();
    return new Promise((resolveExit) => this.exitWaiters.push(resolveExit));
  }

  private exitError(when: string): LabError {
    const how = this.exited?.signal ? `was killed by ${this.exited.signal}` : `exited with status ${this.exited?.code}`;
    const stderr = this.qemuStderr.trim();
    return new LabError(
      this.exited?.code === 0 ? 'vm-exited' : 'qemu-failed',
      `QEMU ${how} ${when}${stderr ? ` (QEMU said: ${stderr.split('\n').slice(-3).join(' | ')})` : ''}`,
      this.serialTail(40),
    );
  }

  private serialTail(lines: number): string {
    return readSerialTail(this.config.serialLogPath, lines);
  }

  private serialText(): string {
    try {
      return readFileSync(this.config.serialLogPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** `while the host waited for done; the guest's last step: phase kill at uptime 61.4 s` */
  private whereItStopped(): string {
    const waiting = this.waitingFor ? `while the host waited for ${this.waitingFor}` : 'while the host ran its checks';
    return `${waiting}; the guest's last step: ${lastGuestStep(this.serialText())} (after ${((Date.now() - this.startedAt) / 1000).toFixed(0)} s)`;
  }
}

/** Reads the end of the serial log without loading all of it; strips colours and carriage returns. */
export function readSerialTail(path: string, lines: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    const text = buffer.toString('utf8')
      .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
      .replace(/\r/g, '');
    return text.split('\n').filter((line) => line.trim().length > 0).slice(-lines).join('\n');
  } finally {
    closeSync(fd);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}


/** QEMU's CPU model when a run does not say: XEN_PMEM_LAB_CPU (a CPU_MODELS name), else qemu64. */
function labCpuModel(): CpuModel {
  const wanted = process.env.XEN_PMEM_LAB_CPU;
  return wanted !== undefined && wanted in CPU_MODELS ? (wanted as CpuModel) : 'qemu64';
}

/** Virtual CPUs when a run does not say: XEN_PMEM_LAB_CPUS, else one (docs/lab.md, "Booting"). */
function labCpus(): number {
  const wanted = Number(process.env.XEN_PMEM_LAB_CPUS ?? '1');
  return Number.isInteger(wanted) && wanted >= 1 && wanted <= 8 ? wanted : 1;
}
