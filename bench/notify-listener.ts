// A stand-in for systemd's end of $NOTIFY_SOCKET that stamps each datagram with the time it
// arrived, on CLOCK_MONOTONIC: the clock Node's process.hrtime reads, so the parent can subtract
// its own spawn time from the moment READY=1 came in. python3 binds the socket because Node
// cannot bind unix datagram sockets (the same reason test/daemon.test.ts uses it).

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const LISTENER = `
import json, socket, sys, time
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
listener.bind(sys.argv[1])
print(json.dumps([str(time.monotonic_ns()), "bound"]), flush=True)
while True:
    data = listener.recv(65536)
    print(json.dumps([str(time.monotonic_ns()), data.decode("utf-8", "replace")]), flush=True)
`;

export interface Notification {
  /** CLOCK_MONOTONIC nanoseconds at arrival. */
  atNs: bigint;
  message: string;
}

export interface NotifyListener {
  readonly path: string;
  readonly received: Notification[];
  /** Resolves with the first datagram that carries `assignment` (e.g. READY=1). */
  waitFor(assignment: string, timeoutMs: number): Promise<Notification>;
  close(): void;
}

export async function listenForNotifications(path: string): Promise<NotifyListener> {
  const python = spawn('python3', ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const received: Notification[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  let exited = false;
  python.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  python.on('exit', () => { exited = true; for (const wake of waiters.splice(0)) wake(); });
  let bound = false;
  createInterface({ input: python.stdout }).on('line', (line) => {
    const [atNs, message] = JSON.parse(line) as [string, string];
    if (message === 'bound' && !bound) bound = true;
    else received.push({ atNs: BigInt(atNs), message });
    for (const wake of waiters.splice(0)) wake();
  });
  const next = (): Promise<void> => new Promise((resolve) => waiters.push(resolve));
  while (!bound) {
    if (exited) throw new Error(`python3 could not bind the notify socket ${path}: ${stderr.trim()}`);
    await next();
  }
  return {
    path,
    received,
    async waitFor(assignment, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const timer = setTimeout(() => { for (const wake of waiters.splice(0)) wake(); }, timeoutMs);
      try {
        for (;;) {
          const found = received.find((each) => each.message.split('\n').includes(assignment));
          if (found) return found;
          if (exited) throw new Error(`the notify listener exited before ${assignment}: ${stderr.trim()}`);
          if (Date.now() >= deadline) throw new Error(`no ${assignment} on ${path} within ${timeoutMs} ms`);
          await next();
        }
      } finally {
        clearTimeout(timer);
      }
    },
    close() {
      python.kill('SIGKILL');
    },
  };
}
