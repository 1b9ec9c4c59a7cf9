// The real entry point, xen-pmemd, as a child process on a fixture host: sysfs and /dev from the
// fixture, libxencall replaced by the test hypervisor (XEN_PMEM_LIBXENCALL), a unix datagram
// socket as $NOTIFY_SOCKET (bound by python3: Node cannot bind datagram unix sockets), and the
// state directory in a temporary folder.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { MiB } from '../src/core/units.js';
import { messageIdOf } from '../src/daemon/catalog.js';
import { loadStateSchemas, parseState, type DaemonState } from '../src/daemon/state-store.js';
import { makeDaemonHost, show, waitFor, type DaemonHost, type XenEnvOptions } from '../fixtures/daemon-host.js';
import { stackTraceLines } from '../fixtures/cli.js';

/** xen-pmemd's entry point over a fixture tree (the roots are the launcher's flags, not the daemon's). */
const DAEMON = fileURLToPath(new URL('../fixtures/daemon-launcher.js', import.meta.url));
const EX_CONFIG = 78;
const START_TIMEOUT_MS = 15_000;

// Prints one JSON string per datagram received on the socket at argv[1], after a first line
// saying it is bound.
const NOTIFY_LISTENER = `
import json, socket, sys
listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
listener.bind(sys.argv[1])
print(json.dumps("bound"), flush=True)
while True:
    print(json.dumps(listener.recv(65536).decode("utf-8", "replace")), flush=True)
`;

// parseState reads with the schemas the daemon loads only when a state file exists.
before(() => loadStateSchemas());

const hasPython = spawnSync('python3', ['-c', 'import socket'], { stdio: 'ignore' }).status === 0;

interface NotifySocket {
  path: string;
  messages: string[];
  close(): void;
}

let sockets = 0;
async function listenForNotifications(dir: string): Promise<NotifySocket> {
  const path = join(dir, `notify-${sockets++}.sock`);
  const python = spawn('python3', ['-c', NOTIFY_LISTENER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  let bound = false;
  let ended = false;
  python.on('exit', () => { ended = true; });
  createInterface({ input: python.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as string;
    if (message === 'bound') bound = true;
    else messages.push(message);
  });
  await waitFor('the notify socket to be bound', () => {
    if (ended && !bound) throw new Error(`python3 could not bind ${path}`);
    return bound;
  }, 10_000);
  return { path, messages, close: () => python.kill('SIGKILL') };
}

interface RunningDaemon {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  notify: NotifySocket;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: { daemon: ChildProcess; notify: NotifySocket }[] = [];
const hosts: DaemonHost[] = [];
afterEach(async () => {
  for (const { daemon, notify } of running.splice(0)) {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    notify.close();
  }
  await Promise.all(hosts.splice(0).map((host) => host.cleanup()));
});

async function fixtureHost(label: string): Promise<DaemonHost> {
  const host = await makeDaemonHost(`daemon-${label}`, {
    regions: [{ id: 0, start: 0x1_0000_0000n, size: 256n * MiB, namespaces: [{ id: 0, mode: 'raw' }] }],
  });
  hosts.push(host);
  return host;
}

function daemonArgs(host: DaemonHost, extra: string[] = []): string[] {
  return [
    DAEMON,
    '--sys-root', host.roots.sysRoot,
    '--dev-root', host.roots.devRoot,
    '--state-dir', host.stateDir,
    '--config', join(host.dir, 'config.json'),
    ...extra,
  ];
}

/** The environment of a daemon started by hand: no journald stream, the test hypervisor. */
function daemonEnv(host: DaemonHost, xen: XenEnvOptions, notifySocket: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...host.xenEnv(xen) };
  if (notifySocket !== null) env.NOTIFY_SOCKET = notifySocket;
  return env;
}

async function startDaemon(host: DaemonHost, options: { xen?: XenEnvOptions; args?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<RunningDaemon> {
  const notify = await listenForNotifications(host.dir);
  const child = spawn(process.execPath, daemonArgs(host, options.args), {
    env: { ...daemonEnv(host, options.xen ?? {}, notify.path), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push({ daemon: child, notify });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => stdout.push(line));
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout, stderr, notify, exited };
}

async function untilReady(daemon: RunningDaemon): Promise<string> {
  let exited = false;
  void daemon.exited.then(() => { exited = true; });
  await waitFor('READY=1 on the notify socket', () => {
    if (exited) throw new Error(`xen-pmemd exited before READY=1; stderr: ${daemon.stderr.join('\n')}; stdout: ${daemon.stdout.join('\n')}`);
    return daemon.notify.messages.some((message) => message.split('\n').includes('READY=1'));
  }, START_TIMEOUT_MS);
  return daemon.notify.messages.find((message) => message.split('\n').includes('READY=1'))!;
}

async function terminate(daemon: RunningDaemon): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  daemon.child.kill('SIGTERM');
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('xen-pmemd did not exit within 10 s of SIGTERM')), 10_000).unref());
  return Promise.race([daemon.exited, timeout]);
}

async function stateFile(host: DaemonHost): Promise<DaemonState> {
  const parsed = parseState(await readFile(join(host.stateDir, 'state.json'), 'utf8'));
  assert.equal(parsed.kind, 'loaded', show(parsed));
  return (parsed as Extract<typeof parsed, { kind: 'loaded' }>).state;
}

interface JsonLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

function jsonLines(daemon: RunningDaemon): JsonLine[] {
  return daemon.stdout.map((line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      assert.fail(`stdout line is not JSON: ${line}`);
    }
    assert.ok(typeof parsed === 'object' && parsed !== null && 'level' in parsed && 'msg' in parsed, `a log entry: ${line}`);
    return parsed as JsonLine;
  });
}

describe('xen-pmemd as a child process', { skip: hasPython ? false : 'python3 is missing: it binds the notify socket' }, () => {
  test('reports the prepared device, says READY, writes state.json, stops on SIGTERM with STOPPING=1', async () => {
    const host = await fixtureHost('report');
    await host.prepare('pmem0');
    const daemon = await startDaemon(host);

    const ready = await untilReady(daemon);
    assert.match(ready, /^READY=1\nSTATUS=pmem devices: 1 reported$/);

    const state = await stateFile(host);
    assert.equal(state.ready, true);
    assert.equal(state.pid, daemon.child.pid);
    assert.deepEqual(state.capability, { kind: 'xenpf-pmem', xenVersion: '4.17.7-pmem' });
    assert.deepEqual(state.devices.map((each) => [each.device, each.state, each.reason]), [['pmem0', 'reported', 'reported']]);
    assert.deepEqual(state.ledger.map((entry) => [entry.device, entry.status, entry.request.spfn, entry.request.epfn]), [['pmem0', 'reported', 0x100000n, 0x110000n]]);
    assert.deepEqual(host.regionAdds().map((call) => [call.spfn, call.epfn, call.rsvSpfn, call.rsvEpfn, call.dataSpfn, call.dataEpfn, call.result]), [
      // 256 MiB at 4 GiB: reserved 12 MiB from 2 MiB in (PFN +0x200..+0xe00), data to 254 MiB (+0xfe00).
      [0x100000n, 0x110000n, 0x100200n, 0x100e00n, 0x100e00n, 0x10fe00n, 'OK'],
    ]);

    // The metrics file, from the moment the daemon is up, for node_exporter's textfile collector.
    const metricsPath = join(host.stateDir, 'metrics', 'xen-pmem.prom');
    await waitFor('the metrics file to show the report', async () => /^xen_pmem_reports_total 1$/m.test(await readFile(metricsPath, 'utf8').catch(() => '')));
    const running = await readFile(metricsPath, 'utf8');
    for (const line of ['xen_pmem_up 1', 'xen_pmem_ready 1', 'xen_pmem_devices{state="reported"} 1', 'xen_pmem_hypervisor_accepts_reports 1']) {
      assert.ok(running.split('\n').includes(line), `${line} in\n${running}`);
    }

    const exit = await terminate(daemon);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(daemon.notify.messages.includes('STOPPING=1'), `STOPPING=1 among ${show(daemon.notify.messages)}`);
    assert.match(await readFile(metricsPath, 'utf8'), /^xen_pmem_up 0$/m, 'the last file says the daemon stopped');

    const lines = jsonLines(daemon);
    assert.ok(lines.length >= 3, 'the daemon logged its start, the device and its stop');
    const reported = lines.find((line) => line.device === 'pmem0' && line.state === 'reported');
    assert.ok(reported, 'a JSON line for pmem0 being reported');
    assert.equal(reported.level, 'notice');
    assert.equal(reported.messageId, messageIdOf('reported'), 'the catalog id travels with the JSON line too');
    assert.equal(reported.spfn, '0x100000', 'PFNs in hex');
    assert.equal(reported.dataEpfn, '0x10fe00');
    assert.equal(lines.at(-1)?.msg, 'xen-pmemd stopped');
    assert.deepEqual(stackTraceLines(daemon.stderr.join('\n')), []);
  });

  test('a restarted daemon reports nothing twice: reported-earlier, no new pmem_add', async () => {
    const host = await fixtureHost('restart');
    await host.prepare('pmem0');
    const first = await startDaemon(host);
    await untilReady(first);
    assert.equal((await terminate(first)).code, 0);
    first.notify.close();

    const second = await startDaemon(host);
    await untilReady(second);
    const state = await stateFile(host);
    assert.deepEqual(state.devices.map((each) => [each.device, each.state, each.reason]), [['pmem0', 'reported', 'reported-earlier']]);
    assert.equal(host.regionAdds().length, 1, 'one pmem_add over both runs');
    assert.equal((await terminate(second)).code, 0);
  });

  test('killed while Xen holds its add: the restart asks Xen what it holds, finds the region, and sends nothing again', async () => {
    const host = await fixtureHost('hold');
    await host.prepare('pmem0');
    // The test hypervisor takes the region, then holds its answer until this file exists.
    const release = join(host.dir, 'release-the-add');
    const held = await startDaemon(host, { xen: { slowSpfn: 0x100000n, holdFile: release } });
    await waitFor('Xen to take the region', () => host.xenRegions().length === 1, START_TIMEOUT_MS);
    assert.equal(held.notify.messages.some((message) => message.split('\n').includes('READY=1')), false, 'held before coldplug ended');
    held.child.kill('SIGKILL');
    await held.exited;
    const ledger = (await readFile(join(host.stateDir, 'ledger.jsonl'), 'utf8')).trim().split('\n').map((line) => (JSON.parse(line) as { op: string }).op);
    assert.deepEqual(ledger, ['pending'], 'the answer never reached the ledger');
    held.notify.close();

    const restarted = await startDaemon(host);
    await untilReady(restarted);
    const state = await stateFile(host);
    assert.deepEqual(state.devices.map((each) => [each.device, each.state, each.reason]), [['pmem0', 'reported', 'reported-before-restart']]);
    assert.deepEqual(state.ledger.map((entry) => entry.status), ['reported']);
    assert.deepEqual(host.regionAdds(), [], 'no add after the restart: Xen listed the pending one');
    assert.equal(host.xenRegions().length, 1);
    assert.equal((await terminate(restarted)).code, 0);
  });

  test('a slow add at coldplug: WATCHDOG=1 keeps coming during the call; SIGTERM brings STOPPING=1 before the answer, the answer is recorded, exit 0', async (t) => {
    const host = await fixtureHost('sigterm-during-add');
    await host.prepare('pmem0');
    // A keep-alive every 100 ms, and an add that Xen holds until the test releases it: what
    // happens "during the call" is then an order, whatever the machine's speed.
    const release = join(host.dir, 'release-the-add');
    const daemon = await startDaemon(host, { xen: { slowSpfn: 0x100000n, holdFile: release }, env: { WATCHDOG_USEC: '200000' } });
    const pings = (): number => daemon.notify.messages.filter((message) => message === 'WATCHDOG=1').length;
    const ledgerOps = async (): Promise<string[]> => (await readFile(join(host.stateDir, 'ledger.jsonl'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { op: string }).op);
    await waitFor('the pending line of the slow add', async () => (await ledgerOps()).includes('pending'), START_TIMEOUT_MS);
    const before = pings();
    await waitFor('three WATCHDOG=1 during the call', () => pings() - before >= 3);
    assert.equal(host.regionAdds().length, 0, 'the add is still under way');

    const asked = performance.now();
    daemon.child.kill('SIGTERM');
    await waitFor('STOPPING=1', () => daemon.notify.messages.includes('STOPPING=1'));
    t.diagnostic(`STOPPING=1 ${(performance.now() - asked).toFixed(0)} ms after SIGTERM`);
    assert.equal(host.regionAdds().length, 0, 'STOPPING=1 came before the answer');
    await writeFile(release, '');
    // Not terminate(): a second SIGTERM is the operator's way to end it at once.
    const exit = await Promise.race([daemon.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no exit within 10 s of SIGTERM')), 10_000).unref())]);
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(daemon.notify.messages.some((message) => message.split('\n').includes('READY=1')), false, 'stopped during coldplug: never ready');
    const notice = jsonLines(daemon).find((line) => line.reason === 'stopping-during-report');
    assert.equal(notice?.device, 'pmem0', 'the journal says which report was under way');
    assert.deepEqual(await ledgerOps(), ['pending', 'reported'], 'the answer reached the ledger before the exit');
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['OK']);
    daemon.notify.close();

    const restarted = await startDaemon(host);
    await untilReady(restarted);
    assert.deepEqual((await stateFile(host)).devices.map((each) => [each.device, each.state, each.reason]), [['pmem0', 'reported', 'reported-earlier']]);
    assert.deepEqual(host.regionAdds().map((call) => call.result), ['OK'], 'one add over both runs');
    assert.equal((await terminate(restarted)).code, 0);
  });

  test('upstream Xen 4.20 (op 64 is XENPF_get_dom0_console, no op 67) never leads to reported', async () => {
    const host = await fixtureHost('dom0-console');
    await host.prepare('pmem0');
    const daemon = await startDaemon(host, { xen: { mode: 'dom0-console' } });
    const ready = await untilReady(daemon);
    assert.match(ready, /STATUS=pmem devices: 1 unsupported/);
    const state = await stateFile(host);
    assert.equal(state.capability?.reason, 'enosys');
    assert.deepEqual(state.devices.map((each) => [each.state, each.reason]), [['unsupported', 'enosys']]);
    assert.deepEqual(state.ledger, []);
    assert.equal(host.regionAdds().length, 0, 'no region was sent');
    assert.ok(host.xenCalls().every((call) => call.cmd !== 64), 'op 64 is never sent');
    assert.equal((await terminate(daemon)).code, 0);
    assert.ok(!jsonLines(daemon).some((line) => line.state === 'reported'));
  });

  test('--dry-run makes no hypercall at all and logs the request it would make', async () => {
    const host = await fixtureHost('dry-run');
    await host.prepare('pmem0');
    const daemon = await startDaemon(host, { args: ['--dry-run'] });
    await untilReady(daemon);
    const state = await stateFile(host);
    assert.deepEqual(state.devices.map((each) => [each.state, each.reason]), [['unsupported', 'dry-run']]);
    assert.match(state.devices[0]!.message, /XENPF_pmem add spfn=0x100000 epfn=0x110000 rsv_spfn=0x100200 rsv_epfn=0x100e00 data_spfn=0x100e00 data_epfn=0x10fe00/);
    assert.deepEqual(host.xenCalls(), []);
    assert.equal((await terminate(daemon)).code, 0);
  });

  test('a bad config file: exit 78 with one line naming the field, nothing else done', async () => {
    const host = await fixtureHost('bad-config');
    await host.prepare('pmem0');
    const configPath = await host.writeConfig({ allow: { namespaces: ['pmem0'] } });
    const result = spawnSync(process.execPath, daemonArgs(host), { env: daemonEnv(host, {}, null), encoding: 'utf8', timeout: 20_000 });
    assert.equal(result.status, EX_CONFIG, result.stderr);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, `xen-pmemd: configuration error: ${configPath}: allow.namespaces.0: expected a UUID such as 8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e\n`);
    assert.deepEqual(host.xenCalls(), []);
  });

  test('an unknown log level is a configuration error too', async () => {
    const host = await fixtureHost('bad-level');
    const result = spawnSync(process.execPath, daemonArgs(host, ['--log-level', 'loud']), { env: daemonEnv(host, {}, null), encoding: 'utf8', timeout: 20_000 });
    assert.equal(result.status, EX_CONFIG);
    assert.equal(result.stderr.trim().split('\n').length, 1);
    assert.match(result.stderr, /^xen-pmemd: configuration error: --log-level: unknown log level "loud"/);
  });
});
