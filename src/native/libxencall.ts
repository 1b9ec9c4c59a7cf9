// The only file that loads libxencall. It implements the hypercall port (src/xen/ports.ts), so the
// bridge can run over the real library, the test hypervisor (same symbols, other path) or an
// in-process stand-in in unit tests.

import koffi from 'koffi';

import { errnoName } from '../core/errno.js';
import type { HypercallResult, PortOpening } from '../xen/ports.js';

/** Hypercall numbers (`__HYPERVISOR_*` in Xen's public/xen.h) of the two calls the port makes. */
const HYPERVISOR_PLATFORM_OP = 7;
const HYPERVISOR_XEN_VERSION = 17;

/** Debian's `libxencall1`. */
export const DEFAULT_LIBXENCALL = 'libxencall.so.1';
/** Lets tests and the lab point the daemon at the test hypervisor. */
export const LIBXENCALL_ENV = 'XEN_PMEM_LIBXENCALL';

const EBADF = 9;
const ENOMEM = 12;

/** A koffi function with its asynchronous form: the call runs on a libuv thread, the callback on the loop. */
type AsyncCall<A extends unknown[]> = ((...args: A) => number) & {
  async: (...args: [...A, (error: unknown, rc: number) => void]) => void;
};

interface XencallFunctions {
  open: (logger: null, flags: number) => unknown;
  close: (handle: unknown) => number;
  allocBuffer: (handle: unknown, size: number) => unknown;
  freeBuffer: (handle: unknown, buffer: unknown) => void;
  call1: AsyncCall<[handle: unknown, op: number, arg1: bigint]>;
  call2: AsyncCall<[handle: unknown, op: number, arg1: bigint, arg2: bigint]>;
}

// koffi keeps a library loaded for the life of the process; declaring its functions once per
// path avoids redoing the prototype parsing on every open.
const loaded = new Map<string, XencallFunctions>();

function load(libraryPath: string): XencallFunctions {
  const known = loaded.get(libraryPath);
  if (known) return known;
  const lib = koffi.load(libraryPath);
  const functions: XencallFunctions = {
    open: lib.func('void *xencall_open(void *logger, unsigned int open_flags)'),
    close: lib.func('int xencall_close(void *xcall)'),
    allocBuffer: lib.func('void *xencall_alloc_buffer(void *xcall, size_t size)'),
    freeBuffer: lib.func('void xencall_free_buffer(void *xcall, void *p)'),
    call1: lib.func('int xencall1(void *xcall, unsigned int op, uint64_t arg1)') as XencallFunctions['call1'],
    call2: lib.func('int xencall2(void *xcall, unsigned int op, uint64_t arg1, uint64_t arg2)') as XencallFunctions['call2'],
  };
  loaded.set(libraryPath, functions);
  return functions;
}

/**
 * Opens libxencall (the default library, or `libraryPath`). Outside a Xen Dom0 `xencall_open`
 * fails because /dev/xen/privcmd does not exist: that comes back as `not-dom0`, never a throw.
 * The answer is tagged: `opened` with the port, or `unavailable` with the reason and a sentence.
 * The library itself prints one line on stderr when that happens; it has no quiet mode without
 * a logger from libxentoollog, and the line says the same thing.
 */
export function openXencall(libraryPath: string = DEFAULT_LIBXENCALL): PortOpening {
  let fns: XencallFunctions;
  try {
    fns = load(libraryPath);
  } catch (error) {
    return {
      kind: 'unavailable',
      reason: 'library-missing',
      message: `cannot load ${libraryPath} (install Debian's libxencall1, or set ${LIBXENCALL_ENV}): ${(error as Error).message}`,
    };
  }

  koffi.errno(0);
  const handle = fns.open(null, 0);
  const openErrno = koffi.errno();
  if (handle === null) {
    return {
      kind: 'unavailable',
      reason: 'not-dom0',
      message: `xencall_open failed with ${errnoName(openErrno)}: this is not a Xen Dom0 with /dev/xen/privcmd (load xen-privcmd and run as root)`,
    };
  }

  let open = true;
  /** Calls whose answer has not come back: the handle outlives them (close() waits for them). */
  let inFlight = 0;
  let closeWhenIdle = false;
  const closed = (): Promise<HypercallResult> => Promise.resolve({ rc: -1, errno: EBADF, after: Buffer.alloc(0) });
  const release = (): void => {
    if (closeWhenIdle && inFlight === 0) {
      closeWhenIdle = false;
      fns.close(handle);
    }
  };

  // The hypercall itself runs on a libuv thread (koffi's async call): Xen may take a long time
  // over an add, and the daemon's loop must keep deciding other devices, pinging the watchdog and
  // hearing SIGTERM meanwhile. koffi keeps the thread's errno for the callback, so errno is read
  // there, before freeing the buffer can change it.
  const call = (start: (done: (error: unknown, rc: number) => void) => void): Promise<{ rc: number; errno: number }> =>
    new Promise<{ rc: number; errno: number }>((resolve, reject) => {
      inFlight++;
      try {
        start((error, rc) => {
          if (error) reject(error);
          else resolve({ rc, errno: koffi.errno() });
        });
      } catch (error) {
        reject(error);
      }
    }).finally(() => {
      inFlight--;
      release();
    });

  // Hypercall arguments must live in buffers from xencall_alloc_buffer (Xen may not fault on
  // ordinary user memory), so every call copies in, calls, and copies out before freeing.
  const withBuffer = async (bytes: Buffer, start: (address: bigint, done: (error: unknown, rc: number) => void) => void): Promise<HypercallResult> => {
    const buffer = fns.allocBuffer(handle, Math.max(bytes.length, 1));
    if (buffer === null) return { rc: -1, errno: koffi.errno() || ENOMEM, after: Buffer.alloc(0) };
    try {
      new Uint8Array(koffi.view(buffer, bytes.length)).set(bytes);
      const address = koffi.address(buffer);
      const { rc, errno } = await call((done) => start(address, done));
      const after = Buffer.from(new Uint8Array(koffi.view(buffer, bytes.length)));
      return { rc, errno, after };
    } finally {
      fns.freeBuffer(handle, buffer);
    }
  };

  return { kind: 'opened', port: {
    platformOp(op) {
      if (!open) return closed();
      return withBuffer(op, (address, done) => fns.call1.async(handle, HYPERVISOR_PLATFORM_OP, address, done));
    },
    async xenVersion(cmd, argBytes) {
      if (!open) return closed();
      if (argBytes === 0) {
        const { rc, errno } = await call((done) => fns.call2.async(handle, HYPERVISOR_XEN_VERSION, BigInt(cmd), 0n, done));
        return { rc, errno, after: Buffer.alloc(0) };
      }
      return withBuffer(Buffer.alloc(argBytes), (address, done) =>
        fns.call2.async(handle, HYPERVISOR_XEN_VERSION, BigInt(cmd), address, done),
      );
    },
    close() {
      if (!open) return;
      open = false;
      closeWhenIdle = true;
      release();
    },
  } };
}
