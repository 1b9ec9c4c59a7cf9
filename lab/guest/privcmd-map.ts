// Lab equipment, not part of the product: asks Xen to map machine frames into this Dom0 process
// the way any Dom0 tool maps foreign memory, through /dev/xen/privcmd's MMAPBATCH_V2 with
// DOMID_IO as the owner. Xen then applies the caller's I/O memory permissions (iomem_caps)
// frame by frame and answers each one in an error array, so a denied frame is an errno here and
// never a fault. The lab uses it to see which frames of a pmem region Xen still lets the Dom0 map.

import koffi from 'koffi';

/** `domid_t` of dom_io: the owner of I/O frames. */
export const DOMID_IO = 0x7ff1;
const PAGE = 4096;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const PROT_READ = 1;
const MAP_SHARED = 1;
/** _IOC(_IOC_NONE, 'P', 4, sizeof(struct privcmd_mmapbatch_v2)) with the struct's 32 bytes. */
const IOCTL_PRIVCMD_MMAPBATCH_V2 = (32 << 16) | (0x50 << 8) | 4;

export interface FrameMapping {
  frame: bigint;
  /** 0 when Xen mapped the frame, else the positive errno it answered (EPERM: not permitted). */
  errno: number;
  /** The frame's first bytes, read through the mapping; only when it was mapped. */
  firstBytes?: string;
}

interface Libc {
  open: (path: string, flags: number) => number;
  close: (fd: number) => number;
  mmap: (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => unknown;
  munmap: (addr: unknown, length: number) => number;
  ioctl: (fd: number, request: number, arg: unknown) => number;
}

let libc: Libc | null = null;

function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    open: lib.func('int open(const char *path, int flags)'),
    close: lib.func('int close(int fd)'),
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
  };
  return libc;
}

/** Maps each frame read-only as owned by DOMID_IO and reports what Xen said about it. */
export function mapIoFrames(frames: readonly bigint[], peekBytes = 16): FrameMapping[] {
  return mapFrames(frames, DOMID_IO, peekBytes);
}

/**
 * Maps each frame read-only as owned by `domid` (DOMID_IO for I/O frames, DOMID_XEN for what Xen
 * shares with privileged guests, a domain's id for its pages) and reports what Xen said.
 */
export function mapFrames(frames: readonly bigint[], domid: number, peekBytes = 16): FrameMapping[] {
  const c = loadLibc();
  const count = frames.length;
  const fd = c.open('/dev/xen/privcmd', O_RDWR | O_CLOEXEC);
  if (fd < 0) throw new Error(`open /dev/xen/privcmd failed (errno ${koffi.errno()})`);
  const base = c.mmap(null, count * PAGE, PROT_READ, MAP_SHARED, fd, 0);
  try {
    if (base === null || koffi.address(base) === 0xffffffffffffffffn) throw new Error(`mmap of /dev/xen/privcmd failed (errno ${koffi.errno()})`);
    const arr = koffi.alloc('uint64_t', count);
    const err = koffi.alloc('int', count);
    const batch = koffi.alloc('uint8_t', 32);
    try {
      const arrView = new DataView(koffi.view(arr, count * 8));
      const errView = new DataView(koffi.view(err, count * 4));
      frames.forEach((frame, i) => {
        arrView.setBigUint64(i * 8, frame, true);
        errView.setInt32(i * 4, 0, true);
      });
      const batchView = new DataView(koffi.view(batch, 32));
      batchView.setUint32(0, count, true);
      batchView.setUint16(4, domid, true);
      batchView.setBigUint64(8, koffi.address(base), true);
      batchView.setBigUint64(16, koffi.address(arr), true);
      batchView.setBigUint64(24, koffi.address(err), true);
      if (c.ioctl(fd, IOCTL_PRIVCMD_MMAPBATCH_V2, batch) < 0) {
        throw new Error(`IOCTL_PRIVCMD_MMAPBATCH_V2 failed (errno ${koffi.errno()})`);
      }
      const pages = new Uint8Array(koffi.view(base, count * PAGE));
      return frames.map((frame, i) => {
        const errno = -errView.getInt32(i * 4, true);
        if (errno !== 0) return { frame, errno };
        // Only a mapped page is touched: a read of an unmapped one would be SIGBUS.
        const first = Buffer.from(pages.subarray(i * PAGE, i * PAGE + peekBytes)).toString('hex');
        return { frame, errno, firstBytes: first };
      });
    } finally {
      koffi.free(arr);
      koffi.free(err);
      koffi.free(batch);
    }
  } finally {
    if (base !== null) c.munmap(base, count * PAGE);
    c.close(fd);
  }
}
