// How node runs the daemon. The daemon's live data is small (about 10 MiB of heap with a thousand
// devices), but V8's default young generation grows to tens of MiB under a stream of events and
// keeps that memory resident. A 1 MiB semi-space keeps the resident size flat; the extra minor
// collections cost microseconds. The installed launcher and the benchmarks both use this list.
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
