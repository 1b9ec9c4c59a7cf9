// Reports the unit tests share.

import type { PmemReport } from '../../src/xen/interface.js';

/** 256 MiB at 4 GiB: reserved area 2 MiB in, 4 MiB long, data after it to the region's end. */
export const REPORT_256MIB_AT_4GIB: PmemReport = {
  spfn: 0x100000n,
  epfn: 0x110000n,
  rsvSpfn: 0x100200n,
  rsvEpfn: 0x100600n,
  dataSpfn: 0x100600n,
  dataEpfn: 0x110000n,
};
