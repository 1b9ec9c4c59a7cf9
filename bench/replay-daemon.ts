// The real daemon (runDaemon, as the installed launcher runs it) with udev replaced by a replay
// of the synthetic event mix (bench/events.ts): item 4 measures its resident set after 100,000
// events. The events take the shape src/native/udev.ts gives node-udev's records and arrive one
// per turn of the event loop, as node-udev delivers them (one poll callback per netlink message).
// Bundled by the bench with the runtime's options (bench/memory.ts), so it is the same code.
//
//   node [daemon flags] replay-daemon.mjs --replay '<JSON: devices, prepared, sysRoot, seed>' --sys-root DIR --dev-root DIR [xen-pmemd options]
//
// Control, on stdin and stderr: after each `go N` line the replay sends N more events, waits until
// no event is in flight, and writes `replay: sent TOTAL heap USED TOTAL external EXTERNAL
// ARRAYBUFFERS`; the parent reads VmRSS in between.

import { createInterface } from 'node:readline';
import { setImmediate as nextTurn } from 'node:timers/promises';

import type { DeviceEvent, EventSource } from '../src/daemon/ports.js';
import { runDaemon } from '../src/daemon/run-daemon.js';
import { splitRoots } from '../fixtures/daemon-launcher.js';
import { eventMix, type Burst } from './events.js';
import { setPresentIn } from './presence.js';

export interface ReplaySpec {
  devices: string[];
  prepared: string[];
  sysRoot: string;
  seed: number;
}

/** Events of the mix, sent on request; every device is present at the start (coldplug found it). */
function replaySource(spec: ReplaySpec): EventSource {
  let stopped = false;
  return {
    start(onEvent: (event: DeviceEvent) => void) {
      const mix = eventMix({ seed: spec.seed, devices: spec.devices, partitioned: new Set(spec.prepared), present: new Set(spec.devices) });
      let sent = 0;
      let pending: DeviceEvent[] = [];
      const send = async (count: number): Promise<void> => {
        const until = sent + count;
        while (sent < until && !stopped) {
          if (pending.length === 0) {
            const burst = mix.next().value as Burst;
            for (const change of burst.presence) setPresentIn(spec.sysRoot, change.device, change.present);
            pending = burst.events.map((planned) => planned.event);
          }
          onEvent(pending.shift()!);
          sent++;
          await nextTurn();
        }
        // What V8 holds at this moment, beside the parent's VmRSS: no collection is forced.
        const usage = process.memoryUsage();
        process.stderr.write(`replay: sent ${sent} heap ${usage.heapUsed} ${usage.heapTotal} external ${usage.external} ${usage.arrayBuffers}\n`);
      };
      let queue = Promise.resolve();
      createInterface({ input: process.stdin }).on('line', (line) => {
        const match = /^go (\d+)$/.exec(line);
        if (match) queue = queue.then(() => send(Number(match[1])));
      });
    },
    stop() {
      stopped = true;
    },
  };
}

const at = process.argv.indexOf('--replay');
const spec = JSON.parse(process.argv[at + 1]!) as ReplaySpec;
const { roots, args } = splitRoots(process.argv.slice(2).filter((_, index) => index !== at - 2 && index !== at - 1));
runDaemon({ args, env: process.env, events: () => replaySource(spec), roots }).then((code) => { process.exitCode = code; });
