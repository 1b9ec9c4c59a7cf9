// The device-reader port: what a scan (and setup's writer) needs of a device. Types only.
// src/io/device.ts implements it over a file descriptor; tests and benchmarks wrap or replace it
// (slow reads, failing reads, images held in memory).

export interface DeviceReader {
  readonly path: string;
  readonly size: bigint;
  /** Logical sector size the partition table is written in. */
  readonly sectorSize: number;
  readonly isBlockDevice: boolean;
  /** Reads up to `length` bytes at `offset`; fewer only at the end of the device. */
  read(offset: bigint, length: number): Promise<Buffer>;
  readonly bytesRead: number;
  close(): Promise<void>;
}

export interface DeviceWriter extends DeviceReader {
  write(offset: bigint, bytes: Uint8Array): Promise<void>;
  /** Makes what was written durable before the command reports success. */
  sync(): Promise<void>;
}

/** A BSD lock (flock(2)): many shared holders, or one exclusive. */
export type LockMode = 'shared' | 'exclusive';

/**
 * BSD file locks on open file descriptors, as systemd's "Locking Block Device Access" has tools
 * use them on a whole-disk node (src/native/libc.ts implements it; node has no flock of its own).
 * A lock belongs to the open file description: closing the descriptor releases it.
 */
export interface FlockPort {
  /**
   * flock(fd, LOCK_SH or LOCK_EX, with LOCK_NB): never waits. 0 when the lock is granted, else the
   * errno: EWOULDBLOCK (11) while another open file holds a lock that conflicts.
   */
  tryLock(fd: number, mode: LockMode): number;
}
