import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { createNotifier, keepAliveIntervalMs, watchdogUsecFor } from '../src/daemon/notify.js';

function recordingSender(result = 1): { sent: string[]; notify(state: string): number } {
  const sent: string[] = [];
  return { sent, notify: (state) => (sent.push(state), result) };
}

describe('watchdog period', () => {
  it('is $WATCHDOG_USEC when $WATCHDOG_PID is unset, empty or ours, and absent otherwise', () => {
    assert.equal(watchdogUsecFor({ WATCHDOG_USEC: '30000000' }, 42), 30_000_000n);
    assert.equal(watchdogUsecFor({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '' }, 42), 30_000_000n);
    assert.equal(watchdogUsecFor({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 30_000_000n);
    assert.equal(watchdogUsecFor({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' }, 42), null);
  });

  it('is absent for a missing, zero or malformed $WATCHDOG_USEC', () => {
    for (const usec of [undefined, '', '0', '-5', '1.5', '30s', ' 30']) {
      assert.equal(watchdogUsecFor(usec === undefined ? {} : { WATCHDOG_USEC: usec }, 1), null, `WATCHDOG_USEC=${usec}`);
    }
  });

  it('sends keep-alives at half the period, in whole milliseconds, never below 1 ms', () => {
    assert.equal(keepAliveIntervalMs(30_000_000n), 15_000);
    assert.equal(keepAliveIntervalMs(200_000n), 100);
    assert.equal(keepAliveIntervalMs(3_001n), 1);
    assert.equal(keepAliveIntervalMs(1n), 1);
    assert.equal(keepAliveIntervalMs(2n ** 60n), 2_147_483_647);
  });
});

describe('createNotifier', () => {
  it('does nothing without $NOTIFY_SOCKET, even when a watchdog is configured', () => {
    const sender = recordingSender();
    const notifier = createNotifier({ WATCHDOG_USEC: '1000' }, { sender });
    notifier.ready('up');
    notifier.status('busy');
    notifier.startWatchdog();
    notifier.stopping();
    notifier.stop();
    assert.equal(notifier.active, false);
    assert.equal(notifier.watchdogIntervalMs, null);
    assert.deepEqual(sender.sent, []);
  });

  it('sends READY=1 with the status, STATUS= and STOPPING=1, each status on one line', () => {
    const sender = recordingSender();
    const notifier = createNotifier({ NOTIFY_SOCKET: '/run/test.sock' }, { sender });
    notifier.ready('watching 2 pmem devices');
    notifier.status('pmem0: reported\nto Xen');
    notifier.stopping();
    assert.deepEqual(sender.sent, ['READY=1\nSTATUS=watching 2 pmem devices', 'STATUS=pmem0: reported to Xen', 'STOPPING=1']);
  });

  it('never throws: a failing or throwing sender is reported through onSendFailure', () => {
    const failures: Array<[string, number | Error]> = [];
    const failing = createNotifier({ NOTIFY_SOCKET: '/x' }, { sender: { notify: () => -111 }, onSendFailure: (s, r) => failures.push([s, r]) });
    failing.ready('a');
    const throwing = createNotifier(
      { NOTIFY_SOCKET: '/x' },
      {
        sender: { notify: () => { throw new Error('boom'); } },
        onSendFailure: () => { throw new Error('the callback fails too'); },
      },
    );
    assert.doesNotThrow(() => throwing.status('b'));
    assert.equal(failures.length, 1);
    assert.equal(failures[0]![0], 'READY=1\nSTATUS=a');
    assert.equal(failures[0]![1], -111);
  });

  it('sends nothing after stop()', () => {
    const sender = recordingSender();
    const notifier = createNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '10000000' }, { sender, pid: 7 });
    notifier.stop();
    notifier.ready('late');
    notifier.startWatchdog();
    assert.deepEqual(sender.sent, []);
  });

  it('starts no watchdog when $WATCHDOG_PID names another process', () => {
    const sender = recordingSender();
    const notifier = createNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '1000', WATCHDOG_PID: '1' }, { sender, pid: 7 });
    notifier.startWatchdog();
    notifier.stop();
    assert.equal(notifier.watchdogIntervalMs, null);
    assert.deepEqual(sender.sent, []);
  });
});

// The real path: libsystemd's sd_notify in a child process whose $NOTIFY_SOCKET is a unix
// datagram socket bound by python3, which prints every datagram it receives.
const RECEIVER = `
import json, os, select, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
print("bound", flush=True)
start = time.monotonic()
while True:
    readable, _, _ = select.select([sock, sys.stdin], [], [])
    if sock in readable:
        data = sock.recv(65536)
        print(json.dumps({"ms": round((time.monotonic() - start) * 1000), "text": data.decode()}), flush=True)
    elif sys.stdin in readable and os.read(sys.stdin.fileno(), 1) == b"":
        sock.setblocking(False)
        try:
            while True:
                print(json.dumps({"ms": -1, "text": sock.recv(65536).decode()}), flush=True)
        except BlockingIOError:
            pass
        break
`;

const NOTIFY_MODULE = fileURLToPath(new URL('../src/daemon/notify.js', import.meta.url));

function childScript(keepAliveMs: number): string {
  return `
import { createNotifier } from ${JSON.stringify(NOTIFY_MODULE)};
const notifier = createNotifier(process.env);
notifier.ready('watching');
notifier.status('pmem0: reported');
notifier.startWatchdog();
setTimeout(() => { notifier.stopping(); notifier.stop(); }, ${keepAliveMs});
`;
}

interface Datagram {
  ms: number;
  text: string;
}

async function receiveFromChild(dir: string, env: NodeJS.ProcessEnv, script: string): Promise<Datagram[]> {
  const socketPath = join(dir, `notify-${Math.random().toString(36).slice(2)}.sock`);
  const scriptPath = join(dir, `child-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(scriptPath, script);
  const receiver = spawn('python3', ['-c', RECEIVER, socketPath], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  receiver.stdout.setEncoding('utf8');
  const bound = new Promise<void>((resolve, reject) => {
    receiver.stdout.on('data', (chunk: string) => {
      output += chunk;
      if (output.startsWith('bound\n')) resolve();
    });
    receiver.on('exit', (code) => reject(new Error(`python3 receiver exited with ${code} before binding`)));
  });
  await bound;
  const child = spawnSync(process.execPath, [scriptPath], { env: { ...env, NOTIFY_SOCKET: socketPath }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(child.status, 0, `child failed: ${child.stderr}`);
  const closed = new Promise<void>((resolve) => receiver.on('close', () => resolve()));
  receiver.stdin.end();
  await closed;
  return output
    .split('\n')
    .slice(1)
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Datagram);
}

const python = spawnSync('python3', ['-c', 'import socket; socket.AF_UNIX'], { encoding: 'utf8' });
const noPython = python.status === 0 ? false : 'python3 with AF_UNIX sockets is needed to receive sd_notify datagrams';

describe('sd_notify over a real unix datagram socket', { skip: noPython }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xen-pmem-notify-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('delivers READY, STATUS, WATCHDOG=1 every half period, then STOPPING=1 and nothing after', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, WATCHDOG_USEC: '200000' };
    delete env.WATCHDOG_PID;
    const datagrams = await receiveFromChild(dir, env, childScript(450));
    const texts = datagrams.map((d) => d.text);
    assert.deepEqual(texts.slice(0, 3), ['READY=1\nSTATUS=watching', 'STATUS=pmem0: reported', 'WATCHDOG=1']);
    assert.equal(texts.at(-1), 'STOPPING=1');
    const keepAlives = texts.slice(2, -1);
    assert.ok(keepAlives.every((text) => text === 'WATCHDOG=1'), `unexpected datagrams: ${JSON.stringify(keepAlives)}`);
    // 450 ms at a 100 ms period: the immediate one plus about four; a loaded machine may lose one.
    assert.ok(keepAlives.length >= 4 && keepAlives.length <= 6, `expected 4 to 6 keep-alives, got ${keepAlives.length}`);
    const times = datagrams.slice(2, -1).map((d) => d.ms);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps.every((gap) => gap >= 80), `keep-alives came faster than every 100 ms: ${gaps.join(', ')} ms`);
  });

  it('sends no WATCHDOG=1 when $WATCHDOG_PID names another process', async () => {
    const datagrams = await receiveFromChild(dir, { ...process.env, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' }, childScript(250));
    assert.deepEqual(
      datagrams.map((d) => d.text),
      ['READY=1\nSTATUS=watching', 'STATUS=pmem0: reported', 'STOPPING=1'],
    );
  });
});
