// The only file that loads libc. Node has no flock(2), which the block-device locking convention
// (src/io/lock.ts) needs: this implements the io layer's FlockPort with koffi over libc's flock.

import koffi from 'koffi';

import type { FlockPort, LockMode } from '../io/ports.js';

/** glibc's soname on Debian (and every other glibc system). */
export const LIBC_SONAME = 'libc.so.6';

// <sys/file.h>
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;

let cached: FlockPort | undefined;

/** libc's flock, loaded once per process. Throws when libc cannot be loaded. */
export function loadLibc(): FlockPort {
  if (cached) return cached;
  const lib = koffi.load(LIBC_SONAME);
  const flock = lib.func('int flock(int fd, int operation)') as (fd: number, operation: number) => number;
  const operation = (mode: LockMode): number => (mode === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB;
  cached = {
    tryLock(fd, mode) {
      koffi.errno(0);
      return flock(fd, operation(mode)) === 0 ? 0 : koffi.errno();
    },
  };
  return cached;
}
