# A guest gets persistent memory: the daemon reports, xen-pmem attach gives a PVH guest part of
# the data area; the work is in guest-pmem.ts.
lab_node guest-pmem.js
