# Guest scenario for bench/lab-hotplug.ts (item 5): records udev's view of a hotplugged pmem
# device next to xen-pmemd's decision about it. Run by the lab's run-scenario, with lib.sh.
#
# udevadm monitor stamps each event with CLOCK_MONOTONIC as it receives it: KERNEL lines when the
# kernel's uevent arrives, UDEV lines when udevd has finished with it. journald stamps the daemon's
# decision with the same clock (__MONOTONIC_TIMESTAMP), so all three compare directly.
: "${BENCH_HOTPLUGS:=3}"
udevadm monitor --kernel --udev --subsystem-match=block --subsystem-match=nd >/run/bench-udev-monitor.txt 2>&1 &
monitor=$!
# Installed the way an operator installs it (docs/operations.md), then started.
node "$LAB_REPO/dist/src/cli/xen-pmem.js" install >/run/bench-install.txt 2>&1 || lab_log "xen-pmem install failed"
systemctl enable --now xen-pmemd.service || lab_log "xen-pmemd.service did not start"
# The unit's start→READY from systemd's own stamps (ActiveEnter is READY=1 for Type=notify),
# beside systemd-udevd's start at this boot.
systemctl show -p InactiveExitTimestampMonotonic -p ExecMainStartTimestampMonotonic -p ActiveEnterTimestampMonotonic \
	xen-pmemd.service systemd-udevd.service | lab_put unit-times.txt
i=1
while [ "$i" -le "$BENCH_HOTPLUGS" ]; do
	lab_mark "bench-ready-$i"
	lab_wait_host "bench-plugged-$i" 120
	# Until the daemon has logged a decision for the new disk, or 60 s. Each journalctl costs a
	# second or more in this emulated Dom0 with one vCPU, and one running while udevd and the
	# daemon work on the event would take the CPU from what is measured: the first look comes
	# after 3 s, later ones a second apart. The limit is on the clock, not on a count.
	sleep 3
	deadline=$(( $(date +%s) + 60 ))
	while [ "$(date +%s)" -lt "$deadline" ] && ! journalctl -u xen-pmemd.service -o cat --no-pager "PMEM_DEVICE=pmem$i" | grep -q .; do
		sleep 1
	done
	i=$((i + 1))
done
sleep 1
kill "$monitor"
lab_put udev-monitor.txt </run/bench-udev-monitor.txt
journalctl -u xen-pmemd.service -o json --no-pager -b | lab_put xen-pmemd-journal.json
