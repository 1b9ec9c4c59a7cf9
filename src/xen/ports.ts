// The hypercall port: what the bridge needs of the hypervisor's call interface, and nothing of how
// it is reached. Types only. src/native/libxencall.ts implements it over libxencall (the real one,
// or the test hypervisor under the same symbols); tests implement it in-process.
//
// Every call answers through a promise: a hypercall lasts as long as Xen works on it (an add builds
// frame tables for the whole region), and the daemon's event loop must go on meanwhile.

export interface HypercallResult {
  /** What the hypercall returned; -1 on failure, as libxencall reports it. */
  rc: number;
  /** errno right after the call; meaningful only when rc is -1. */
  errno: number;
  /** The hypercall buffer's bytes after the call (Xen may have written into it). */
  after: Buffer;
}

export interface HypercallPort {
  /** platform_op: copies `op` into a hypercall buffer, calls, copies the buffer back. */
  platformOp(op: Buffer): Promise<HypercallResult>;
  /** xen_version(cmd, arg buffer of argBytes): rc and the buffer after the call. */
  xenVersion(cmd: number, argBytes: number): Promise<HypercallResult>;
  /** No new call is accepted; the handle is released once the calls under way have answered. */
  close(): void;
}

/** Opening the port: the port, or why there is none (outside a Dom0, or without libxencall). */
export type PortOpening =
  | { kind: 'opened'; port: HypercallPort }
  | { kind: 'unavailable'; reason: 'not-dom0' | 'library-missing'; message: string };
