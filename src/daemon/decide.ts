// The daemon's decision for one device, as pure functions: admit (config and device model, before
// any I/O), then judge what the scan found against the physical map and what Xen already holds,
// then read the hypervisor's answer. The controller's parts only move data between these and the ports.

import type { Verdict } from '../core/validate.js';
import { halfOpenRange, hex, hexRange, HUGE_PAGE_BYTES, isAligned, PAGE_BYTES, PAGE_SHIFT, rangesOverlap } from '../core/units.js';
import type { DeviceState, LedgerEntry, PhysicalLayout, UnboundDriver } from '../format/records.js';
import { layoutText } from '../format/serializers.js';
import { deviceKey, type SupportedPmemNamespace, type PmemNamespaceModel } from '../sysfs/types.js';
import type { BridgeAnswer, Capability, PmemReport, RuleCheck } from '../xen/interface.js';
import { sameLayout } from '../xen/interfaces/xenpf-pmem.js';
import type { CatalogName } from './catalog.js';
import { configRefusal, type Config } from './config.js';

export type { DeviceState, LedgerEntry, PhysicalLayout, UnboundDriver } from '../format/records.js';

/** How loud the journal line for an outcome is. */
export type Severity = 'debug' | 'info' | 'notice' | 'warn' | 'error';

export interface Outcome {
  state: DeviceState;
  reason: string;
  message: string;
  severity: Severity;
  /** The entry of the journal's message catalog that explains it (src/daemon/catalog.ts). */
  catalog: CatalogName;
  layout?: PhysicalLayout;
  /** The interface the layout was (or would be) reported through, when a report was made or found. */
  interface?: string;
  /** What the scan noticed on a valid device that the operator should know: a damaged copy. */
  notes?: string[];
  /** The driver the daemon unbound from the device's parent before the add (docs/daemon.md). */
  unbound?: UnboundDriver;
}

export type Judgement =
  | { kind: 'outcome'; outcome: Outcome }
  /** Make the hypercall. `confirming` when a crash left the ledger entry pending. */
  | { kind: 'report'; layout: PhysicalLayout; confirming: boolean };

/** Before touching the device: is it a pmem device we can map, and does the config allow it? */
export function admit(model: PmemNamespaceModel, config: Config, xenGuestType: string | null): Outcome | null {
  const name = deviceKey(model);
  if (model.unsupported) {
    return { state: 'rejected', reason: model.unsupported.code, catalog: 'rejected-device', message: `${name}: not usable for Xen: ${model.unsupported.message}`, severity: 'warn' };
  }
  const refusal = configRefusal(config, { device: name, region: model.region.name, namespaceUuid: model.namespaceUuid });
  if (refusal) return { state: 'rejected', reason: 'not-allowed', catalog: 'rejected-config', message: `${name}: not reported to Xen: ${refusal}`, severity: 'notice' };
  // A report unbinds the pfn device, and Linux then frees its memmap's page-table pages still
  // read-only in a PV guest: the next one it hands out faults and the Dom0 stalls (docs/hypervisor.md).
  if (model.mode === 'fsdax' && xenGuestType === 'PV') {
    return {
      state: 'rejected', reason: 'fsdax-in-pv-dom0', catalog: 'rejected-device', severity: 'error',
      message: `${name}: not reported to Xen: ${model.namespace} is in fsdax mode and this Dom0 is a PV guest, where unbinding its pfn device before the report crashes Linux; make it a raw namespace (ndctl create-namespace -f -e ${model.namespace} -m raw) and set it up again with xen-pmem setup`,
    };
  }
  return null;
}

/**
 * What the daemon knows Xen holds, to judge a layout against: its own ledger, and the regions Xen
 * listed when it was asked (after a lost ledger) that no ledger entry explains.
 */
export interface XenHoldings {
  ledger: readonly LedgerEntry[];
  /** Regions Xen lists that no ledger entry explains (a run whose ledger is gone reported them). */
  listed: readonly PmemReport[];
  /** The hypervisor's rules (the bridge's current interface): judged here, once, before any hypercall. */
  check(report: PmemReport, alreadyAdded: readonly PmemReport[]): RuleCheck;
}

/**
 * From a scan verdict to what to do. Checks only the daemon can make: the physical map (4 KiB
 * pages, a 2 MiB-aligned region), what Xen already holds (the ledger, and Xen's own list when the
 * ledger was lost), and Xen's own rules, so that nothing is sent that the hypervisor would refuse
 * or that could be a second add. `capability` null: a dry run, which asks Xen nothing.
 */
export function judgeForXen(model: SupportedPmemNamespace, verdict: Verdict, xen: XenHoldings, capability: Capability | null): Judgement {
  const name = model.block.name;
  if (verdict.status === 'absent') {
    return outcome('absent', 'no-superblock', 'absent', `${name}: no xen-pmem super block (${verdict.message})`, 'info');
  }
  if (verdict.status === 'invalid') {
    return outcome('rejected', verdict.reason, 'rejected-superblock', `${name}: super block rejected [${verdict.reason}]: ${verdict.message}`, 'error');
  }
  const mapped = mapToPhysical(model, verdict);
  if ('reason' in mapped) return outcome('rejected', mapped.reason, 'rejected-physical-map', `${name}: ${mapped.message}`, 'error');
  const region = hexRange(mapped.region.start, mapped.region.size);

  const same = xen.ledger.find((entry) => entry.uuid === mapped.uuid && sameRequest(entry.request, mapped.request));
  if (same?.status === 'reported') {
    return { kind: 'outcome', outcome: { state: 'reported', reason: 'reported-earlier', catalog: 'reported-earlier', message: `${name}: region ${region} was reported to Xen at ${same.at}; Xen keeps it until reboot`, severity: 'info', layout: mapped, interface: same.interface } };
  }
  if (xen.listed.some((held) => sameLayout(held, mapped.request))) {
    return { kind: 'outcome', outcome: { state: 'reported', reason: 'reported-earlier', catalog: 'reported-earlier', message: `${name}: Xen already holds region ${region} with exactly this layout (an earlier run reported it); Xen keeps it until reboot`, severity: 'info', layout: mapped } };
  }
  const others = xen.ledger.filter((entry) => entry !== same);
  const clash = others.find(({ request }) => rangesOverlap(request.spfn, request.epfn, mapped.request.spfn, mapped.request.epfn));
  if (clash) {
    return outcome('rejected', 'overlaps-reported', 'rejected-overlap',
      `${name}: region ${region} overlaps ${halfOpenRange(clash.request.spfn, clash.request.epfn)} reported for ${clash.device} (reservation ${clash.uuid}); Xen has no remove, so a new layout there needs a reboot`, 'error', mapped);
  }
  const held = xen.listed.find((each) => rangesOverlap(each.spfn, each.epfn, mapped.request.spfn, mapped.request.epfn));
  if (held) {
    return outcome('rejected', 'overlaps-reported', 'rejected-overlap',
      `${name}: region ${region} overlaps ${halfOpenRange(held.spfn, held.epfn)}, which Xen holds with another layout (reported by an earlier run); Xen has no remove, so a new layout there needs a reboot`, 'error', mapped);
  }
  const xenView = xen.check(mapped.request, [...others.map(({ request }) => request), ...xen.listed]);
  if (!xenView.ok) {
    return outcome('rejected', `xen-rule-${xenView.rule}`, 'rejected-xen-rule', `${name}: Xen would refuse this layout (rule ${xenView.rule}): ${xenView.message}`, 'error', mapped);
  }
  if (capability?.kind === 'unsupported') {
    return outcome('unsupported', capability.reason, 'unsupported', `${name}: valid layout, region ${region}, not reported: ${capability.message}`, 'warn', mapped);
  }
  return { kind: 'report', layout: mapped, confirming: same?.status === 'pending' };
}

/**
 * Physical addresses of the three ranges. The region is the block device itself: its byte 0 is at
 * physStart, and Xen's hot-add path needs it in whole 2 MiB superpages.
 */
export function mapToPhysical(model: SupportedPmemNamespace, verdict: Extract<Verdict, { status: 'valid' }>): PhysicalLayout | { reason: string; message: string } {
  const start = model.block.physStart;
  const size = model.block.size;
  const sb = verdict.superblock;
  if (!isAligned(start, HUGE_PAGE_BYTES) || !isAligned(size, HUGE_PAGE_BYTES)) {
    return { reason: 'region-misaligned', message: `region ${hexRange(start, size)} (start ${hex(start)}, size ${hex(size)}) is not in whole 2 MiB superpages, which Xen requires` };
  }
  const regionEnd = start + size;
  if (model.region.start > start || model.region.start + model.region.size < regionEnd) {
    return { reason: 'outside-nd-region', message: `block range ${hexRange(start, size)} is not inside ${model.region.name} ${hexRange(model.region.start, model.region.size)}` };
  }
  const reserved = { start: start + sb.reservedOffset, size: sb.reservedSize };
  const data = { start: start + sb.dataOffset, size: sb.dataSize };
  for (const [what, area] of [['reserved', reserved], ['data', data]] as const) {
    if (!isAligned(area.start, PAGE_BYTES) || !isAligned(area.size, PAGE_BYTES)) {
      return { reason: 'area-misaligned', message: `${what} range ${hexRange(area.start, area.size)} is not in whole 4 KiB pages` };
    }
  }
  const pfn = (address: bigint) => address >> PAGE_SHIFT;
  return {
    region: { start, size },
    reserved,
    data,
    uuid: sb.uuid,
    request: {
      spfn: pfn(start), epfn: pfn(regionEnd),
      rsvSpfn: pfn(reserved.start), rsvEpfn: pfn(reserved.start + reserved.size),
      dataSpfn: pfn(data.start), dataEpfn: pfn(data.start + data.size),
    },
  };
}

/**
 * What Xen's answer means for the device. `confirming`: a crash left the add pending, and Xen
 * could not be asked what it holds; its EEXIST (exactly this region) proves the earlier add.
 */
export function interpretAnswer(name: string, layout: PhysicalLayout, answer: BridgeAnswer, confirming: boolean): Outcome {
  const where = layoutText(layout);
  const base = { layout };
  switch (answer.kind) {
    case 'reported':
      if (answer.already && confirming) {
        return { ...base, state: 'reported', reason: 'reported-before-restart', catalog: 'reported-before-restart', message: `${name}: ${where} was already added to Xen by a run that stopped before recording it (Xen answered EEXIST already_added: it holds exactly this region)`, severity: 'notice' };
      }
      if (answer.already) {
        return { ...base, state: 'reported', reason: 'reported-earlier', catalog: 'reported-earlier', message: `${name}: Xen already holds ${where} with exactly this layout (EEXIST already_added); Xen keeps it until reboot`, severity: 'notice' };
      }
      return { ...base, state: 'reported', reason: 'reported', catalog: 'reported', message: `${name}: reported ${where} to Xen`, severity: 'notice' };
    case 'unsupported':
      return { ...base, state: 'unsupported', reason: answer.reason, catalog: 'unsupported', message: `${name}: ${where} not reported: ${answer.message}`, severity: 'warn' };
    case 'rejected':
      return { ...base, state: 'rejected', reason: answer.reason, catalog: 'rejected-by-xen', message: `${name}: Xen refused ${where}: ${answer.message}`, severity: 'error' };
    case 'retry':
      return { ...base, state: 'retrying', reason: answer.reason, catalog: 'retrying', message: `${name}: Xen could not take ${where} now: ${answer.message}`, severity: 'warn' };
    case 'error':
      return { ...base, state: 'failed', reason: answer.reason, catalog: 'failed', message: `${name}: reporting ${where} failed: ${answer.message}`, severity: 'error' };
  }
}

/** A dry run: the exact add the device would get, and nothing sent. */
export function dryRunOutcome(name: string, layout: PhysicalLayout, described: string): Outcome {
  // Nothing reached Xen, so the device must not read as reported.
  return { layout, state: 'unsupported', reason: 'dry-run', catalog: 'dry-run', message: `${name}: dry run, would report ${layoutText(layout)}: no hypercall made: ${described}`, severity: 'notice' };
}

/**
 * The outcome when a device's block device is gone. When the daemon unbound its driver itself
 * before the add and its namespace is still there (`namespacePresent`), it stays reported, with a
 * note. Otherwise a reported device's removal is an error (Xen still uses its reserved area), any
 * other one a plain removal.
 */
export function removalOutcome(name: string, previous: { state: DeviceState; reason: string; message: string; layout?: PhysicalLayout; interface?: string; unbound?: UnboundDriver } | undefined, namespacePresent = false): Outcome {
  if (previous?.state === 'reported' && previous.unbound && namespacePresent) {
    const { reason, message, layout, unbound } = previous;
    return {
      state: 'reported', reason, message, catalog: 'reported', severity: 'info', unbound,
      ...(layout ? { layout } : {}), ...(previous.interface ? { interface: previous.interface } : {}),
      notes: [unboundNote(unbound)],
    };
  }
  if (previous?.state === 'reported' && previous.layout) {
    const layout = previous.layout;
    return {
      state: 'removed', reason: 'removed-while-reported', catalog: 'removed-after-report', severity: 'error', layout,
      message: `${name}: removed after its region ${hexRange(layout.region.start, layout.region.size)} was reported to Xen; Xen still manages that memory and has no remove operation: do not reuse it, keep the NVDIMM in place and reboot the host to clear it`,
    };
  }
  return { state: 'removed', reason: 'removed', catalog: 'removed', message: `${name}: removed`, severity: 'info' };
}

/** The note on a reported device whose driver the daemon unbound. */
export function unboundNote(unbound: UnboundDriver): string {
  return `Xen holds this region; the Dom0 no longer sees the device (${unbound.device} unbound from ${unbound.driver.split('/').pop()} before the report)`;
}

export const sameRequest = sameLayout;

function outcome(state: DeviceState, reason: string, catalog: CatalogName, message: string, severity: Severity, layout?: PhysicalLayout): Judgement {
  return { kind: 'outcome', outcome: layout ? { state, reason, catalog, message, severity, layout } : { state, reason, catalog, message, severity } };
}
