// A large region added to the patched hypervisor from the Dom0, and beside it the cost of
// Linux's own memmap over pmem. nv0 (the large one, prepared on the host with xen-pmem setup) is
// unbound and added with the planner's layout through libxencall; Xen's console line tells how
// long the add took and over how many continuations (the host reads it). nv1 (labelled) becomes
// an fsdax namespace with its memmap in RAM (--map=mem, the map a PV Dom0 can make), which is
// Linux writing a struct page per frame. The kernel log is kept to look for soft lockups and RCU
// stalls.
//
// Result: xen-large.json.

import { existsSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { hex, MiB } from '../../src/core/units.js';
import { openXencall } from '../../src/native/libxencall.js';
import type { PmemReport } from '../../src/xen/interface.js';
import { decodeHeader, encodeAdd, reasonCodeOf } from '../../src/xen/xenpf-pmem.js';
import type { CommandRecord } from './daemon-results.js';
import { run } from './daemon-dom0.js';
import { log, phaseRunner, putResult, waitUntil } from './results.js';
import { plannerReport } from './xen-abi-rows.js';

export const XEN_LARGE_RESULT = 'xen-large.json';

export interface XenLargeResult {
  phase: string;
  /** nv0's region, hex, and the add sent for it. */
  region: { name: string; start: string; size: string } | null;
  add: { report: Record<keyof PmemReport, string>; rc: number; errno: number; reason: string; wallMs: number } | null;
  /** ndctl's fsdax namespace with its memmap in RAM over nv1. */
  linux: { bytes: string; steps: CommandRecord[]; createMs: number } | null;
  /** Kernel log lines of soft lockups, RCU stalls and oopses, over the whole run. */
  kernelTrouble: string[];
  failure?: { phase: string; message: string };
}

const ND = '/sys/bus/nd/devices';
/** ndctl refuses namespace sizes that are not a multiple of the region's alignment. */
const FALLBACK_ALIGN = 16n * MiB;

function regions(): Array<{ name: string; start: bigint; size: bigint; mapping: string }> {
  return readdirSync(ND).filter((name) => /^region\d+$/.test(name)).map((name) => ({
    name,
    start: BigInt(readFileSync(join(ND, name, 'resource'), 'utf8').trim()),
    size: BigInt(readFileSync(join(ND, name, 'size'), 'utf8').trim()),
    mapping: readFileSync(join(ND, name, 'mapping0'), 'utf8').split(',')[0]!.trim(),
  }));
}

async function main(): Promise<void> {
  const largeBytes = BigInt(process.env.LAB_LARGE_BYTES ?? '0');
  const result: XenLargeResult = { phase: 'start', region: null, add: null, linux: null, kernelTrouble: [] };
  const phase = phaseRunner(XEN_LARGE_RESULT, result);
  try {
    await phase('nvdimms', async () => {
      await waitUntil('two nd regions', () => existsSync(ND) && regions().length === 2, 120_000, 200);
    });
    const large = regions().find((region) => region.size === largeBytes);
    const small = regions().find((region) => region.size !== largeBytes);
    if (!large || !small) throw new Error(`no nd region of ${largeBytes} bytes beside another (have ${regions().map((r) => `${r.name} ${r.size}`).join(', ')})`);
    result.region = { name: large.name, start: hex(large.start), size: hex(large.size) };

    await phase('xen', async () => {
      const namespace = `namespace${large.name.slice('region'.length)}.0`;
      await waitUntil(`${namespace} bound`, () => existsSync(join(ND, namespace, 'driver')), 60_000, 200);
      const driver = realpathSync(join(ND, namespace, 'driver'));
      // The driver's bind and unbind files appear once its module has attached it to every device,
      // which for a large namespace (its probe maps all of it) comes well after the driver link.
      await waitUntil(`${driver}/unbind`, () => existsSync(join(driver, 'unbind')), 300_000, 200);
      // Appending, as src/sysfs/driver.ts does.
      writeFileSync(join(driver, 'unbind'), namespace, { flag: 'a' });
      const report = plannerReport({ spfn: large.start >> 12n, epfn: (large.start + large.size) >> 12n });
      const opened = openXencall();
      if (opened.kind !== 'opened') throw new Error(`libxencall: ${opened.message}`);
      const started = Date.now();
      const answer = await opened.port.platformOp(encodeAdd(report));
      const wallMs = Date.now() - started;
      opened.port.close();
      const reason = answer.after.length >= 16 ? reasonCodeOf(decodeHeader(answer.after).reason) : 'none';
      result.add = {
        report: Object.fromEntries(Object.entries(report).map(([key, value]) => [key, hex(value as bigint)])) as Record<keyof PmemReport, string>,
        rc: answer.rc, errno: answer.errno, reason, wallMs,
      };
      log(`add of ${large.name} (${large.size} bytes): rc ${answer.rc} errno ${answer.errno} ${reason} in ${wallMs} ms`);
    });

    await phase('linux', () => {
      const steps: CommandRecord[] = [];
      const step = (args: string[]): CommandRecord => {
        const record = run('ndctl', args, 600_000);
        steps.push(record);
        if (record.status !== 0) throw new Error(`ndctl ${args.join(' ')} failed (${record.status}): ${record.stderr.trim()}`);
        return record;
      };
      step(['disable-region', small.name]);
      step(['init-labels', '-f', small.mapping]);
      step(['enable-region', small.name]);
      const available = BigInt(readFileSync(join(ND, small.name, 'available_size'), 'utf8').trim());
      const alignText = existsSync(join(ND, small.name, 'align')) ? readFileSync(join(ND, small.name, 'align'), 'utf8').trim() : '';
      const align = /^(0x[0-9a-f]+|\d+)$/i.test(alignText) && BigInt(alignText) > 0n ? BigInt(alignText) : FALLBACK_ALIGN;
      const bytes = available - available % align;
      const create = step(['create-namespace', '--mode=fsdax', '--map=mem', `--region=${small.name}`, `--size=${bytes}`]);
      result.linux = { bytes: hex(bytes), steps, createMs: create.ms };
    });
  } catch (error) {
    result.failure = { phase: result.phase, message: (error as Error).stack ?? String(error) };
    throw error;
  } finally {
    result.kernelTrouble = run('dmesg', []).stdout.split('\n').filter((line) => /soft lockup|rcu.*stall|BUG:|Oops/i.test(line));
    putResult(XEN_LARGE_RESULT, result);
  }
  result.phase = 'done';
  putResult(XEN_LARGE_RESULT, result);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
