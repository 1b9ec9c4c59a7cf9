// Opening what the operator names as DEVICE: a pmem block device or a regular (sparse) image file.
// Every byte read goes through `read`, which counts, so tests and benchmarks can prove that a scan
// reads O(1) bytes whatever the device size.

import { closeSync, constants, fstatSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { describeError } from '../core/errno.js';
import { toSafeNumber } from '../core/units.js';
import type { DeviceReader, DeviceWriter } from './ports.js';

export class DeviceOpenError extends Error {}

// The system calls are synchronous on purpose. A scan is three or four small reads, and on pmem a
// read is a memory copy that takes microseconds; the promise API would send each one through the
// thread pool and back, which costs more than the read and serialises behind other I/O when a
// thousand devices are scanned at once. The async signatures stay, so callers and tests are free
// to supply readers that really wait.

export async function openDevice(path: string, mode: 'read'): Promise<DeviceReader>;
export async function openDevice(path: string, mode: 'write'): Promise<DeviceWriter>;
export async function openDevice(path: string, mode: 'read' | 'write'): Promise<DeviceReader | DeviceWriter> {
  let fd: number;
  try {
    // O_NONBLOCK so that a FIFO given by mistake is refused below instead of hanging the open;
    // it changes nothing for files and block devices.
    fd = openSync(path, (mode === 'read' ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NONBLOCK);
  } catch (error) {
    throw new DeviceOpenError(`cannot open ${path}${mode === 'write' ? ' for writing' : ''}: ${describeError(error)}`);
  }
  try {
    // fstat of what was opened, not stat of the path: the name may be re-pointed in between.
    const info = fstatSync(fd, { bigint: true });
    if (!info.isFile() && !info.isBlockDevice()) {
      throw new DeviceOpenError(`${path} is neither a block device nor a regular file`);
    }
    let geometry;
    try {
      geometry = info.isBlockDevice() ? blockGeometry(info.rdev) : { size: info.size, sectorSize: 512 };
    } catch (error) {
      throw new DeviceOpenError(`cannot read the size of ${path}: ${describeError(error)}`);
    }
    return new OpenDevice(path, fd, geometry.size, geometry.sectorSize, info.isBlockDevice());
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

class OpenDevice implements DeviceWriter {
  bytesRead = 0;

  constructor(
    readonly path: string,
    private readonly fd: number,
    readonly size: bigint,
    readonly sectorSize: number,
    readonly isBlockDevice: boolean,
  ) {}

  async read(offset: bigint, length: number): Promise<Buffer> {
    if (offset >= this.size || length <= 0) return Buffer.alloc(0);
    const wanted = Number(this.size - offset < BigInt(length) ? this.size - offset : BigInt(length));
    const buffer = Buffer.alloc(wanted);
    let filled = 0;
    while (filled < wanted) {
      const bytesRead = readSync(this.fd, buffer, filled, wanted - filled, toSafeNumber(offset + BigInt(filled)));
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    this.bytesRead += filled;
    return buffer.subarray(0, filled);
  }

  async write(offset: bigint, bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.fd, bytes, written, bytes.length - written, toSafeNumber(offset) + written);
    }
  }

  async sync(): Promise<void> {
    fsyncSync(this.fd);
  }

  async close(): Promise<void> {
    closeSync(this.fd);
  }
}

/**
 * Node cannot issue BLKGETSIZE64, but sysfs carries the same numbers for every block device:
 * `size` in 512-byte units whatever the logical block size, and the logical block size itself.
 */
function blockGeometry(rdev: bigint): { size: bigint; sectorSize: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  const base = `/sys/dev/block/${major}:${minor}`;
  const sectors = BigInt(readFileSync(`${base}/size`, 'utf8').trim());
  let sectorSize = 512;
  try {
    sectorSize = Number(readFileSync(`${base}/queue/logical_block_size`, 'utf8').trim());
  } catch {
    // Partitions have no queue/ of their own; 512 is what the kernel reports for pmem disks.
  }
  return { size: sectors * 512n, sectorSize };
}
