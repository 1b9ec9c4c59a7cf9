// The fuzz engine shared by the CI slice (test/fuzz.test.ts) and the long run on demand
// (test/fuzz/run.ts). Each case: a base layout set up with the real setup path, up to five
// generated mutations, a namespace for the device. The real scan code reads the mutant; the
// verdict must
//   - come without a throw, and render through inspect's JSON and text without one;
//   - agree with the independent oracle (oracle.ts): no accepted invalid, no refused valid;
//   - when valid, give a request the hypervisor's own rules accept (checkPmemAddLikeXen), as the
//     daemon would build it for a region at 4 GiB.
// fast-check generates and, on a failure, shrinks to the smallest plan that still fails.

import fc from 'fast-check';

import { describeVerdict, verdictToJson } from '../../src/format/serializers.js';
import { HUGE_PAGE_BYTES, isAligned } from '../../src/core/units.js';
import type { Verdict } from '../../src/core/validate.js';
import { judgeForXen } from '../../src/daemon/decide.js';
import type { DeviceReader } from '../../src/io/ports.js';
import { scanDevice, type ScanOptions } from '../../src/io/scan.js';
import type { SupportedPmemNamespace } from '../../src/sysfs/types.js';
import { checkPmemAddLikeXen } from '../../src/xen/interfaces/xenpf-pmem.js';
import { encodeAdd as encodePmemAdd } from '../../src/xen/xenpf-pmem.js';
import type { MemoryImage } from './image.js';
import { applyMutation, fuzzPlan, mutationName, namespaceFor, type FuzzPlan } from './mutate.js';
import { oracle } from './oracle.js';

export interface FuzzStats {
  cases: number;
  valid: number;
  absent: number;
  invalid: number;
  throws: number;
  acceptedInvalid: number;
  refusedValid: number;
  statusMismatch: number;
  xenRefused: number;
  /** Validator reason codes reached, with counts. */
  reasons: Map<string, number>;
  /** Mutations applied, by kind and field. */
  mutations: Map<string, number>;
  elapsedMs: number;
}

/** How a mutant is judged: the real scan, or (to prove the oracle can fail) a broken one. */
export type Scan = (reader: DeviceReader, options: ScanOptions) => Promise<Verdict>;

export interface FuzzOptions {
  cases: number;
  seed?: number;
  bases: MemoryImage[];
  scan?: Scan;
  /** Called every `progressEvery` cases. */
  onProgress?: (stats: FuzzStats) => void;
  progressEvery?: number;
}

export interface FuzzResult {
  stats: FuzzStats;
  seed: number;
  /** fast-check's report of the smallest failing plan, or null when every case held. */
  failure: string | null;
}

const REGION_START = 0x1_0000_0000n;

/** The daemon's view of a device at 4 GiB: only what mapToPhysical needs to be true. */
function modelFor(image: MemoryImage, namespaceUuid: string | null): SupportedPmemNamespace {
  return {
    namespace: 'namespace0.0',
    mode: 'raw',
    namespaceUuid,
    region: { name: 'region0', start: REGION_START, size: image.size, numaNode: 0 },
    block: { name: 'pmem0', devPath: '/dev/pmem0', syspath: '/sys/devices/fuzz/pmem0', size: image.size, logicalBlockSize: image.sectorSize, physStart: REGION_START },
    unsupported: null,
  };
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export function emptyStats(): FuzzStats {
  return {
    cases: 0, valid: 0, absent: 0, invalid: 0, throws: 0,
    acceptedInvalid: 0, refusedValid: 0, statusMismatch: 0, xenRefused: 0,
    reasons: new Map(), mutations: new Map(), elapsedMs: 0,
  };
}

/** Builds the mutant a plan describes. */
export function mutant(bases: MemoryImage[], plan: FuzzPlan): MemoryImage {
  const image = bases[plan.base]!.clone();
  for (const m of plan.mutations) applyMutation(image, m);
  return image;
}

/** One case, counted in `stats`; returns null when it holds, otherwise what went wrong. */
export async function checkCase(bases: MemoryImage[], plan: FuzzPlan, stats: FuzzStats, scan: Scan = scanDevice): Promise<string | null> {
  const image = mutant(bases, plan);
  const namespaceUuid = namespaceFor(image, plan.namespace);
  let verdict: Verdict;
  try {
    verdict = await scan(image.reader(), namespaceUuid === undefined ? {} : { namespaceUuid });
    record(stats, plan, verdict);
    verdictToJson(verdict);
    describeVerdict('/dev/pmem0', image.size, verdict);
  } catch (error) {
    stats.throws++;
    return `the scan or its report threw: ${(error as Error).stack ?? String(error)}`;
  }
  const expected = oracle(image, namespaceUuid);
  if (verdict.status !== expected.status) {
    if (verdict.status === 'valid') stats.acceptedInvalid++;
    else if (expected.status === 'valid') stats.refusedValid++;
    else stats.statusMismatch++;
    const said = verdict.status === 'invalid' ? `${verdict.reason}: ${verdict.message}` : verdict.status;
    return `the validator says ${said}; the oracle says ${expected.status} (${expected.why})`;
  }
  if (verdict.status !== 'valid') return null;

  // Anything the validator accepts, Xen's own rules must accept as the daemon would send it.
  const judgement = judgeForXen(modelFor(image, namespaceUuid ?? null), verdict, { ledger: [], listed: [], check: checkPmemAddLikeXen }, { kind: 'xenpf-pmem', xenVersion: 'fuzz' });
  const superpages = isAligned(image.size, HUGE_PAGE_BYTES);
  if (judgement.kind === 'report') {
    const xen = checkPmemAddLikeXen(judgement.layout.request, []);
    if (!xen.ok) {
      stats.xenRefused++;
      return `a valid layout breaks Xen's rule ${xen.rule}: ${xen.message}`;
    }
    encodePmemAdd(judgement.layout.request);
    return null;
  }
  if (!superpages && judgement.outcome.reason === 'region-misaligned') return null;
  stats.xenRefused++;
  return `a valid layout was refused by the daemon's own checks: ${judgement.outcome.reason}: ${judgement.outcome.message}`;
}

function record(stats: FuzzStats, plan: FuzzPlan, verdict: Verdict): void {
  for (const m of plan.mutations) bump(stats.mutations, mutationName(m));
  if (verdict.status === 'valid') stats.valid++;
  else if (verdict.status === 'absent') stats.absent++;
  else {
    stats.invalid++;
    bump(stats.reasons, verdict.reason);
  }
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzResult> {
  const stats = emptyStats();
  const seed = options.seed ?? (Date.now() ^ (process.pid << 8)) >>> 0;
  const every = options.progressEvery ?? 50_000;
  const started = performance.now();
  let shrinking = false;
  const property = fc.asyncProperty(fuzzPlan(options.bases.length), async (plan) => {
    // While fast-check shrinks a failure, the cases it tries are not part of the run's totals.
    const problem = await checkCase(options.bases, plan, shrinking ? emptyStats() : stats, options.scan);
    if (!shrinking) {
      stats.cases++;
      if (options.onProgress && stats.cases % every === 0) {
        stats.elapsedMs = performance.now() - started;
        options.onProgress(stats);
      }
    }
    if (problem !== null) {
      shrinking = true;
      throw new Error(problem);
    }
  });
  const details = await fc.check(property, { numRuns: options.cases, seed, includeErrorInReport: true });
  stats.elapsedMs = performance.now() - started;
  return { stats, seed, failure: details.failed ? fc.defaultReportMessage(details) ?? 'failed' : null };
}
