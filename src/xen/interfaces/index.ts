// The hypervisor interfaces the bridge knows, in the order it tries them: the first one the
// hypervisor proves present is the one reports go through. One today, XENPF_pmem (platform op 67);
// a second one is a module beside xenpf-pmem.ts and an entry here, ahead of it if it is preferred
// when both are present (docs/hypercall.md, "A second interface").

import type { Capability, HypervisorInterface } from '../interface.js';
import { xenpfPmem } from './xenpf-pmem.js';

export const HYPERVISOR_INTERFACES: readonly HypervisorInterface[] = [xenpfPmem];

export function interfaceNamed(name: string): HypervisorInterface | undefined {
  return HYPERVISOR_INTERFACES.find((each) => each.name === name);
}

/**
 * The interface a capability speaks of: the one it proved, or, when none is proven (or in a dry
 * run, which proves nothing), the first of the table, by whose rules a layout is still judged.
 */
export function interfaceFor(capability: Capability | null): HypervisorInterface {
  const proven = capability !== null && capability.kind !== 'unsupported' ? interfaceNamed(capability.kind) : undefined;
  return proven ?? HYPERVISOR_INTERFACES[0]!;
}
