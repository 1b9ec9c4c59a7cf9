# The smallest scenario: proves the guest booted Xen's Dom0 under systemd and can report back.
uname -r | lab_put uname
cat /proc/xen/capabilities | lab_put capabilities
ps -p 1 -o comm= | lab_put pid1
