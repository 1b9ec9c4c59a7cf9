# Shell helpers for guest scenarios: sourced by run-scenario, so every scenario has them.
# Results go to /lab/results, the per-run directory the host shares over 9p and polls.

LAB_RESULTS=/lab/results
LAB_GUEST=/lab/guest

lab_log() {
	echo "lab: $*"
}

# lab_put NAME: stores stdin as result NAME; the host never sees a half-written file.
lab_put() {
	cat >"$LAB_RESULTS/.$1.partial" && mv "$LAB_RESULTS/.$1.partial" "$LAB_RESULTS/$1"
}

# lab_mark NAME [TEXT]: a marker the host waits for.
lab_mark() {
	printf '%s\n' "${2:-}" >"$LAB_RESULTS/.$1.partial" && mv "$LAB_RESULTS/.$1.partial" "$LAB_RESULTS/$1"
	lab_log "marked $1"
}

# lab_wait_for PATH SECONDS: waits until PATH exists; fails naming it after SECONDS.
lab_wait_for() {
	deadline=$(($(date +%s) + $2))
	while [ ! -e "$1" ]; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			lab_log "gave up waiting for $1 after $2 s"
			return 1
		fi
		sleep 0.2
	done
}

# lab_wait_host NAME SECONDS: waits for a file the host drops into the results share.
lab_wait_host() {
	lab_wait_for "$LAB_RESULTS/$1" "$2"
}

# lab_node SCRIPT.js ARGS...: runs one of the project's guest programs, from its bundle
# (dist/lab/guest-bundle/SCRIPT.mjs, made by npm run build): one file to load instead of dozens.
lab_node() {
	script=${1%.js}
	shift
	/usr/bin/node "$LAB_REPO/dist/lab/guest-bundle/$script.mjs" "$@"
}
