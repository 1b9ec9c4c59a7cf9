# XENPF_pmem_add on the patched hypervisor, row by row against the test hypervisor; the work
# is in xen-abi.ts (one node process: process starts are slow in a PV Dom0 under TCG).
lab_node xen-abi.js
