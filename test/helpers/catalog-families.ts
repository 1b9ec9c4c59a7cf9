// Which catalog entries (src/daemon/catalog.ts) may explain an outcome in each device state, and
// the hypervisor's own: the families the catalog test and the decision tests check against.

import type { CatalogName } from '../../src/daemon/catalog.js';
import type { DeviceState } from '../../src/format/records.js';

/** Which entries may explain an outcome in each state: the catalog's families. */
export const ENTRIES_OF_STATE: Readonly<Record<DeviceState, readonly CatalogName[]>> = {
  absent: ['absent'],
  reported: ['reported', 'reported-before-restart', 'reported-earlier'],
  unsupported: ['unsupported', 'dry-run'],
  rejected: ['rejected-superblock', 'rejected-device', 'rejected-config', 'rejected-physical-map', 'rejected-overlap', 'rejected-xen-rule', 'rejected-by-xen'],
  retrying: ['retrying'],
  failed: ['failed'],
  removed: ['removed', 'removed-after-report'],
};
export const HYPERVISOR_ENTRIES: readonly CatalogName[] = ['hypervisor-supported', 'hypervisor-unsupported', 'hypervisor-not-asked'];

