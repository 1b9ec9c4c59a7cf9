// Which systemd sandbox options node, koffi, libxencall and node-udev survive, found with real
// systemd in the Dom0: dom0-probe.js runs as a transient service once with no option, once per
// option (or per group of options that only make sense together), and once with every sandbox
// setting of systemd/xen-pmemd.service. Result: hardening.json in the results share.

import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { log, putResult, uptimeSeconds } from './results.js';
import { CHECK_ORDER, type CheckResult } from './probe-checks.js';

interface Case {
  name: string;
  properties: string[];
  /** Run in the default (CI) pass; the others run with LAB_HARDENING_FULL=1. */
  essential?: boolean;
  /** Why this case is here, when it is expected to break something. */
  expectation?: string;
}

export interface CaseResult extends Case {
  exitCode: number | null;
  durationMs: number;
  checks: Record<string, CheckResult>;
  /** Failed checks; `node` when the probe died, with `diedDuring` naming the check it was in. */
  failed: string[];
  diedDuring?: string;
  stderrTail: string;
}

const REPO = process.env.LAB_REPO ?? '/work/main';
const UNIT_FILE = join(REPO, 'systemd', 'xen-pmemd.service');
/**
 * The probe runs from a copy under /usr: ProtectHome= and PrivateTmp= would hide a checkout
 * under /root or /tmp from the very cases that test them. The copy is the probe's bundle and the
 * native packages of the runtime the build made (what an installed daemon loads too).
 */
const PROBE_DIR = '/usr/local/lib/xen-pmem-lab';
const PROBE = join(PROBE_DIR, 'dom0-probe.mjs');

function placeProbe(): void {
  mkdirSync(PROBE_DIR, { recursive: true });
  copyFileSync(join(REPO, 'dist', 'lab', 'guest-bundle', 'dom0-probe.mjs'), PROBE);
  cpSync(join(REPO, 'dist', 'runtime', 'node_modules'), join(PROBE_DIR, 'node_modules'), { recursive: true });
}
const CASE_TIMEOUT_MS = 90_000;
export const UNIT_CASE = 'systemd/xen-pmemd.service sandbox';

const CASES: Case[] = [
  { name: 'baseline', properties: [], essential: true },
  { name: 'ProtectSystem=strict', properties: ['ProtectSystem=strict'] },
  { name: 'ProtectHome=yes', properties: ['ProtectHome=yes'] },
  { name: 'PrivateTmp=yes', properties: ['PrivateTmp=yes'] },
  { name: 'PrivateMounts=yes', properties: ['PrivateMounts=yes'] },
  { name: 'CapabilityBoundingSet= (none)', properties: ['CapabilityBoundingSet=', 'AmbientCapabilities='] },
  { name: 'NoNewPrivileges=yes', properties: ['NoNewPrivileges=yes'] },
  {
    name: 'DevicePolicy=closed + DeviceAllow pmem, xen',
    properties: ['DevicePolicy=closed', 'DeviceAllow=block-blkext r', 'DeviceAllow=/dev/xen/privcmd rw', 'DeviceAllow=/dev/xen/hypercall rw'],
  },
  { name: 'DevicePolicy=closed (nothing allowed)', properties: ['DevicePolicy=closed'], expectation: 'no device may be opened' },
  { name: 'PrivateDevices=yes', properties: ['PrivateDevices=yes'], expectation: 'a private /dev has neither pmem disks nor /dev/xen' },
  { name: 'RestrictAddressFamilies=AF_UNIX AF_NETLINK', properties: ['RestrictAddressFamilies=AF_UNIX AF_NETLINK'] },
  { name: 'RestrictAddressFamilies=AF_UNIX', properties: ['RestrictAddressFamilies=AF_UNIX'], expectation: 'udev events arrive over AF_NETLINK' },
  { name: 'PrivateNetwork=yes', properties: ['PrivateNetwork=yes'], expectation: 'udevd multicasts events in the host network namespace only', essential: true },
  { name: 'IPAddressDeny=any', properties: ['IPAddressDeny=any'] },
  { name: 'ProtectKernelTunables=yes', properties: ['ProtectKernelTunables=yes'] },
  { name: 'ProtectKernelModules=yes', properties: ['ProtectKernelModules=yes'] },
  { name: 'ProtectKernelLogs=yes', properties: ['ProtectKernelLogs=yes'] },
  { name: 'ProtectControlGroups=yes', properties: ['ProtectControlGroups=yes'] },
  { name: 'ProtectClock=yes', properties: ['ProtectClock=yes'] },
  { name: 'ProtectHostname=yes', properties: ['ProtectHostname=yes'] },
  { name: 'ProtectProc=invisible', properties: ['ProtectProc=invisible'] },
  { name: 'ProcSubset=pid', properties: ['ProcSubset=pid'], expectation: 'hides /proc/xen' },
  { name: 'PrivateIPC=yes', properties: ['PrivateIPC=yes'] },
  { name: 'PrivateUsers=yes', properties: ['PrivateUsers=yes'], expectation: 'root in a user namespace is not the owner of /dev nodes' },
  { name: 'RestrictNamespaces=yes', properties: ['RestrictNamespaces=yes'] },
  {
    name: 'RestrictRealtime, RestrictSUIDSGID, LockPersonality, KeyringMode=private',
    properties: ['RestrictRealtime=yes', 'RestrictSUIDSGID=yes', 'LockPersonality=yes', 'KeyringMode=private'],
  },
  { name: 'SystemCallArchitectures=native', properties: ['SystemCallArchitectures=native'] },
  { name: 'SystemCallFilter=@system-service', properties: ['SystemCallFilter=@system-service', 'SystemCallErrorNumber=EPERM'] },
  {
    name: 'SystemCallFilter=@system-service ~@privileged @resources',
    properties: ['SystemCallFilter=@system-service', 'SystemCallFilter=~@privileged @resources', 'SystemCallErrorNumber=EPERM'],
  },
  { name: 'MemoryDenyWriteExecute=yes', properties: ['MemoryDenyWriteExecute=yes'], expectation: 'V8 makes the code it compiles executable', essential: true },
];

/** [Service] settings of the unit that shape the process's surroundings (not its lifecycle). */
const LIFECYCLE_KEYS = new Set([
  'Type', 'NotifyAccess', 'ExecCondition', 'ExecStart', 'ExecStartPre', 'ExecStartPost', 'ExecStop', 'ExecReload',
  'Restart', 'RestartSec', 'RestartPreventExitStatus', 'WatchdogSec', 'TimeoutStartSec', 'TimeoutStopSec',
]);

export function unitSandboxProperties(unitText: string): string[] {
  const properties: string[] = [];
  let inService = false;
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      inService = line === '[Service]';
      continue;
    }
    if (!inService || line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const key = line.slice(0, line.indexOf('='));
    if (key && !LIFECYCLE_KEYS.has(key)) properties.push(line);
  }
  return properties;
}

/** Keeps udev busy while a probe listens: a change event for the disk every 400 ms. */
function startEventSource(disk: string): () => void {
  const uevent = `/sys/class/block/${disk}/uevent`;
  const timer = setInterval(() => {
    try {
      writeFileSync(uevent, 'change');
    } catch {
      // The probe reports the missing events; nothing to add here.
    }
  }, 400);
  return () => clearInterval(timer);
}

function runCase(testCase: Case): Promise<CaseResult> {
  const started = Date.now();
  const args = ['--wait', '--pipe', '--quiet', '--collect', '--service-type=exec'];
  for (const property of testCase.properties) args.push('-p', property);
  args.push('--', '/usr/bin/node', PROBE, '--udev-wait-ms', '3000');
  return new Promise((resolve) => {
    const child = spawn('systemd-run', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CASE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const checks: Record<string, CheckResult> = {};
      let finished = false;
      for (const text of stdout.split('\n')) {
        if (!text.startsWith('{')) continue;
        const line = JSON.parse(text) as { check?: string; done?: boolean } & CheckResult;
        if (line.done) finished = true;
        else if (line.check) checks[line.check] = { ok: line.ok, detail: line.detail };
      }
      const failed = Object.entries(checks).filter(([, check]) => !check.ok).map(([name]) => name);
      const result: CaseResult = {
        ...testCase,
        exitCode: code,
        durationMs: Date.now() - started,
        checks,
        failed: finished ? failed : [...failed, 'node'],
        stderrTail: stderr.trim().split('\n').slice(-6).join('\n'),
      };
      if (!finished) result.diedDuring = CHECK_ORDER.find((name) => !(name in checks)) ?? 'exit';
      resolve(result);
    });
  });
}

async function main(): Promise<void> {
  const disk = process.env.LAB_PMEM_DISK ?? 'pmem0';
  const cases = [...CASES];
  if (existsSync(UNIT_FILE)) {
    const unit = unitSandboxProperties(readFileSync(UNIT_FILE, 'utf8'));
    cases.push({ name: UNIT_CASE, properties: unit, essential: true });
    // Any option that mounts a private /proc (ProtectProc, ProcSubset, ProtectKernelTunables,
    // ProtectControlGroups) leaves xenfs behind; binding it back is the candidate fix.
    cases.push({ name: `${UNIT_CASE} + BindReadOnlyPaths=/proc/xen`, properties: [...unit, 'BindReadOnlyPaths=/proc/xen'], essential: true });
  }
  const only = process.env.LAB_HARDENING_CASES;
  const full = process.env.LAB_HARDENING_FULL === '1';
  const selected = only
    ? cases.filter((testCase) => only.split(',').includes(testCase.name))
    : cases.filter((testCase) => full || testCase.essential);

  placeProbe();
  const stopEvents = startEventSource(disk);
  const results: CaseResult[] = [];
  try {
    for (const testCase of selected) {
      const result = await runCase(testCase);
      results.push(result);
      const died = result.diedDuring ? ` during ${result.diedDuring}` : '';
      log(`${result.failed.length === 0 ? 'ok  ' : 'FAIL'} ${testCase.name}${result.failed.length ? ` (breaks ${result.failed.join(', ')}${died})` : ''} in ${result.durationMs} ms`);
    }
  } finally {
    stopEvents();
  }
  putResult('hardening.json', {
    complete: selected.length === cases.length,
    node: process.version,
    systemd: readFileSync('/proc/1/comm', 'utf8').trim(),
    uptimeAtEnd: uptimeSeconds(),
    results,
  });
}

// Imported by tests for unitSandboxProperties; runs only as a program.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
