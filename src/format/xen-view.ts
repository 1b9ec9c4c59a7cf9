// Xen's view beside the daemon's, for `xen-pmem status`: which region Xen holds for each device,
// and every difference between what the daemon recorded and what Xen lists. Pure: the command
// asks Xen (the bridge's query) and hands the answer here.

import { halfOpenRange, hex } from '../core/units.js';
import type { HeldRegion, OwnerRun, PmemReport } from '../xen/interface.js';
import type { DeviceRecord } from './records.js';

/** What Xen said it holds, or why it could not be asked. */
export type XenView =
  | { available: true; xenVersion: string; regions: (HeldRegion & { owners: OwnerRun[] })[] }
  | { available: false; reason: string; message: string };

/** One device beside Xen: the region Xen holds for it, if any, and what does not agree. */
export interface DeviceBesideXen {
  /** The region Xen holds that overlaps the device's layout; null when none does. */
  held: (HeldRegion & { owners: OwnerRun[] }) | null;
  differences: string[];
}

export interface Comparison {
  devices: Map<string, DeviceBesideXen>;
  /** Regions Xen holds that no device's layout explains, each with a sentence. */
  unexplained: { region: HeldRegion & { owners: OwnerRun[] }; message: string }[];
}

function same(a: PmemReport, b: PmemReport): boolean {
  return a.spfn === b.spfn && a.epfn === b.epfn && a.rsvSpfn === b.rsvSpfn && a.rsvEpfn === b.rsvEpfn
    && a.dataSpfn === b.dataSpfn && a.dataEpfn === b.dataEpfn;
}

function overlaps(a: PmemReport, b: PmemReport): boolean {
  return a.spfn < b.epfn && b.spfn < a.epfn;
}

/** `spfn=0x… epfn=0x… rsv_spfn=0x… …`. */
export function pfnText(report: PmemReport): string {
  return `spfn=${hex(report.spfn)} epfn=${hex(report.epfn)} rsv_spfn=${hex(report.rsvSpfn)} rsv_epfn=${hex(report.rsvEpfn)} data_spfn=${hex(report.dataSpfn)} data_epfn=${hex(report.dataEpfn)}`;
}

/** Puts each device's record beside the regions Xen lists. */
export function compareWithXen(records: readonly DeviceRecord[], view: Extract<XenView, { available: true }>): Comparison {
  const devices = new Map<string, DeviceBesideXen>();
  const explained = new Set<HeldRegion>();
  for (const record of records) {
    const request = record.layout?.request;
    const held = request ? view.regions.find((region) => overlaps(region.layout, request)) ?? null : null;
    const differences: string[] = [];
    if (held) explained.add(held);
    if (request && held && !same(held.layout, request)) {
      differences.push(`Xen holds ${halfOpenRange(held.layout.spfn, held.layout.epfn)} with other frames than the device's layout: Xen ${pfnText(held.layout)}, device ${pfnText(request)}`);
    } else if (record.state === 'reported' && !held) {
      differences.push(`the daemon says ${record.device} is reported, but Xen does not hold ${request ? halfOpenRange(request.spfn, request.epfn) : 'its region'}`);
    } else if (held && record.state !== 'reported' && record.reason !== 'removed-while-reported') {
      differences.push(`Xen holds ${halfOpenRange(held.layout.spfn, held.layout.epfn)}, but the daemon says ${record.device} is ${record.state} (${record.reason})`);
    }
    devices.set(record.device, { held, differences });
  }
  const unexplained = view.regions.filter((region) => !explained.has(region)).map((region) => ({
    region,
    message: `Xen holds ${halfOpenRange(region.layout.spfn, region.layout.epfn)} (${pfnText(region.layout)}), which no device of the daemon explains`,
  }));
  return { devices, unexplained };
}
