import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { installCommand } from '../src/cli/commands/install.js';
import { uninstallCommand } from '../src/cli/commands/uninstall.js';
import type { CommandIO } from '../src/cli/command.js';
import { realHost, type CommandOutcome, type HostPort } from '../src/install/host.js';
import { askManagersToReload, install, releaseUnit, uninstall } from '../src/install/install.js';
import { checkPrefix, checkRoot, InstallError, layoutFor, renderLauncher, renderUnit, shellQuote } from '../src/install/layout.js';
import { parseManifest } from '../src/install/manifest.js';
import { runtimePackages } from '../src/install/packages.js';

/** dist/test/install.test.js → the project directory. */
const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));

function fakeHost(systemd: boolean, udevd: boolean, status = 0): HostPort & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    systemdRunning: () => systemd,
    udevdRunning: () => udevd,
    run(argv): CommandOutcome {
      calls.push([...argv]);
      return { status, output: status === 0 ? '' : 'Failed to connect to bus' };
    },
  };
}

/** Every path below `dir`, relative, directories with a trailing slash. */
function tree(dir: string, prefix = ''): string[] {
  const paths: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) paths.push(`${relative}/`, ...tree(dir, relative));
    else paths.push(relative);
  }
  return paths;
}

function expectInstallError(code: string, run: () => unknown): void {
  assert.throws(run, (error: unknown) => error instanceof InstallError && error.code === code, `expected InstallError ${code}`);
}

describe('install paths and generated files', () => {
  it('accepts plain absolute prefixes and refuses the rest with prefix-invalid', () => {
    assert.equal(checkPrefix('/usr/local'), '/usr/local');
    assert.equal(checkPrefix('/opt/xen-pmem/'), '/opt/xen-pmem');
    for (const bad of ['usr/local', '/', '/usr//local', '/usr/../etc', '/opt/a b', '/opt/%n', "/opt/it's"]) {
      expectInstallError('prefix-invalid', () => checkPrefix(bad));
    }
    assert.equal(checkRoot('/tmp/stage/'), '/tmp/stage/');
    expectInstallError('root-invalid', () => checkRoot('stage'));
  });

  it('puts the program under the prefix and the unit and rule where an operator\'s own files go', () => {
    assert.deepEqual(layoutFor('/opt/xp'), {
      prefix: '/opt/xp',
      libDir: '/opt/xp/lib/xen-pmem',
      sbinDir: '/opt/xp/sbin',
      manifest: '/opt/xp/lib/xen-pmem/install-manifest.json',
      unit: '/etc/systemd/system/xen-pmemd.service',
      rule: '/etc/udev/rules.d/69-xen-pmem.rules',
    });
  });

  it('writes launchers that exec node on the installed script with all arguments', () => {
    assert.equal(
      renderLauncher('xen-pmemd', '/usr/bin/node', '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js'),
      '#!/bin/sh\n# xen-pmemd: written by "xen-pmem install", removed by "xen-pmem uninstall".\n' +
        "exec '/usr/bin/node' '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js' \"$@\"\n",
    );
    assert.equal(
      renderLauncher('xen-pmemd', '/usr/bin/node', '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js', ['--max-semi-space-size=1']),
      '#!/bin/sh\n# xen-pmemd: written by "xen-pmem install", removed by "xen-pmem uninstall".\n' +
        "exec '/usr/bin/node' '--max-semi-space-size=1' '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js' \"$@\"\n",
    );
    assert.equal(shellQuote("/opt/it's/node"), "'/opt/it'\\''s/node'");
    const echoed = spawnSync('sh', ['-c', `printf %s ${shellQuote("a'b $HOME \"c\"")}`], { encoding: 'utf8' });
    assert.equal(echoed.stdout, "a'b $HOME \"c\"");
  });

  it('renders exactly the ExecStart= line of the unit and refuses a template without exactly one', () => {
    const template = '[Service]\nType=notify\nExecStart=/usr/local/sbin/xen-pmemd\nExecStartPost=/bin/true\n';
    assert.equal(renderUnit(template, '/opt/xp/sbin/xen-pmemd'), '[Service]\nType=notify\nExecStart=/opt/xp/sbin/xen-pmemd\nExecStartPost=/bin/true\n');
    expectInstallError('project-incomplete', () => renderUnit('[Service]\nType=notify\n', '/x'));
    expectInstallError('project-incomplete', () => renderUnit('ExecStart=/a\nExecStart=/b\n', '/x'));
  });
});

describe('runtimePackages', () => {
  const lock = (packages: Record<string, object>): string => JSON.stringify({ lockfileVersion: 3, packages: { '': { name: 'x' }, ...packages } });

  it('keeps production packages, nested ones included, drops dev ones and marks optional ones', () => {
    const packages = runtimePackages(
      lock({
        'node_modules/pino': { version: '10.4.0' },
        'node_modules/@types/node': { dev: true },
        'node_modules/@koromix/koffi-linux-x64': { optional: true },
        'node_modules/fs-minipass/node_modules/minipass': {},
        'node_modules/typescript': { dev: true },
        'node_modules/shared': { devOptional: true },
      }),
    );
    assert.deepEqual(packages, [
      { path: 'node_modules/pino', optional: false },
      { path: 'node_modules/@koromix/koffi-linux-x64', optional: true },
      { path: 'node_modules/fs-minipass/node_modules/minipass', optional: false },
      { path: 'node_modules/shared', optional: true },
    ]);
  });

  it('refuses lock files it cannot trust with lock-invalid', () => {
    expectInstallError('lock-invalid', () => runtimePackages('{'));
    expectInstallError('lock-invalid', () => runtimePackages(JSON.stringify({ lockfileVersion: 1, dependencies: {} })));
    expectInstallError('lock-invalid', () => runtimePackages(JSON.stringify({ lockfileVersion: 1, packages: {} })));
    expectInstallError('lock-invalid', () => runtimePackages(lock({ 'node_modules/../../etc': {} })));
    expectInstallError('lock-invalid', () => runtimePackages(lock({ 'node_modules/ws': { link: true } })));
  });

  it('matches what npm put in node_modules for this project: every runtime package is there, no dev one is listed', () => {
    const lockText = readFileSync(join(PROJECT_DIR, 'package-lock.json'), 'utf8');
    const packages = runtimePackages(lockText);
    const dev = Object.entries((JSON.parse(lockText) as { packages: Record<string, { dev?: boolean }> }).packages)
      .filter(([, entry]) => entry.dev === true)
      .map(([path]) => path);
    assert.ok(dev.includes('node_modules/typescript'), 'the lock marks typescript as dev');
    assert.ok(packages.every((p) => !dev.includes(p.path)));
    for (const name of ['pino', 'koffi', 'udev', 'zod', 'crc-32']) assert.ok(packages.some((p) => p.path === `node_modules/${name}`), name);
    for (const p of packages.filter((p) => !p.optional)) assert.ok(existsSync(join(PROJECT_DIR, p.path)), `${p.path} is missing`);
  });
});

describe('manifest', () => {
  it('names the file and the field that is wrong', () => {
    expectInstallError('manifest-invalid', () => parseManifest('nope', '/x/install-manifest.json'));
    assert.throws(
      () => parseManifest(JSON.stringify({ format: 'xen-pmem-install', version: 1, toolVersion: '0.1.0', prefix: '/usr/local', files: ['relative'], directories: [] }), '/m.json'),
      /\/m\.json is not a version 1 install manifest \(files\.0: /,
    );
  });
});

describe('asking systemd and udevd', () => {
  it('reloads both on a running system, and reports a failed reload as a problem', () => {
    const host = fakeHost(true, true);
    assert.deepEqual(askManagersToReload('/', true, host), { notes: [], problems: [] });
    assert.deepEqual(host.calls, [['systemctl', 'daemon-reload'], ['udevadm', 'control', '--reload']]);
    const failing = fakeHost(true, false, 1);
    const outcome = askManagersToReload('/', true, failing);
    assert.deepEqual(outcome.problems, ['systemctl daemon-reload failed (exit 1): Failed to connect to bus']);
    assert.deepEqual(outcome.notes, ['udevd is not running here: skipped udevadm control --reload']);
  });

  it('runs nothing for a staging root, without systemd, or with --no-reload, and says why', () => {
    for (const [root, reload, systemd] of [['/stage', true, true], ['/', true, false], ['/', false, true]] as const) {
      const host = fakeHost(systemd, systemd);
      const outcome = askManagersToReload(root, reload, host);
      assert.deepEqual(host.calls, [], `${root} reload=${reload} systemd=${systemd}`);
      assert.ok(outcome.notes.length > 0);
    }
  });

  it('stops and disables the unit when systemd runs, and only unlinks it offline otherwise', () => {
    const running = fakeHost(true, true);
    releaseUnit('/', true, running);
    assert.deepEqual(running.calls, [['systemctl', 'disable', '--now', 'xen-pmemd.service']]);
    const offline = fakeHost(false, false);
    releaseUnit('/stage', true, offline);
    assert.deepEqual(offline.calls, [['systemctl', '--root=/stage', 'disable', 'xen-pmemd.service']]);
  });
});

/**
 * A small built project: two launchers, a runtime package with a nested runtime package, a
 * symlink and a nested dev package, a dev package, a missing optional package, source maps.
 */
function makeProject(dir: string): void {
  const write = (path: string, text: string, mode = 0o644): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
    chmodSync(join(dir, path), mode);
  };
  write('package.json', JSON.stringify({ name: 'xen-pmem', version: '9.8.7', type: 'module', bin: { 'xen-pmem': 'dist/src/cli/xen-pmem.js', 'xen-pmemd': 'dist/src/daemon/xen-pmemd.js' } }));
  write(
    'package-lock.json',
    JSON.stringify({
      lockfileVersion: 3,
      packages: {
        '': { name: 'xen-pmem' },
        'node_modules/alpha': {},
        'node_modules/alpha/node_modules/beta': {},
        'node_modules/alpha/node_modules/devnested': { dev: true },
        'node_modules/delta': { dev: true },
        'node_modules/@scope/native-linux-arm64': { optional: true },
      },
    }),
  );
  write('dist/src/cli/xen-pmem.js', 'console.log("cli");\n');
  write('dist/src/cli/xen-pmem.js.map', '{}');
  write('dist/src/daemon/xen-pmemd.js', 'console.log("daemon");\n');
  write('node_modules/alpha/index.js', 'export {};\n');
  write('node_modules/alpha/build/alpha.node', 'binary', 0o755);
  symlinkSync('index.js', join(dir, 'node_modules/alpha/main.js'));
  write('node_modules/alpha/node_modules/beta/index.js', 'export {};\n');
  write('node_modules/alpha/node_modules/devnested/index.js', 'export {};\n');
  write('node_modules/delta/index.js', 'export {};\n');
  mkdirSync(join(dir, 'systemd'));
  mkdirSync(join(dir, 'udev'));
  copyFileSync(join(PROJECT_DIR, 'systemd/xen-pmemd.service'), join(dir, 'systemd/xen-pmemd.service'));
  copyFileSync(join(PROJECT_DIR, 'udev/69-xen-pmem.rules'), join(dir, 'udev/69-xen-pmem.rules'));
}

describe('install and uninstall into a staging root', () => {
  let base: string;
  let project: string;
  let root: string;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'xen-pmem-install-'));
    project = join(base, 'project');
    root = join(base, 'root');
    mkdirSync(root);
    makeProject(project);
  });
  after(() => rmSync(base, { recursive: true, force: true }));

  it('writes the runtime, the launchers, the unit and the rule, and records each file', () => {
    const host = fakeHost(true, true);
    const report = install({ projectDir: project, prefix: '/opt/xp', root, host, nodePath: '/usr/bin/node' });
    assert.deepEqual(host.calls, [], 'nothing may be reloaded for a staging root');
    assert.deepEqual(report.problems, []);
    assert.deepEqual(tree(root), [
      'etc/',
      'etc/systemd/',
      'etc/systemd/system/',
      'etc/systemd/system/xen-pmemd.service',
      'etc/udev/',
      'etc/udev/rules.d/',
      'etc/udev/rules.d/69-xen-pmem.rules',
      'opt/',
      'opt/xp/',
      'opt/xp/lib/',
      'opt/xp/lib/xen-pmem/',
      'opt/xp/lib/xen-pmem/dist/',
      'opt/xp/lib/xen-pmem/dist/src/',
      'opt/xp/lib/xen-pmem/dist/src/cli/',
      'opt/xp/lib/xen-pmem/dist/src/cli/xen-pmem.js',
      'opt/xp/lib/xen-pmem/dist/src/daemon/',
      'opt/xp/lib/xen-pmem/dist/src/daemon/xen-pmemd.js',
      'opt/xp/lib/xen-pmem/install-manifest.json',
      'opt/xp/lib/xen-pmem/node_modules/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/build/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/build/alpha.node',
      'opt/xp/lib/xen-pmem/node_modules/alpha/index.js',
      'opt/xp/lib/xen-pmem/node_modules/alpha/main.js',
      'opt/xp/lib/xen-pmem/node_modules/alpha/node_modules/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/node_modules/beta/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/node_modules/beta/index.js',
      'opt/xp/lib/xen-pmem/package.json',
      'opt/xp/sbin/',
      'opt/xp/sbin/xen-pmem',
      'opt/xp/sbin/xen-pmemd',
    ]);
    const at = (path: string): string => join(root, path);
    assert.equal(readlinkSync(at('opt/xp/lib/xen-pmem/node_modules/alpha/main.js')), 'index.js');
    assert.equal(lstatSync(at('opt/xp/lib/xen-pmem/node_modules/alpha/build/alpha.node')).mode & 0o777, 0o755);
    assert.equal(lstatSync(at('opt/xp/sbin/xen-pmemd')).mode & 0o777, 0o755);
    assert.equal(lstatSync(at('etc/systemd/system/xen-pmemd.service')).mode & 0o777, 0o644);
    assert.match(readFileSync(at('opt/xp/sbin/xen-pmemd'), 'utf8'), /^exec '\/usr\/bin\/node' '--max-semi-space-size=1' '\/opt\/xp\/lib\/xen-pmem\/dist\/src\/daemon\/xen-pmemd\.js' "\$@"$/m);
    const unit = readFileSync(at('etc/systemd/system/xen-pmemd.service'), 'utf8');
    assert.deepEqual(unit.split('\n').filter((line) => line.startsWith('ExecStart=')), ['ExecStart=/opt/xp/sbin/xen-pmemd']);
    assert.equal(readFileSync(at('etc/udev/rules.d/69-xen-pmem.rules'), 'utf8'), readFileSync(join(PROJECT_DIR, 'udev/69-xen-pmem.rules'), 'utf8'));

    const manifest = parseManifest(readFileSync(at('opt/xp/lib/xen-pmem/install-manifest.json'), 'utf8'), 'manifest');
    assert.equal(manifest.toolVersion, '9.8.7');
    assert.deepEqual(new Set(manifest.files), new Set(report.files));
    assert.equal(manifest.files.length, tree(root).filter((p) => !p.endsWith('/') && !p.endsWith('install-manifest.json')).length);
    assert.ok(manifest.directories.includes('/etc/systemd') && manifest.directories.includes('/opt'), 'directories it created are recorded');
  });

  it('installs again over itself, dropping files the new build no longer has', () => {
    rmSync(join(project, 'dist/src/cli/xen-pmem.js'));
    writeFileSync(join(project, 'dist/src/cli/other.js'), '');
    const packageJson = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    packageJson.bin['xen-pmem'] = 'dist/src/cli/other.js';
    writeFileSync(join(project, 'package.json'), JSON.stringify(packageJson));
    install({ projectDir: project, prefix: '/opt/xp', root, host: fakeHost(false, false), nodePath: '/usr/bin/node' });
    assert.ok(!existsSync(join(root, 'opt/xp/lib/xen-pmem/dist/src/cli/xen-pmem.js')));
    assert.ok(existsSync(join(root, 'opt/xp/lib/xen-pmem/dist/src/cli/other.js')));
  });

  it('uninstalls to an empty root, removing the enablement links systemctl enable made', { skip: spawnSync('systemctl', ['--version']).status === 0 ? false : 'needs systemctl' }, () => {
    const enable = spawnSync('systemctl', [`--root=${root}`, 'enable', 'xen-pmemd.service'], { encoding: 'utf8' });
    assert.equal(enable.status, 0, enable.stderr);
    // The link points at the unit's system path, which does not exist on this machine: lstat it.
    assert.ok(lstatSync(join(root, 'etc/systemd/system/multi-user.target.wants/xen-pmemd.service')).isSymbolicLink());
    const report = uninstall({ prefix: '/opt/xp', root, host: realHost });
    assert.deepEqual(report.problems, []);
    assert.deepEqual(tree(root), []);
  });

  it('refuses to overwrite a file it did not write, and then writes nothing at all', () => {
    mkdirSync(join(root, 'etc/udev/rules.d'), { recursive: true });
    writeFileSync(join(root, 'etc/udev/rules.d/69-xen-pmem.rules'), '# an operator\'s own rule\n');
    const before = tree(root);
    assert.throws(
      () => install({ projectDir: project, prefix: '/opt/xp', root, host: fakeHost(false, false) }),
      (error: unknown) =>
        error instanceof InstallError && error.code === 'would-overwrite' && error.message.endsWith('69-xen-pmem.rules exists and was not written by xen-pmem install: move it away first (installed under another prefix? run xen-pmem uninstall --prefix with that prefix)'),
    );
    assert.deepEqual(tree(root), before);
    rmSync(join(root, 'etc'), { recursive: true });
  });

  it('says when there is nothing to uninstall, or no such root', () => {
    expectInstallError('not-installed', () => uninstall({ prefix: '/opt/none', root, host: fakeHost(false, false) }));
    expectInstallError('root-invalid', () => install({ projectDir: project, root: join(base, 'no-such-root'), host: fakeHost(false, false) }));
    assert.ok(!existsSync(join(base, 'no-such-root')));
  });

  it('keeps a directory it created when an operator put a file of their own in it', () => {
    install({ projectDir: project, prefix: '/opt/xp', root, host: fakeHost(false, false), nodePath: '/usr/bin/node' });
    writeFileSync(join(root, 'etc/udev/rules.d/70-local.rules'), '# mine\n');
    const report = uninstall({ prefix: '/opt/xp', root, host: fakeHost(false, false) });
    assert.ok(report.notes.some((note) => note.startsWith('kept /etc/udev/rules.d:')), report.notes.join('\n'));
    assert.deepEqual(tree(root), ['etc/', 'etc/udev/', 'etc/udev/rules.d/', 'etc/udev/rules.d/70-local.rules']);
    rmSync(join(root, 'etc'), { recursive: true });
  });

  it('names what is missing in a source tree that was not built', () => {
    const unbuilt = join(base, 'unbuilt');
    mkdirSync(unbuilt);
    copyFileSync(join(project, 'package.json'), join(unbuilt, 'package.json'));
    assert.throws(
      () => install({ projectDir: unbuilt, root, host: fakeHost(false, false) }),
      (error: unknown) => error instanceof InstallError && error.code === 'project-incomplete' && error.message.includes('package-lock.json'),
    );
    assert.deepEqual(tree(root), []);
  });
});

function collectingIO(): CommandIO & { outLines: string[]; errLines: string[] } {
  const outLines: string[] = [];
  const errLines: string[] = [];
  return { outLines, errLines, out: (t) => void outLines.push(t), err: (t) => void errLines.push(t), ask: async () => null, env: {} };
}

function namespaceSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to mount the staged tree in a private mount namespace';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount does not work here';
  return false;
}

function builtProjectSkip(): string | false {
  for (const path of ['dist/src/cli/xen-pmem.js', 'dist/src/daemon/xen-pmemd.js']) {
    if (!existsSync(join(PROJECT_DIR, path))) return `${path} is not built yet (npm run build)`;
  }
  return false;
}

describe('xen-pmem install / uninstall of this project', { skip: builtProjectSkip() }, () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'xen-pmem-root-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('installs a tree that runs on its own, then uninstalls to nothing', async (t) => {
    const io = collectingIO();
    assert.equal(await installCommand.run(['--root', root], io), 0, io.errLines.join('\n'));
    assert.match(io.outLines[0]!, /^installed \d+ files for \/usr\/local below /);
    const libDir = join(root, 'usr/local/lib/xen-pmem');
    assert.ok(!existsSync(join(libDir, 'node_modules/typescript')), 'typescript is a dev dependency');
    assert.ok(!existsSync(join(libDir, 'node_modules/fast-check')), 'fast-check is a dev dependency');

    // The installed copy needs nothing from the source tree: its CLI runs from another directory.
    const version = spawnSync(process.execPath, [join(libDir, 'dist/src/cli/xen-pmem.js'), '--version'], { cwd: tmpdir(), encoding: 'utf8' });
    const expected = (JSON.parse(readFileSync(join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(version.stdout.trim(), `xen-pmem ${expected}`, version.stderr);
    // ... and its copy of koffi finds its native part and libsystemd.
    const probe = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `const m = await import(${JSON.stringify(join(libDir, 'dist/src/native/libsystemd.js'))}); console.log(m.loadLibSystemd() === null ? 'missing' : 'loaded');`],
      { cwd: tmpdir(), encoding: 'utf8' },
    );
    assert.equal(probe.stdout.trim(), 'loaded', probe.stderr);

    // The launcher as the system will run it: the staged /usr/local mounted at /usr/local.
    const launcherSkip = namespaceSkip();
    if (launcherSkip !== false) t.diagnostic(`launcher not run: ${launcherSkip}`);
    else {
      const launched = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0/usr/local" /usr/local && exec /usr/local/sbin/xen-pmem --version', root], {
        cwd: tmpdir(),
        encoding: 'utf8',
      });
      assert.equal(launched.stdout.trim(), `xen-pmem ${expected}`, launched.stderr);
    }

    const out = collectingIO();
    assert.equal(await uninstallCommand.run(['--root', root], out), 0, out.errLines.join('\n'));
    assert.deepEqual(tree(root), []);
  });

  it('rejects a relative --root as a usage error naming the reason code', async () => {
    await assert.rejects(installCommand.run(['--root', 'stage'], collectingIO()), /root "stage" must be an absolute path \[root-invalid\]/);
  });
});
