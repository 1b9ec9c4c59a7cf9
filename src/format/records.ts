// The records the daemon keeps about each device and each report to the hypervisor, as the
// daemon holds them, state.json stores them and `xen-pmem status` and `list` show them: types
// (and the version of state.json's shape); the serializers beside this module write them out,
// src/daemon/ makes them. The schemas that read them back (src/daemon/state-store.ts, ledger.ts)
// are checked against these types at compile time with `SameShape`: a field added here and not
// there, or there and not here, fails the build.

import type { PmemReport } from '../xen/interface.js';

/** The version of state.json's shape; a reader refuses any other. */
export const STATE_VERSION = 1;

/** Every state a device can be in, listed once (docs/daemon.md, "States"); the type, the state file's schema and the metrics take it from here. */
export const DEVICE_STATES = ['absent', 'rejected', 'reported', 'unsupported', 'retrying', 'failed', 'removed'] as const;
export type DeviceState = (typeof DEVICE_STATES)[number];

/** A physical range in bytes. */
export interface ByteRange {
  start: bigint;
  size: bigint;
}

/** Where a device lies in physical memory, and the report that tells the hypervisor so. */
export interface PhysicalLayout {
  /** The whole block device in physical memory: what Xen calls the pmem region. */
  region: ByteRange;
  reserved: ByteRange;
  data: ByteRange;
  request: PmemReport;
  /** Reservation UUID from the super block: identifies this layout across restarts. */
  uuid: string;
}

/**
 * One report to the hypervisor this daemon made, or is making: `pending` until the answer was
 * recorded. `interface` names the hypervisor interface it went through (src/xen/interfaces/).
 */
export interface LedgerEntry {
  interface: string;
  device: string;
  uuid: string;
  request: PmemReport;
  status: 'pending' | 'reported';
  at: string;
}

/** The driver the daemon unbound from a device's parent (namespace or pfn device) before its add. */
export interface UnboundDriver {
  /** The parent device's name: `namespace0.0`, `pfn0.1`. */
  device: string;
  /** The driver's name on the nd bus, whose `bind` gives the device back: `nd_pmem`. */
  driver: string;
}

export interface DeviceRecord {
  device: string;
  devPath: string | null;
  namespace: string | null;
  mode: string | null;
  region: string | null;
  state: DeviceState;
  reason: string;
  message: string;
  /** ISO time of the last change of state or reason. */
  since: string;
  layout?: PhysicalLayout;
  /** The interface its layout was (or, in a dry run, would be) reported through. */
  interface?: string;
  /** While retrying: when the next attempt is due. */
  nextAttempt?: string;
  /** Damage the scan worked around, such as a super block copy that had to be skipped. */
  notes?: string[];
  /** Reported devices: the driver the daemon unbound so that no domain maps the region. */
  unbound?: UnboundDriver;
}

export interface DaemonState {
  version: typeof STATE_VERSION;
  pid: number;
  startedAt: string;
  updatedAt: string;
  /** True once coldplug finished (the moment READY=1 was sent). */
  ready: boolean;
  capability: { kind: string; reason?: string; message?: string; xenVersion?: string } | null;
  devices: DeviceRecord[];
  ledger: LedgerEntry[];
}

/**
 * The shape of a type for `SameShape`: every property required, leaves as they are, arrays by
 * their elements. Two types of the same shape have the same fields at every depth, optional or not.
 */
type Shape<T> = T extends bigint | string | number | boolean | null | undefined
  ? T
  : T extends readonly (infer E)[]
    ? Shape<E>[]
    : { [K in keyof T]-?: Shape<Exclude<T[K], undefined>> };

/** `true` when A and B have the same fields at every depth (a schema's output and a record type). */
export type SameShape<A, B> = [Shape<A>] extends [Shape<B>] ? ([Shape<B>] extends [Shape<A>] ? true : false) : false;
