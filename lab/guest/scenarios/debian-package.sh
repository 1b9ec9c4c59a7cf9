# The Debian package in the Dom0: apt install of an older build, upgrade to the current one,
# remove and purge, with real dpkg, systemd and udev. The work is in debian-package.ts (one node
# process: process starts are slow here).
lab_node debian-package.js
