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
