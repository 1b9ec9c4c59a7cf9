// The hypervisor interfaces the bridge knows, in the order it tries them: the first one the
// hypervisor proves present is the one reports go through. One today; a second one (the RFC's
// later sysctl, or whatever Xen upstream settles on) is a module beside pmem-add.ts and an entry
// here, ahead of pmem-add if it is preferred (docs/hypercall.md, "A second interface").

import type { Capability, HypervisorInterface, InterfaceName } from '../interface.js';
import { pmemAdd } from './pmem-add.js';

export const HYPERVISOR_INTERFACES: readonly HypervisorInterface[] = [pmemAdd];

export function interfaceNamed(name: string): HypervisorInterface | undefined {
  return HYPERVISOR_INTERFACES.find((each) => each.name === name);
}

/**
 * The interface a capability speaks of: the one it proved, or, when none is proven (or in a dry
 * run, which proves nothing), the first of the table, by whose rules a layout is still judged.
 */
export function interfaceFor(capability: Capability | null): HypervisorInterface {
  const proven = capability !== null && capability.kind !== 'unsupported' ? interfaceNamed(capability.kind as InterfaceName) : undefined;
  return proven ?? HYPERVISOR_INTERFACES[0]!;
}
