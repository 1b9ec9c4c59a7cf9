# Scenarios a–e on the patched hypervisor, which takes XENPF_pmem_add: install as a user does,
# coldplug, the file system, hotplug, two planners' layouts, kill -9 after Xen's answer, fsdax.
# The work is in daemon-patched-xen.ts (one node process: process starts are slow here).
lab_node daemon-patched-xen.js
