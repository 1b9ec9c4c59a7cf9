# Which sandbox options node, koffi, libxencall and node-udev survive under real systemd: each
# case runs dom0-probe.js as a transient service (hardening-matrix.ts). systemd-run --wait talks
# to systemd over D-Bus; starting dbus brings up sysinit.target, as on any host.
systemctl start dbus.service
lab_node hardening-matrix.js
