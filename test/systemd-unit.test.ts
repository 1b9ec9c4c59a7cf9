import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { renderUnit } from '../src/install/layout.js';

const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));
const UNIT_TEXT = readFileSync(join(PROJECT_DIR, 'systemd/xen-pmemd.service'), 'utf8');
const RULE_TEXT = readFileSync(join(PROJECT_DIR, 'udev/69-xen-pmem.rules'), 'utf8');
/** The worst exposure the unit may have in `systemd-analyze security`. */
const MAX_EXPOSURE = 2.5;

type Unit = Map<string, Array<[string, string]>>;

/** Sections of `KEY=value` lines, comments and blank lines dropped, order kept. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Array<[string, string]> | undefined;
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    assert.ok(!line.endsWith('\\'), `line ${index + 1}: continuation lines make the unit harder to review`);
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = [];
      unit.set(header[1]!, section);
      continue;
    }
    const equals = line.indexOf('=');
    assert.ok(section && equals > 0, `line ${index + 1} is neither a section header nor KEY=value: ${line}`);
    section.push([line.slice(0, equals), line.slice(equals + 1)]);
  }
  return unit;
}

function values(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

function single(unit: Unit, section: string, key: string): string | undefined {
  const found = values(unit, section, key);
  assert.ok(found.length <= 1, `${key}= appears ${found.length} times in [${section}]`);
  return found[0];
}

/** All words of a list-valued key (After=, DeviceAllow= keeps whole lines). */
function words(unit: Unit, section: string, key: string): string[] {
  return values(unit, section, key).flatMap((value) => value.split(/\s+/).filter((word) => word !== ''));
}

const unit = parseUnit(UNIT_TEXT);

describe('xen-pmemd.service', () => {
  it('is a notify service whose main process alone may notify, restarted on failure, with a watchdog', () => {
    assert.equal(single(unit, 'Service', 'Type'), 'notify');
    assert.equal(single(unit, 'Service', 'NotifyAccess'), 'main');
    assert.equal(single(unit, 'Service', 'Restart'), 'on-failure');
    assert.equal(single(unit, 'Service', 'RestartPreventExitStatus'), '78');
    assert.match(single(unit, 'Service', 'WatchdogSec') ?? '', /^[1-9]\d*s$/);
    assert.deepEqual(values(unit, 'Service', 'ExecStart'), ['/usr/local/sbin/xen-pmemd']);
  });

  it('runs only in a Xen control domain, after xenfs and before the units that start guests', () => {
    assert.equal(single(unit, 'Unit', 'ConditionPathExists'), '/proc/xen/capabilities');
    assert.equal(single(unit, 'Service', 'ExecCondition'), '/bin/grep -q control_d /proc/xen/capabilities');
    assert.ok(words(unit, 'Unit', 'After').includes('proc-xen.mount'));
    assert.ok(words(unit, 'Unit', 'Wants').includes('proc-xen.mount'));
    assert.ok(words(unit, 'Unit', 'Before').includes('xendomains.service'));
    assert.deepEqual(values(unit, 'Unit', 'Requires'), [], 'a missing Xen mount unit must skip the service, not fail it');
  });

  it('keeps /run/xen-pmem across restarts and offers /etc/xen-pmem', () => {
    assert.equal(single(unit, 'Service', 'RuntimeDirectory'), 'xen-pmem');
    assert.equal(single(unit, 'Service', 'RuntimeDirectoryPreserve'), 'yes');
    // Others may pass through to metrics/ (node_exporter's user), not list it; nothing else is
    // writable but the nd drivers' bind and unbind (the daemon unbinds a namespace before its add).
    assert.equal(single(unit, 'Service', 'RuntimeDirectoryMode'), '0711');
    assert.equal(single(unit, 'Service', 'UMask'), '0077');
    assert.deepEqual(values(unit, 'Service', 'ReadWritePaths'), ['-/sys/bus/nd/drivers']);
    assert.equal(single(unit, 'Service', 'ConfigurationDirectory'), 'xen-pmem');
  });

  it('leaves node its JIT, the daemon its netlink socket and the host /dev its hotplugged disks', () => {
    assert.notEqual(single(unit, 'Service', 'MemoryDenyWriteExecute'), 'yes');
    assert.notEqual(single(unit, 'Service', 'PrivateNetwork'), 'yes');
    assert.notEqual(single(unit, 'Service', 'PrivateDevices'), 'yes');
    assert.deepEqual(words(unit, 'Service', 'RestrictAddressFamilies').sort(), ['AF_NETLINK', 'AF_UNIX']);
    assert.equal(single(unit, 'Service', 'DevicePolicy'), 'closed');
    assert.deepEqual(values(unit, 'Service', 'DeviceAllow').sort(), ['/dev/xen/hypercall rw', '/dev/xen/privcmd rw', 'block-blkext r']);
    assert.equal(single(unit, 'Service', 'CapabilityBoundingSet'), '');
  });

  it('is started by the udev rule and, when enabled, at boot', () => {
    assert.deepEqual(values(unit, 'Install', 'WantedBy'), ['multi-user.target']);
  });
});

function systemdAnalyzeSkip(): string | false {
  return spawnSync('systemd-analyze', ['--version']).status === 0 ? false : 'systemd-analyze is not installed';
}

describe('systemd-analyze on the unit', { skip: systemdAnalyzeSkip() }, () => {
  let dir: string;
  let unitPath: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xen-pmem-unit-'));
    // verify checks that ExecStart= names an executable, so point it at a launcher that exists.
    const launcher = join(dir, 'xen-pmemd');
    writeFileSync(launcher, '#!/bin/sh\nexit 0\n');
    chmodSync(launcher, 0o755);
    unitPath = join(dir, 'xen-pmemd.service');
    writeFileSync(unitPath, renderUnit(UNIT_TEXT, launcher));
    // verify also runs man for each page Documentation= names: the pages the build made.
    for (const page of ['xen-pmemd.8', 'xen-pmem.json.5']) {
      const section = join(dir, 'man', `man${page.slice(-1)}`);
      mkdirSync(section, { recursive: true });
      copyFileSync(join(PROJECT_DIR, 'dist', 'man', page), join(section, page));
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('verify reports nothing: every key known, every value parsed, the executables and manual pages present', () => {
    const run = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8', cwd: dir, env: { ...process.env, MANPATH: join(dir, 'man') } });
    assert.equal(run.status, 0, run.stderr);
    // verify exits 0 on unknown keys and unparsable values; its messages are the real verdict.
    assert.equal(`${run.stderr}${run.stdout}`.trim(), '');
  });

  it('verify does complain about a broken copy, so the check above can fail', () => {
    const broken = join(dir, 'broken', 'xen-pmemd.service');
    rmSync(join(dir, 'broken'), { recursive: true, force: true });
    spawnSync('mkdir', [join(dir, 'broken')]);
    writeFileSync(broken, UNIT_TEXT.replace('Type=notify', 'Type=notified').replace('[Install]', 'ProtectSystm=strict\n[Install]'));
    const run = spawnSync('systemd-analyze', ['verify', broken], { encoding: 'utf8' });
    assert.match(run.stderr, /Failed to parse service type/);
    assert.match(run.stderr, /Unknown key 'ProtectSystm'/);
  });

  it(`security --offline rates the exposure at most ${MAX_EXPOSURE}`, (t) => {
    const run = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unitPath], { encoding: 'utf8', cwd: dir });
    const match = /Overall exposure level for xen-pmemd\.service: (\d+(?:\.\d+)?)/.exec(run.stdout);
    assert.ok(match, `no rating in the output:\n${run.stdout}\n${run.stderr}`);
    const exposure = Number(match[1]);
    t.diagnostic(`exposure ${exposure}`);
    assert.ok(exposure <= MAX_EXPOSURE, `exposure ${exposure} is above ${MAX_EXPOSURE}:\n${run.stdout}`);
  });
});

// ---------------------------------------------------------------------------------------
// The sandbox against node itself. Without systemd as PID 1 the unit cannot run here, so the
// parts that decide whether node survives are applied by hand, taken from the unit file: its
// system call filter (expanded by systemd-analyze, loaded with libseccomp through python3
// ctypes, EPERM for the rest as SystemCallErrorNumber= says), RestrictAddressFamilies=,
// RestrictNamespaces= and LockPersonality= as systemd implements them, no capabilities at all
// and no_new_privs (setpriv). The lab runs the real unit under systemd.

/** Group name → members (system calls and nested groups), from `systemd-analyze syscall-filter`. */
function syscallGroups(): Map<string, string[]> {
  const run = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  const groups = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of run.stdout.split('\n')) {
    if (line.startsWith('@')) {
      current = [];
      groups.set(line.trim(), current);
    } else if (current && line.trim() !== '' && !line.trim().startsWith('#')) {
      current.push(line.trim());
    }
  }
  return groups;
}

function expandSyscalls(names: readonly string[], groups: ReadonlyMap<string, string[]>): Set<string> {
  const result = new Set<string>();
  const visit = (name: string): void => {
    if (!name.startsWith('@')) {
      result.add(name);
      return;
    }
    const members = groups.get(name);
    assert.ok(members, `systemd-analyze knows no group ${name}`);
    members.forEach(visit);
  };
  names.forEach(visit);
  return result;
}

const ADDRESS_FAMILIES: Readonly<Record<string, number>> = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16, AF_PACKET: 17 };
const ERRNO_NUMBERS: Readonly<Record<string, number>> = { EPERM: 1, EACCES: 13, ENOSYS: 38 };

interface SandboxSpec {
  allow: string[];
  families: number[];
  errno: number;
  restrictNamespaces: boolean;
  lockPersonality: boolean;
}

/** The allow list systemd builds: the first list allows, each `~` list then takes away. */
function sandboxSpec(groups: ReadonlyMap<string, string[]>): SandboxSpec {
  const filters = values(unit, 'Service', 'SystemCallFilter');
  assert.ok(filters.length > 0 && !filters[0]!.startsWith('~'), 'the unit starts from an allow list');
  const allowed = expandSyscalls(filters[0]!.split(/\s+/), groups);
  for (const filter of filters.slice(1)) {
    const names = filter.replace(/^~/, '').split(/\s+/);
    const set = expandSyscalls(names, groups);
    if (filter.startsWith('~')) set.forEach((name) => allowed.delete(name));
    else set.forEach((name) => allowed.add(name));
  }
  // ProtectClock= and ProtectKernelModules= add these denials of their own.
  if (single(unit, 'Service', 'ProtectClock') === 'yes') expandSyscalls(['@clock'], groups).forEach((name) => allowed.delete(name));
  if (single(unit, 'Service', 'ProtectKernelModules') === 'yes') expandSyscalls(['@module'], groups).forEach((name) => allowed.delete(name));
  const families = words(unit, 'Service', 'RestrictAddressFamilies').map((name) => {
    const number = ADDRESS_FAMILIES[name];
    assert.ok(number !== undefined, `no number known for ${name}`);
    return number;
  });
  const errnoName = single(unit, 'Service', 'SystemCallErrorNumber') ?? 'EPERM';
  const errno = ERRNO_NUMBERS[errnoName];
  assert.ok(errno !== undefined, `no number known for ${errnoName}`);
  return {
    allow: [...allowed].sort(),
    families,
    errno,
    restrictNamespaces: single(unit, 'Service', 'RestrictNamespaces') === 'yes',
    lockPersonality: single(unit, 'Service', 'LockPersonality') === 'yes',
  };
}

const SECCOMP_HARNESS = `
import ctypes, errno, json, os, socket, subprocess, sys, tempfile

spec = json.loads(sys.argv[1])
lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.restype = ctypes.c_int
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
lib.seccomp_load.restype = ctypes.c_int
lib.seccomp_load.argtypes = [ctypes.c_void_p]

class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

ALLOW = 0x7FFF0000
CMP_EQ = 4
def errno_action(number):
    return 0x00050000 | (number & 0xFFFF)

def load_filter():
    ctx = lib.seccomp_init(errno_action(spec["errno"]))
    def add(action, name, *compares):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a system call of this architecture
        array = (ArgCmp * len(compares))(*[ArgCmp(i, CMP_EQ, v, 0) for i, v in compares]) if compares else None
        if lib.seccomp_rule_add_array(ctx, action, number, len(compares), array) != 0:
            os._exit(121)
    special = {"socket", "clone3", "personality"}
    for name in spec["allow"]:
        if name not in special:
            add(ALLOW, name)
    if "socket" in spec["allow"]:
        for family in spec["families"]:
            add(ALLOW, "socket", (0, family))
    if spec["restrictNamespaces"]:
        add(errno_action(errno.ENOSYS), "clone3")  # flags unreadable: glibc falls back to clone
    elif "clone3" in spec["allow"]:
        add(ALLOW, "clone3")
    if "personality" in spec["allow"]:
        if spec["lockPersonality"]:
            add(ALLOW, "personality", (0, 0))
            add(ALLOW, "personality", (0, 0xFFFFFFFF))
        else:
            add(ALLOW, "personality")
    if not ctx or lib.seccomp_load(ctx) != 0:
        os._exit(122)

directory = tempfile.mkdtemp()
notify_path = os.path.join(directory, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
child = subprocess.run(sys.argv[2:], env=dict(os.environ, NOTIFY_SOCKET=notify_path), preexec_fn=load_filter,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
notify.setblocking(False)
datagrams = []
try:
    while True:
        datagrams.append(notify.recv(65536).decode())
except BlockingIOError:
    pass
os.unlink(notify_path)
os.rmdir(directory)
print(json.dumps({"rc": child.returncode, "stdout": child.stdout.decode(), "stderr": child.stderr.decode(), "datagrams": datagrams}))
`;

/** What the daemon's native side does at start, under the sandbox. */
function smokeScript(): string {
  const module = (path: string): string => JSON.stringify(join(PROJECT_DIR, path));
  return `
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
const result = {};
const status = readFileSync('/proc/self/status', 'utf8');
result.capEff = /CapEff:\\s+(\\S+)/.exec(status)[1];
result.noNewPrivs = /NoNewPrivs:\\s+(\\d)/.exec(status)[1];
result.seccomp = /Seccomp:\\s+(\\d)/.exec(status)[1];
let sum = 0;
for (let i = 0; i < 5e6; i++) sum += i % 7;  // hot enough for V8 to compile it
result.jit = sum;
const { loadLibSystemd } = await import(${module('dist/src/native/libsystemd.js')});
const lib = loadLibSystemd();
result.notify = lib === null ? 'no libsystemd' : lib.notify('READY=1\\nSTATUS=sandboxed');
const { createLogger, loadPino } = await import(${module('dist/src/daemon/log.js')});
await loadPino();
const lines = [];
createLogger({ level: 'info', env: {}, destination: { write: (line) => lines.push(line) } }).info({ device: 'pmem0' }, 'hello');
result.logged = lines.length;
const { loadLibc } = await import(${module('dist/src/native/libc.js')});
const { openSync, closeSync } = await import('node:fs');
const lockFd = openSync(process.argv[1], 'r');
result.flock = loadLibc().tryLock(lockFd, 'shared');
closeSync(lockFd);
const udev = createRequire(${module('package.json')})('udev');
const monitor = udev.monitor('block');
result.udevDevices = udev.list('block').length;
monitor.close();
result.inet = await new Promise((resolve) => {
  const server = net.createServer();
  server.on('error', (error) => resolve(error.code));
  server.listen(0, '127.0.0.1', () => { server.close(); resolve('listening'); });
});
console.log(JSON.stringify(result));
// node-udev aborts in uv_poll_stop when the loop drains after monitor.close(); exit explicitly.
process.exit(0);
`;
}

function sandboxSkip(): string | false {
  if (systemdAnalyzeSkip()) return 'systemd-analyze is not installed';
  if (process.getuid?.() !== 0) return 'needs root: the daemon runs as root with every capability dropped';
  if (spawnSync('setpriv', ['--version']).status !== 0) return 'setpriv (util-linux) is not installed';
  const probe = spawnSync('python3', ['-c', 'import ctypes; ctypes.CDLL("libseccomp.so.2")']);
  if (probe.status !== 0) return 'python3 with ctypes and libseccomp.so.2 is needed to load the filter';
  if (!existsSync(join(PROJECT_DIR, 'dist/src/native/libsystemd.js'))) return 'the project is not built';
  return false;
}

describe('node under the unit\'s sandbox', { skip: sandboxSkip() }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xen-pmem-sandbox-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('compiles, loads koffi, libsystemd, libc\'s flock and node-udev, notifies and logs, and cannot open an IP socket', () => {
    const spec = sandboxSpec(syscallGroups());
    assert.ok(spec.allow.includes('ioctl') && spec.allow.includes('mmap'), 'privcmd needs ioctl and mmap');
    assert.ok(!spec.allow.includes('init_module') && !spec.allow.includes('setuid'), 'the deny lists took effect');
    const script = join(dir, 'smoke.mjs');
    writeFileSync(script, smokeScript());
    const run = spawnSync(
      'setpriv',
      ['--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', 'python3', '-c', SECCOMP_HARNESS, JSON.stringify(spec), process.execPath, script],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(run.status, 0, run.stderr);
    const outcome = JSON.parse(run.stdout) as { rc: number; stdout: string; stderr: string; datagrams: string[] };
    assert.equal(outcome.rc, 0, `node exited with ${outcome.rc}: ${outcome.stderr}`);
    const result = JSON.parse(outcome.stdout) as Record<string, unknown>;
    assert.deepEqual(
      { ...result, udevDevices: typeof result.udevDevices },
      { capEff: '0000000000000000', noNewPrivs: '1', seccomp: '2', jit: 14999995, notify: 1, logged: 1, flock: 0, udevDevices: 'number', inet: 'EPERM' },
    );
    assert.deepEqual(outcome.datagrams, ['READY=1\nSTATUS=sandboxed']);
  });

  it('node aborts under memory-deny-write-execute, which is why the unit leaves it off', (t) => {
    // PR_SET_MDWE (Linux 6.3+) is the kernel's own form of MemoryDenyWriteExecute=yes.
    const probe = `
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], [sys.argv[1], "-e", "let s = 0; for (let i = 0; i < 5e6; i++) s += i; console.log(s)"])
`;
    const run = spawnSync('python3', ['-c', probe, process.execPath], { encoding: 'utf8' });
    if (run.status === 77) {
      t.skip('this kernel has no PR_SET_MDWE');
      return;
    }
    assert.notEqual(run.status, 0, 'node ran to the end under W^X');
    // Node 20 and later abort when V8 makes its first compiled code executable; Node 18 already
    // when it maps the code of its start-up snapshot, which V8 reports as an allocation failure.
    assert.match(run.stderr, /SetPermissions|Fatal error|MemoryChunk allocation failed/);
  });
});

// ---------------------------------------------------------------------------------------
// The udev rule.

function ruleLines(text: string): string[] {
  return text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
}

describe('69-xen-pmem.rules', () => {
  const lines = ruleLines(RULE_TEXT);

  it('guards with GOTO: only add and change events of whole pmem block disks pass', () => {
    assert.deepEqual(lines.slice(0, 4), [
      'ACTION!="add|change", GOTO="xen_pmem_end"',
      'SUBSYSTEM!="block", GOTO="xen_pmem_end"',
      'ENV{DEVTYPE}!="disk", GOTO="xen_pmem_end"',
      'KERNEL!="pmem[0-9]*", GOTO="xen_pmem_end"',
    ]);
  });

  it('tags the disk for systemd and wants the daemon, then ends at its label', () => {
    assert.deepEqual(lines.slice(4), ['TAG+="systemd", ENV{SYSTEMD_WANTS}+="xen-pmemd.service"', 'LABEL="xen_pmem_end"']);
  });

  it('runs nothing and jumps only to labels it defines', () => {
    assert.ok(!/\bRUN\s*\+?=/.test(RULE_TEXT), 'long work belongs to the service, not to RUN+=');
    const labels = new Set([...RULE_TEXT.matchAll(/LABEL="([^"]+)"/g)].map((m) => m[1]));
    const gotos = [...RULE_TEXT.matchAll(/GOTO="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(gotos.length > 0 && gotos.every((target) => labels.has(target)));
  });
});

// udevadm test runs the rules against a real sysfs device. It writes /run/udev and /dev (links,
// permissions), so it runs in a private mount namespace with empty /run and /dev and with the
// machine's own rules hidden: only this rule decides. There is no pmem disk outside the lab, so
// besides the rule as shipped, a copy whose name pattern names a disk that exists here shows the
// other guards let that disk through.

function udevadmPath(): string | null {
  const configured = process.env.XEN_PMEM_UDEVADM;
  if (configured) return configured;
  return spawnSync('udevadm', ['--version']).status === 0 ? 'udevadm' : null;
}

function udevSkip(): string | false {
  if (udevadmPath() === null) return 'udevadm not found (apt-get install udev, or set XEN_PMEM_UDEVADM)';
  if (process.getuid?.() !== 0) return 'needs root for a private mount namespace';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount does not work here';
  return false;
}

function blockDevices(devtype: string): string[] {
  return readdirSync('/sys/class/block').filter((name) => {
    try {
      return readFileSync(`/sys/class/block/${name}/uevent`, 'utf8').split('\n').includes(`DEVTYPE=${devtype}`);
    } catch {
      return false;
    }
  });
}

function udevadmTest(ruleText: string, action: string, device: string): Map<string, string> {
  const hide = ['/usr/lib/udev/rules.d', '/lib/udev/rules.d', '/etc/udev/rules.d'].filter((dir) => existsSync(dir));
  const script = [
    'set -e',
    'mount -t tmpfs tmpfs /run',
    'mount -t tmpfs tmpfs /dev',
    ...hide.map((dir) => `mount -t tmpfs tmpfs ${dir}`),
    'mkdir -p /run/udev/rules.d',
    'printf "%s" "$1" > /run/udev/rules.d/69-xen-pmem.rules',
    'exec "$0" test --action="$2" "$3"',
  ].join('\n');
  const run = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, udevadmPath()!, ruleText, action, `/sys/class/block/${device}`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(run.status, 0, run.stderr);
  const properties = new Map<string, string>();
  for (const line of run.stdout.split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line);
    if (match) properties.set(match[1]!, match[2]!);
  }
  assert.equal(properties.get('ACTION'), action, `udevadm test printed no properties:\n${run.stdout}\n${run.stderr}`);
  return properties;
}

function retargeted(name: string): string {
  const guard = 'KERNEL!="pmem[0-9]*"';
  assert.equal(RULE_TEXT.split(guard).length, 2, 'the rule has exactly one name guard');
  return RULE_TEXT.replace(guard, `KERNEL!="${name}"`);
}

describe('69-xen-pmem.rules under udevadm test', { skip: udevSkip() }, () => {
  const disks = blockDevices('disk');
  const otherDisk = disks.find((name) => !name.startsWith('pmem'));
  const pmemDisk = disks.find((name) => /^pmem\d/.test(name));
  const partition = blockDevices('partition')[0];

  it('wants nothing for a disk that is not pmem', { skip: otherDisk ? false : 'no block disk in sysfs' }, () => {
    const properties = udevadmTest(RULE_TEXT, 'add', otherDisk!);
    assert.equal(properties.get('SYSTEMD_WANTS'), undefined);
  });

  it('wants xen-pmemd.service on add and change of a disk the name guard lets through', { skip: otherDisk ? false : 'no block disk in sysfs' }, () => {
    for (const action of ['add', 'change']) {
      const properties = udevadmTest(retargeted(otherDisk!), action, otherDisk!);
      assert.equal(properties.get('SYSTEMD_WANTS'), 'xen-pmemd.service', action);
      assert.match(properties.get('TAGS') ?? '', /:systemd:/, action);
    }
  });

  it('wants nothing on remove', { skip: otherDisk ? false : 'no block disk in sysfs' }, () => {
    assert.equal(udevadmTest(retargeted(otherDisk!), 'remove', otherDisk!).get('SYSTEMD_WANTS'), undefined);
  });

  it('wants nothing for a partition, whatever its name', { skip: partition ? false : 'no partition in sysfs' }, () => {
    assert.equal(udevadmTest(retargeted(partition!), 'add', partition!).get('SYSTEMD_WANTS'), undefined);
  });

  it('wants xen-pmemd.service for a real pmem disk, as shipped', { skip: pmemDisk ? false : 'no pmem disk here (the lab has them)' }, () => {
    assert.equal(udevadmTest(RULE_TEXT, 'add', pmemDisk!).get('SYSTEMD_WANTS'), 'xen-pmemd.service');
  });
});
