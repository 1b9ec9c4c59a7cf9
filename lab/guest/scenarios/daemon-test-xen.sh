# Scenarios e, f and the exactly-once half of d, with the test hypervisor standing in for Xen's
# missing pmem support: the success path at coldplug, kill -9 after a report, an fsdax namespace.
# The work is in daemon-test-xen.ts (one node process: process starts are slow here).
lab_node daemon-test-xen.js
