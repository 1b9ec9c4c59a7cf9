# Scenarios a–d on a real hypervisor without pmem support (Debian's own Xen: 4.17 or 4.20): install
# as a user does, the udev rule starting the daemon, coldplug, hotplug, setup in the Dom0, kill -9.
# The work is in daemon-xen.ts (one node process: process starts are slow here).
lab_node daemon-xen.js
