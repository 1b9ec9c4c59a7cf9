# npm run demo: install xen-pmem as a user does, the daemon on the patched Xen, the NVDIMMs at boot
# and a hotplug; what the Dom0 runs. The work is in demo-dom0.ts (one node process).
lab_node demo-dom0.js
