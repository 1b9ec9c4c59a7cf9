import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
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

import { realHost, type CommandOutcome, type HostPort } from '../packaging/install/host.js';
import { askManagersToReload, install, releaseUnit, uninstall, updateCatalog } from '../packaging/install/install.js';
import { parseManifest } from '../packaging/install/manifest.js';
import { runInstall, type Output } from '../packaging/install.js';
import { checkPrefix, checkRoot, InstallError, layoutFor, renderLauncher, renderUnit, shellQuote } from '../src/install/layout.js';
import { parseRuntimeManifest } from '../src/install/runtime-manifest.js';

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
      catalog: '/usr/local/lib/systemd/catalog/xen-pmem.catalog',
    });
  });

  it('writes launchers that exec node on the installed script with all arguments', () => {
    assert.equal(
      renderLauncher('xen-pmemd', '/usr/bin/node', '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js'),
      '#!/bin/sh\n# xen-pmemd: written by "install.js install", removed by "install.js uninstall".\n' +
        "exec '/usr/bin/node' '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js' \"$@\"\n",
    );
    assert.equal(
      renderLauncher('xen-pmemd', '/usr/bin/node', '/usr/local/lib/xen-pmem/dist/src/daemon/xen-pmemd.js', ['--max-semi-space-size=1']),
      '#!/bin/sh\n# xen-pmemd: written by "install.js install", removed by "install.js uninstall".\n' +
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

describe('runtime.json', () => {
  it('takes launchers that name a bundle in the runtime directory and plain node flags', () => {
    const manifest = { name: 'xen-pmem', version: '1.2.3', launchers: { 'xen-pmemd': { script: 'xen-pmemd.mjs', nodeFlags: ['--max-semi-space-size=1'] } } };
    assert.deepEqual(parseRuntimeManifest(JSON.stringify(manifest)), manifest);
  });

  it('says what is wrong with one it cannot use', () => {
    assert.match(parseRuntimeManifest('{') as string, /^it is not JSON/);
    assert.equal(parseRuntimeManifest('{"name":"x"}'), 'it needs a "name" and a "version"');
    assert.equal(parseRuntimeManifest('{"name":"x","version":"1"}'), 'it needs a "launchers" table');
    for (const launcher of [{ script: '../x.mjs', nodeFlags: [] }, { script: 'x.js', nodeFlags: [] }, { script: 'x.mjs', nodeFlags: ['; rm -rf /'] }, { script: 'x.mjs' }]) {
      const text = JSON.stringify({ name: 'x', version: '1', launchers: { a: launcher } });
      assert.match(parseRuntimeManifest(text) as string, /^launcher "a" needs a plain file name/, text);
    }
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

  it('rebuilds journalctl\'s catalog index where systemd runs, and says so where it cannot', () => {
    const running = fakeHost(true, true);
    assert.deepEqual(updateCatalog('/', true, running), { notes: [], problems: [] });
    assert.deepEqual(running.calls, [['journalctl', '--update-catalog']]);
    assert.deepEqual(updateCatalog('/', true, fakeHost(true, true, 1)).problems, ['journalctl --update-catalog failed (exit 1): Failed to connect to bus']);
    const idle = fakeHost(false, false);
    assert.deepEqual(updateCatalog('/', true, idle).notes, ['systemd is not running here: skipped journalctl --update-catalog']);
    assert.deepEqual(updateCatalog('/stage', true, idle).notes, ['on that system also run: journalctl --update-catalog']);
    assert.deepEqual(updateCatalog('/', false, idle), { notes: [], problems: [] });
    assert.deepEqual(idle.calls, []);
  });
});

/**
 * A small built project: a runtime directory with two launchers' bundles, a chunk, a native
 * package with a compiled part and a symlink, and the unit and rule templates.
 */
function makeProject(dir: string): void {
  const write = (path: string, text: string, mode = 0o644): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
    chmodSync(join(dir, path), mode);
  };
  write('dist/runtime/runtime.json', JSON.stringify({
    name: 'xen-pmem',
    version: '9.8.7',
    launchers: { 'xen-pmem': { script: 'xen-pmem.mjs', nodeFlags: [] }, 'xen-pmemd': { script: 'xen-pmemd.mjs', nodeFlags: ['--max-semi-space-size=1'] } },
  }));
  write('dist/runtime/xen-pmem.mjs', 'console.log("cli");\n');
  write('dist/runtime/xen-pmemd.mjs', 'console.log("daemon");\n');
  write('dist/runtime/chunks/chunk-A.mjs', 'export {};\n');
  write('dist/runtime/node_modules/alpha/index.js', 'export {};\n');
  write('dist/runtime/node_modules/alpha/build/alpha.node', 'binary', 0o755);
  symlinkSync('index.js', join(dir, 'dist/runtime/node_modules/alpha/main.js'));
  mkdirSync(join(dir, 'systemd'));
  mkdirSync(join(dir, 'udev'));
  copyFileSync(join(PROJECT_DIR, 'systemd/xen-pmemd.service'), join(dir, 'systemd/xen-pmemd.service'));
  copyFileSync(join(PROJECT_DIR, 'udev/69-xen-pmem.rules'), join(dir, 'udev/69-xen-pmem.rules'));
  write('dist/catalog/xen-pmem.catalog', '-- 0123456789abcdef0123456789abcdef\nSubject: x\n\nx\n');
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
      'opt/xp/lib/xen-pmem/chunks/',
      'opt/xp/lib/xen-pmem/chunks/chunk-A.mjs',
      'opt/xp/lib/xen-pmem/install-manifest.json',
      'opt/xp/lib/xen-pmem/node_modules/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/build/',
      'opt/xp/lib/xen-pmem/node_modules/alpha/build/alpha.node',
      'opt/xp/lib/xen-pmem/node_modules/alpha/index.js',
      'opt/xp/lib/xen-pmem/node_modules/alpha/main.js',
      'opt/xp/lib/xen-pmem/runtime.json',
      'opt/xp/lib/xen-pmem/xen-pmem.mjs',
      'opt/xp/lib/xen-pmem/xen-pmemd.mjs',
      'opt/xp/sbin/',
      'opt/xp/sbin/xen-pmem',
      'opt/xp/sbin/xen-pmemd',
      'usr/',
      'usr/local/',
      'usr/local/lib/',
      'usr/local/lib/systemd/',
      'usr/local/lib/systemd/catalog/',
      'usr/local/lib/systemd/catalog/xen-pmem.catalog',
    ]);
    const at = (path: string): string => join(root, path);
    assert.equal(readFileSync(at('usr/local/lib/systemd/catalog/xen-pmem.catalog'), 'utf8'), readFileSync(join(project, 'dist/catalog/xen-pmem.catalog'), 'utf8'));
    assert.ok(report.notes.includes('on that system also run: journalctl --update-catalog'), report.notes.join('\n'));
    assert.equal(readlinkSync(at('opt/xp/lib/xen-pmem/node_modules/alpha/main.js')), 'index.js');
    assert.equal(lstatSync(at('opt/xp/lib/xen-pmem/node_modules/alpha/build/alpha.node')).mode & 0o777, 0o755);
    assert.equal(lstatSync(at('opt/xp/sbin/xen-pmemd')).mode & 0o777, 0o755);
    assert.equal(lstatSync(at('etc/systemd/system/xen-pmemd.service')).mode & 0o777, 0o644);
    assert.match(readFileSync(at('opt/xp/sbin/xen-pmemd'), 'utf8'), /^exec '\/usr\/bin\/node' '--max-semi-space-size=1' '\/opt\/xp\/lib\/xen-pmem\/xen-pmemd\.mjs' "\$@"$/m);
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
    rmSync(join(project, 'dist/runtime/xen-pmem.mjs'));
    writeFileSync(join(project, 'dist/runtime/other.mjs'), '');
    const manifestPath = join(project, 'dist/runtime/runtime.json');
    const runtime = JSON.parse(readFileSync(manifestPath, 'utf8')) as { launchers: Record<string, { script: string }> };
    runtime.launchers['xen-pmem']!.script = 'other.mjs';
    writeFileSync(manifestPath, JSON.stringify(runtime));
    install({ projectDir: project, prefix: '/opt/xp', root, host: fakeHost(false, false), nodePath: '/usr/bin/node' });
    assert.ok(!existsSync(join(root, 'opt/xp/lib/xen-pmem/xen-pmem.mjs')));
    assert.ok(existsSync(join(root, 'opt/xp/lib/xen-pmem/other.mjs')));
    assert.match(readFileSync(join(root, 'opt/xp/sbin/xen-pmem'), 'utf8'), /\/opt\/xp\/lib\/xen-pmem\/other\.mjs/);
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
        error instanceof InstallError && error.code === 'would-overwrite' && error.message.endsWith('69-xen-pmem.rules exists and was not written by install.js install: move it away first (installed under another prefix? run install.js uninstall --prefix with that prefix)'),
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
    cpSync(join(project, 'systemd'), join(unbuilt, 'systemd'), { recursive: true });
    assert.throws(
      () => install({ projectDir: unbuilt, root, host: fakeHost(false, false) }),
      (error: unknown) => error instanceof InstallError && error.code === 'project-incomplete' && error.message === `${join(unbuilt, 'dist/runtime')} does not exist: run npm run build first`,
    );
    assert.deepEqual(tree(root), []);
  });
});

function collectingIO(): Output & { outLines: string[]; errLines: string[] } {
  const outLines: string[] = [];
  const errLines: string[] = [];
  return { outLines, errLines, out: (t) => void outLines.push(t), err: (t) => void errLines.push(t) };
}

function namespaceSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to mount the staged tree in a private mount namespace';
  if (spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status !== 0) return 'unshare --mount does not work here';
  return false;
}

function builtProjectSkip(): string | false {
  for (const path of ['dist/runtime/xen-pmem.mjs', 'dist/runtime/xen-pmemd.mjs']) {
    if (!existsSync(join(PROJECT_DIR, path))) return `${path} is not built yet (npm run build)`;
  }
  return false;
}

describe('install.js install / uninstall of this project', { skip: builtProjectSkip() }, () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'xen-pmem-root-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('installs a tree that runs on its own, then uninstalls to nothing', async (t) => {
    const io = collectingIO();
    assert.equal(runInstall(['install', '--root', root], io, PROJECT_DIR), 0, io.errLines.join('\n'));
    assert.match(io.outLines[0]!, /^installed \d+ files for \/usr\/local below /);
    const libDir = join(root, 'usr/local/lib/xen-pmem');
    assert.ok(!existsSync(join(libDir, 'node_modules/typescript')), 'typescript is a dev dependency');
    assert.ok(!existsSync(join(libDir, 'node_modules/fast-check')), 'fast-check is a dev dependency');

    // The installed copy needs nothing from the source tree: its CLI runs from another directory.
    const version = spawnSync(process.execPath, [join(libDir, 'xen-pmem.mjs'), '--version'], { cwd: tmpdir(), encoding: 'utf8' });
    const expected = (JSON.parse(readFileSync(join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(version.stdout.trim(), `xen-pmem ${expected}`, version.stderr);
    // ... its copy of koffi finds its native part and libsystemd, and node-udev its addon.
    const probe = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', [
        `const { default: koffi } = await import(${JSON.stringify(join(libDir, 'node_modules/koffi/index.js'))});`,
        `koffi.load('libsystemd.so.0');`,
        `const { createRequire } = await import('node:module');`,
        `const udev = createRequire(${JSON.stringify(join(libDir, 'xen-pmemd.mjs'))})('udev');`,
        `console.log(typeof udev.list === 'function' ? 'loaded' : 'no udev.list');`,
      ].join(' ')],
      { cwd: tmpdir(), encoding: 'utf8' },
    );
    assert.equal(probe.stdout.trim(), 'loaded', probe.stderr);
    const files = tree(libDir).filter((path) => !path.endsWith('/'));
    assert.ok(files.length < 40, `the installed runtime should be a few dozen files, not node_modules whole: ${files.length}`);

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
    assert.equal(runInstall(['uninstall', '--root', root], out, PROJECT_DIR), 0, out.errLines.join('\n'));
    assert.deepEqual(tree(root), []);
  });

  it('rejects a relative --root as a usage error naming the reason code', () => {
    const io = collectingIO();
    assert.equal(runInstall(['install', '--root', 'stage'], io, PROJECT_DIR), 2);
    assert.match(io.errLines.join('\n'), /^install\.js install: root "stage" must be an absolute path \[root-invalid\]$/);
  });

  it('runs from the checkout as a script: node dist/packaging/install.js', () => {
    const run = spawnSync(process.execPath, [join(PROJECT_DIR, 'dist/packaging/install.js'), 'install', '--root', join(root, 'absent')], { encoding: 'utf8' });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /^install\.js install: .*\[root-invalid\]\n$/);
    const help = spawnSync(process.execPath, [join(PROJECT_DIR, 'dist/packaging/install.js'), '--help'], { encoding: 'utf8' });
    assert.match(help.stdout, /^Usage: node dist\/packaging\/install\.js install\|uninstall /);
  });

  it('is no command of the installed xen-pmem: it needs the checkout it copies from', () => {
    const run = spawnSync(process.execPath, [join(PROJECT_DIR, 'dist/runtime/xen-pmem.mjs'), 'install'], { encoding: 'utf8' });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /unknown command "install"/);
  });
});
