// What xen-pmemd needs from its surroundings, tried one thing at a time inside the Dom0: V8's
// JIT, koffi, libxencall hypercalls, reading a pmem disk and sysfs, /proc/xen, udev events.
// The hardening matrix runs this under systemd-run with sandbox options and reads the JSON lines
// it prints; a missing final line means node itself died, during the first unreported check.
//
// Usage: node dom0-probe.js [--pmem /dev/pmem0] [--udev-wait-ms 4000]

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';

import { openXencall } from '../../src/native/libxencall.js';
import { udevEventSource } from '../../src/native/udev.js';
import { encodeRegion, PROBE_INDEX, XENPF_PMEM, XENVER_VERSION } from '../../src/xen/xenpf-pmem.js';
import type { CheckResult } from './probe-checks.js';


function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] ?? fallback : fallback;
}

async function attempt(run: () => string | Promise<string>): Promise<CheckResult> {
  try {
    return { ok: true, detail: await run() };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, detail: `${code ? `${code}: ` : ''}${(error as Error).message}` };
  }
}

/** A function hot enough for V8 to compile it to machine code (Maglev/TurboFan). */
function jit(): string {
  const mix = (seed: number): number => ((seed * 2654435761) ^ (seed >>> 13)) >>> 0;
  let sum = 0;
  for (let i = 0; i < 1_000_000; i++) sum = (sum + mix(i)) >>> 0;
  return `checksum ${sum}`;
}

function koffiCall(): string {
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  const getpid = koffi.load('libc.so.6').func('int getpid(void)') as () => number;
  const pid = getpid();
  if (pid !== process.pid) throw new Error(`getpid through koffi said ${pid}, node says ${process.pid}`);
  return `getpid() = ${pid}`;
}

async function hypercalls(): Promise<string> {
  const opening = openXencall();
  if (opening.kind !== 'opened') throw new Error(`${opening.reason}: ${opening.message}`);
  const xencall = opening.port;
  try {
    const version = await xencall.xenVersion(XENVER_VERSION, 0);
    if (version.rc < 0) throw new Error(`xen_version failed, errno ${version.errno}`);
    const probe = encodeRegion(PROBE_INDEX);
    const answer = await xencall.platformOp(probe);
    const xen = `${version.rc >> 16}.${version.rc & 0xffff}`;
    // The daemon's own probe (region 0xffffffff of XENPF_pmem). Upstream Xen has no op 67 and
    // answers -1/ENOSYS; the patched one answers -1/ENOENT (no_such_region). EPERM or EACCES
    // would mean the sandbox got in the way of the ioctl.
    if (answer.rc === -1 && answer.errno === 38) return `xen ${xen}; platform_op ${XENPF_PMEM} -> ENOSYS`;
    if (answer.rc === -1 && answer.errno === 2) return `xen ${xen}; platform_op ${XENPF_PMEM} -> ENOENT (no_such_region)`;
    throw new Error(`platform_op ${XENPF_PMEM} gave rc ${answer.rc} errno ${answer.errno} on Xen ${xen}, expected -1/ENOSYS or -1/ENOENT`);
  } finally {
    xencall.close();
  }
}

function readPmem(device: string): string {
  const fd = openSync(device, 'r');
  try {
    const bytes = readSync(fd, Buffer.alloc(4096), 0, 4096, 0);
    return `read ${bytes} bytes of ${device}`;
  } finally {
    closeSync(fd);
  }
}

function firstUdevEvent(waitMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    let source: ReturnType<typeof udevEventSource>;
    try {
      source = udevEventSource(['block']);
    } catch (error) {
      resolve({ ok: false, detail: (error as Error).message });
      return;
    }
    const timer = setTimeout(() => {
      source.stop();
      resolve({ ok: false, detail: `no udev event within ${waitMs} ms` });
    }, waitMs);
    try {
      source.start((event) => {
        clearTimeout(timer);
        source.stop();
        resolve({ ok: true, detail: `${event.action} ${event.sysname}` });
      });
    } catch (error) {
      clearTimeout(timer);
      resolve({ ok: false, detail: (error as Error).message });
    }
  });
}

/** One JSON line per check as soon as it is known, so a crash still shows how far node got. */
function report(name: string, result: CheckResult): void {
  process.stdout.write(JSON.stringify({ check: name, ...result }) + '\n');
}


async function main(): Promise<void> {
  const pmem = option('--pmem', '/dev/pmem0');
  const udevWaitMs = Number(option('--udev-wait-ms', '4000'));
  report('jit', await attempt(jit));
  report('koffi', await attempt(koffiCall));
  report('hypercall', await attempt(hypercalls));
  report('pmemRead', await attempt(() => readPmem(pmem)));
  report('sysfs', await attempt(() => `region0 resource ${readFileSync('/sys/bus/nd/devices/region0/resource', 'utf8').trim()}`));
  report('procXen', await attempt(() => `capabilities ${readFileSync('/proc/xen/capabilities', 'utf8').trim()}`));
  report('udev', await firstUdevEvent(udevWaitMs));
  process.stdout.write(JSON.stringify({ done: true }) + '\n');
  // node-udev's closed monitor can keep the event loop alive; the verdict is out, so leave.
  process.exit(0);
}

await main();
