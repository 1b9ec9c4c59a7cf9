// What a hypervisor interface is, as the bridge walks them: a descriptor per way of reporting pmem
// to Xen (libblkid's per-format descriptor is the model). Types only. The descriptors live in
// src/xen/interfaces/, one module each, and src/xen/interfaces/index.ts lists them in order.

import type { HypercallPort } from './ports.js';

/**
 * A report to the hypervisor: a pmem region and the two areas inside it, in 4 KiB page frames
 * (PFN = physical address >> 12), every end exclusive. Each interface encodes it its own way.
 */
export interface PmemReport {
  spfn: bigint;
  epfn: bigint;
  rsvSpfn: bigint;
  rsvEpfn: bigint;
  dataSpfn: bigint;
  dataEpfn: bigint;
}

export interface PfnRange {
  spfn: bigint;
  epfn: bigint;
}

/** The names of the interfaces in src/xen/interfaces/; one today. */
export type InterfaceName = 'xenpf-pmem';

/**
 * What the hypervisor implements. Proven: the interface's name, as state.json and status show it.
 * Not: a reason code and a sentence. `probe-failed` is the one answer that is not definite (a
 * denial, an odd errno): it is asked again; every other answer is kept for the bridge's life.
 */
export type Capability =
  | { kind: InterfaceName; xenVersion: string }
  | { kind: 'unsupported'; reason: string; message: string };

/**
 * What one add came to. `reported` with `already`: Xen answered that it holds exactly this
 * region (all six PFNs) already, which is as good a proof as a success.
 */
export type BridgeAnswer =
  | { kind: 'reported'; already: boolean }
  | { kind: 'unsupported'; reason: string; message: string }
  | { kind: 'rejected'; errno: number; reason: string; message: string }
  | { kind: 'retry'; errno: number; reason: string; message: string }
  | { kind: 'error'; errno: number; reason: string; message: string };

/**
 * The hypervisor's own rules on a report: the first one broken, with its number, its reason
 * code, the errno and reason number Xen answers it with, and a sentence with the PFNs.
 */
export type RuleCheck =
  | { ok: true }
  | { ok: false; rule: number; reason: string; errno: number; xenReason: number; message: string };

/** A probe's finding: present, or why not (reason `probe-failed` when it could not tell). */
export type Presence =
  | { present: true }
  | { present: false; reason: string; message: string };

/** A region as the hypervisor holds it, with what its tables took and what is free. */
export interface HeldRegion {
  layout: PmemReport;
  frameTableChunks: number;
  m2pChunks: number;
  compatM2pChunks: number;
  /** Data frames no domain holds. */
  freeFrames: bigint;
}

/** A run of data frames [spfn, epfn) one domain holds. */
export interface OwnerRun {
  spfn: bigint;
  epfn: bigint;
  domid: number;
}

/** Data frames [mfn, mfn + nr) of a data range given to a guest at [gfn, gfn + nr). */
export interface GuestFrames {
  mfn: bigint;
  gfn: bigint;
  nr: bigint;
  domid: number;
}

/** What an assign came to: all frames given, or none kept and why (a reason code and a sentence). */
export type AssignAnswer =
  | { kind: 'assigned' }
  | { kind: 'refused'; errno: number; reason: string; message: string };

/** An answer to a query, or why there is none (a sentence with the numbers). */
export type Query<T> =
  | { kind: 'answered'; value: T }
  | { kind: 'unavailable'; reason: string; message: string };

export interface HypervisorInterface {
  /** The name a capability, ledger lines, state.json, status and the journal give the interface. */
  readonly name: InterfaceName;
  /** How sentences name the operation: `XENPF_pmem`. */
  readonly title: string;
  /**
   * Proves the operation is there, or says why it is not; must never register anything. The
   * bridge has already named the hypervisor (`Xen 4.17.7`: `xenVersion` is `4.17.7`).
   */
  probe(port: HypercallPort, xenVersion: string): Promise<Presence>;
  /** The hypervisor's rules, in its order. `alreadyAdded` is what this side knows it holds. */
  check(report: PmemReport, alreadyAdded: readonly PmemReport[]): RuleCheck;
  /** Sends one add and reads the answer. Throws only for a value the encoding cannot hold. */
  add(port: HypercallPort, report: PmemReport): Promise<BridgeAnswer>;
  /** Every region the hypervisor holds, in its order. */
  regions(port: HypercallPort): Promise<Query<HeldRegion[]>>;
  /** The runs of data frames domains hold inside [range.spfn, range.epfn). */
  owners(port: HypercallPort, range: PfnRange): Promise<Query<OwnerRun[]>>;
  /** Gives data frames to a guest as its memory. */
  assign(port: HypercallPort, frames: GuestFrames): Promise<AssignAnswer>;
  /** The report in the interface's own words, for logs: `spfn=0x100000 epfn=0x110000 …`. */
  describe(report: PmemReport): string;
}
