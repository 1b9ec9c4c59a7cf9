// What a hypervisor interface is, as the bridge walks them: a descriptor per way of reporting pmem
// to Xen (libblkid's per-format descriptor is the model). Types only. The descriptors live in
// src/xen/interfaces/, one module each, and src/xen/interfaces/index.ts lists them in order.

import type { HypercallPort, HypercallResult } from './ports.js';

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
export type InterfaceName = 'pmem-add';

/**
 * What the hypervisor implements. Proven: the interface's name, as state.json and status show it.
 * Not: a reason code and a sentence. `probe-failed` is the one answer that is not definite (a
 * denial, an odd errno): it is asked again; every other answer is kept for the bridge's life.
 */
export type Capability =
  | { kind: InterfaceName; xenVersion: string }
  | { kind: 'unsupported'; reason: string; message: string };

/** What one report came to. `rejected` with reason `overlaps-earlier-add` proves an earlier add. */
export type BridgeAnswer =
  | { kind: 'reported' }
  | { kind: 'dry-run'; message: string }
  | { kind: 'unsupported'; reason: string; message: string }
  | { kind: 'rejected'; errno: number; reason: string; message: string }
  | { kind: 'retry'; errno: number; reason: string; message: string }
  | { kind: 'error'; errno: number; reason: string; message: string };

/** The hypervisor's own rules on a report: the first one broken, with its number. */
export type RuleCheck =
  | { ok: true }
  | { ok: false; rule: number; reason: string; message: string };

/** A probe's finding: present, or why not (reason `probe-failed` when it could not tell). */
export type Presence =
  | { present: true }
  | { present: false; reason: string; message: string };

export interface HypervisorInterface {
  /** The name a capability, ledger lines, state.json, status and the journal give the interface. */
  readonly name: InterfaceName;
  /** How sentences name the operation: `XENPF_pmem_add`. */
  readonly title: string;
  /**
   * Proves the operation is there, or says why it is not; must never register anything. The
   * bridge has already named the hypervisor (`Xen 4.17.7`: `xenVersion` is `4.17.7`).
   */
  probe(port: HypercallPort, xenVersion: string): Promise<Presence>;
  /** The bytes of one report. Throws RangeError for a value the encoding cannot hold (a caller's bug). */
  encode(report: PmemReport): Buffer;
  /** Makes the call with those bytes; resolves with the hypervisor's answer. */
  send(port: HypercallPort, bytes: Buffer): Promise<HypercallResult>;
  /** The hypervisor's rules, in its order. `alreadyAdded` is what this side knows it holds. */
  check(report: PmemReport, alreadyAdded: readonly PfnRange[]): RuleCheck;
  /** What the hypervisor's answer to one report means. */
  readAnswer(report: PmemReport, result: HypercallResult, alreadyAdded: readonly PfnRange[]): BridgeAnswer;
  /** The report in the interface's own words, for logs: `spfn=0x100000 epfn=0x110000 …`. */
  describe(report: PmemReport): string;
}
