# npm run demo: install xen-pmem as a user does, the daemon on real Xen (ENOSYS), a hotplug, then
# the same daemon against the test hypervisor. The work is in demo-dom0.ts (one node process).
lab_node demo-dom0.js
