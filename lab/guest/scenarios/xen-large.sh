# One add of a large region to the patched hypervisor, and Linux's own memmap over pmem beside it;
# the work is in xen-large.ts.
lab_node xen-large.js
