# Scenarios a–d on the real hypervisor (Xen 4.17 answers XENPF_pmem_add with ENOSYS): install as
# a user does, the udev rule starting the daemon, coldplug, hotplug, setup in the Dom0, kill -9.
# The work is in daemon-xen.ts (one node process: process starts are slow here).
lab_node daemon-xen.js
