// Lab equipment, not part of the product: the one call of Debian's libxenctrl the lab needs,
// XEN_DOMCTL_iomem_permission (xc_domain_iomem_permission), to see whether the Dom0 could still
// hand a region's frames to a domain after Xen took them. Xen checks the caller's own I/O memory
// permission first, so naming the Dom0 itself asks exactly that without touching another domain.

import { existsSync } from 'node:fs';

import koffi from 'koffi';

/** libxenctrl's soname changes with every Xen release: Debian 13 ships 4.20, Debian 12 4.17. */
const LIBRARIES = ['/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.20', '/usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17'];

const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 13: 'EACCES', 22: 'EINVAL' };

/**
 * Asks Xen to let domain `domid` access frames [first, first + count): `OK`, or the errno's name.
 * Granting the Dom0 what it already holds changes nothing.
 */
export function iomemPermission(domid: number, first: bigint, count: bigint): string {
  const path = LIBRARIES.find((candidate) => existsSync(candidate));
  if (!path) throw new Error(`no libxenctrl (looked for ${LIBRARIES.join(', ')})`);
  const lib = koffi.load(path);
  const open = lib.func('void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int open_flags)');
  const close = lib.func('int xc_interface_close(void *xch)');
  const permit = lib.func('int xc_domain_iomem_permission(void *xch, uint32_t domid, unsigned long first_mfn, unsigned long nr_mfns, uint8_t allow_access)');
  const xch = open(null, null, 0) as unknown;
  if (xch === null) throw new Error(`xc_interface_open failed (errno ${koffi.errno()})`);
  try {
    const rc = permit(xch, domid, first, count, 1) as number;
    if (rc === 0) return 'OK';
    const errno = koffi.errno();
    return ERRNO_NAMES[errno] ?? `errno ${errno}`;
  } finally {
    close(xch);
  }
}
