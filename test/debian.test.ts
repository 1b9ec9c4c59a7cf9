// debian/ and what packaging/deb.ts generates into the staged tree, without building: the
// control fields the issue asks for, no hand-written maintainer scripts, a copyright file that
// names every package whose code ships, overrides that say why, and the generated changelog,
// unit and launchers. test/lab/debian-package.test.ts builds the real .deb and installs it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { RULE_TEMPLATE, UNIT_TEMPLATE } from '../src/install/layout.js';
import { parseConfig } from '../src/daemon/config-schema.js';
import { debianChangelog, maintainer, packagedLaunchers, packagedUnit, packageVersion, parseLintian, PackageError } from '../packaging/deb.js';
import { configJson, defaultConfig } from '../packaging/man/config-doc.js';
import { manPages } from '../packaging/man/pages.js';
import { diffListings, isBookkeeping, isCatPage, leftovers } from '../lab/guest/package-results.js';
import { runtimePackages } from '../packaging/runtime.js';

const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(PROJECT_DIR, path), 'utf8');
const control = read('debian/control');
const pkg = JSON.parse(read('package.json')) as { version: string; engines: { node: string } };

/** A control paragraph's field, continuation lines joined. */
function field(paragraph: string, name: string): string {
  const match = new RegExp(`^${name}:(.*(?:\\n[ \\t].*)*)`, 'm').exec(paragraph);
  return match ? match[1]!.replace(/\n[ \t]+/g, ' ').trim() : '';
}

const [source = '', binary = ''] = control.split(/\n\n+/);

describe('debian/control', () => {
  it('builds with debhelper 13 (debhelper-compat, no debian/compat), as no root', () => {
    assert.equal(field(source, 'Build-Depends'), 'debhelper-compat (= 13)');
    assert.ok(!existsSync(join(PROJECT_DIR, 'debian/compat')));
    assert.equal(field(source, 'Rules-Requires-Root'), 'no');
    assert.match(read('debian/rules'), /^%:\n\tdh \$@$/m);
  });

  it('one amd64 package that depends on Debian packages only, node at the supported floor', () => {
    assert.equal(field(binary, 'Package'), 'xen-pmem');
    assert.equal(field(binary, 'Architecture'), 'amd64');
    const depends = field(binary, 'Depends').split(/,\s*/);
    const floor = /^>=(\d+\.\d+)$/.exec(pkg.engines.node)?.[1];
    assert.ok(depends.includes(`nodejs (>= ${floor})`), `nodejs (>= ${floor}) in ${depends.join(', ')}`);
    for (const library of ['libxencall1', 'libsystemd0', 'libudev1', 'fdisk', '${shlibs:Depends}', '${misc:Depends}']) {
      assert.ok(depends.includes(library), library);
    }
  });

  it('has no maintainer script of its own: dh_installsystemd writes them', () => {
    const scripts = readdirSync(join(PROJECT_DIR, 'debian')).filter((name) => /(^|\.)(preinst|postinst|prerm|postrm)$/.test(name));
    assert.deepEqual(scripts, []);
  });

  it('the file lists name what the stage holds', () => {
    assert.deepEqual(read('debian/xen-pmem.install').trim().split('\n'), [
      'runtime/* usr/lib/xen-pmem', 'sbin/xen-pmem usr/sbin', 'sbin/xen-pmemd usr/sbin', 'conf/config.json etc/xen-pmem',
      // /usr/lib, not /lib: systemd's file trigger watches /usr/lib/systemd/catalog.
      'catalog/xen-pmem.catalog usr/lib/systemd/catalog',
    ]);
    assert.deepEqual(read('debian/xen-pmem.manpages').trim().split('\n'), manPages({ version: '0', date: '2026-01-01' }).map((page) => `man/${page.file}`));
    for (const doc of read('debian/xen-pmem.docs').trim().split('\n')) assert.ok(existsSync(join(PROJECT_DIR, doc)), doc);
    assert.deepEqual(Object.keys(packagedLaunchers(join(PROJECT_DIR, 'dist/runtime'))).sort(), ['xen-pmem', 'xen-pmemd']);
  });
});

describe('debian/copyright', () => {
  const copyright = read('debian/copyright');
  const paragraphs = copyright.split(/\n\n+/);
  const licenseName: Record<string, string> = { MIT: 'Expat', 'BSD-2-Clause': 'BSD-2-clause', 'Apache-2.0': 'Apache-2.0' };

  it('is machine-readable, with a licence text for every short name it uses', () => {
    assert.match(copyright, /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/\n/);
    const used = new Set(paragraphs.filter((p) => field(p, 'Files')).map((p) => field(p, 'License').split('\n')[0]!.trim().split(' ')[0]!));
    const texts = new Set(paragraphs.filter((p) => !field(p, 'Files') && field(p, 'License')).map((p) => field(p, 'License').split(' ')[0]!));
    for (const name of used) assert.ok(texts.has(name) || name === 'Apache-2.0', `licence text for ${name}`);
    assert.match(copyright, /\/usr\/share\/common-licenses\/Apache-2\.0/);
  });

  it('names every npm package whose code is in the runtime, with the licence its package.json states', async () => {
    // node-udev's addon is compiled against node-addon-api's headers, so that code ships too.
    const shipped = [...await runtimePackages(), 'node-addon-api'].sort();
    const covered = new Map<string, string>();
    for (const paragraph of paragraphs) {
      for (const pattern of field(paragraph, 'Files').split(/\s+/)) {
        const name = /^node_modules\/(.+)\/\*$/.exec(pattern)?.[1];
        if (name) covered.set(name, field(paragraph, 'License').split(' ')[0]!);
      }
    }
    assert.deepEqual([...covered.keys()].sort(), shipped, 'one Files: paragraph per shipped package, and none for a package that no longer ships');
    for (const name of shipped) {
      const { license } = JSON.parse(read(`node_modules/${name}/package.json`)) as { license: string };
      assert.equal(covered.get(name), licenseName[license] ?? license, `${name} is ${license}`);
    }
  });
});

describe('lintian overrides', () => {
  const path = join(PROJECT_DIR, 'debian/xen-pmem.lintian-overrides');
  it('each override follows a comment that says why, and docs/operations.md explains it', { skip: existsSync(path) ? false : 'the package needs no override' }, () => {
    const lines = readFileSync(path, 'utf8').split('\n');
    const operations = read('docs/operations.md');
    for (const [index, text] of lines.entries()) {
      if (text.trim() === '' || text.startsWith('#')) continue;
      assert.match(lines[index - 1] ?? '', /^# \S/, `a reason above "${text}"`);
      const tag = /^(?:xen-pmem(?: binary)?: )?(\S+)/.exec(text)?.[1];
      assert.ok(tag && operations.includes(tag), `docs/operations.md explains ${tag}`);
    }
  });

  it('the report parser reads lintian\'s lines', () => {
    assert.deepEqual(parseLintian('W: xen-pmem: script-not-executable [usr/lib/x.mjs]\nN: note\nO: xen-pmem: some-tag\n'), [
      { severity: 'W', tag: 'script-not-executable', detail: '[usr/lib/x.mjs]' },
      { severity: 'O', tag: 'some-tag', detail: '' },
    ]);
  });
});

describe('what the stage generates', () => {
  it('the version is package.json\'s, with an optional suffix that sorts below it', () => {
    assert.equal(packageVersion(), pkg.version);
    assert.equal(packageVersion('~prev'), `${pkg.version}~prev`);
    assert.throws(() => packageVersion('-1 x'), PackageError);
    const compare = spawnSync('dpkg', ['--compare-versions', `${pkg.version}~prev`, 'lt', pkg.version]);
    if (compare.error === undefined) assert.equal(compare.status, 0, '~prev sorts before the release');
  });

  it('debian/changelog: one entry, signed by the Maintainer, that dpkg-parsechangelog reads', (t) => {
    const text = debianChangelog('0.1.0~prev', maintainer(control), 1796157219, '0.1.0');
    assert.equal(text.split('\n')[0], 'xen-pmem (0.1.0~prev) unstable; urgency=medium');
    assert.match(text, /\n -- xen-pmem maintainers <[^>]+>  Tue, 01 Dec 2026 20:33:39 \+0000\n$/);
    if (spawnSync('dpkg-parsechangelog', ['--version']).error) {
      t.diagnostic('dpkg-parsechangelog is not installed (Debian package dpkg-dev)');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'xen-pmem-changelog-'));
    try {
      writeFileSync(join(dir, 'changelog'), text);
      const parsed = spawnSync('dpkg-parsechangelog', ['-l', join(dir, 'changelog'), '-S', 'Version'], { encoding: 'utf8' });
      assert.equal(parsed.stdout.trim(), '0.1.0~prev', parsed.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the unit is the repository\'s, with ExecStart=/usr/sbin/xen-pmemd and nothing else changed', () => {
    const template = read(UNIT_TEMPLATE).split('\n');
    const unit = packagedUnit().split('\n');
    assert.equal(unit.length, template.length);
    const changed = unit.flatMap((line, index) => (line === template[index] ? [] : [line]));
    assert.deepEqual(changed, ['ExecStart=/usr/sbin/xen-pmemd']);
    assert.ok(existsSync(join(PROJECT_DIR, RULE_TEMPLATE)));
  });

  it('the launchers exec /usr/bin/node with runtime.json\'s flags on /usr/lib/xen-pmem', () => {
    const launchers = packagedLaunchers(join(PROJECT_DIR, 'dist/runtime'));
    assert.equal(launchers['xen-pmemd'], "#!/bin/sh\n# xen-pmemd: installed by the Debian package xen-pmem.\nexec '/usr/bin/node' '--max-semi-space-size=1' '/usr/lib/xen-pmem/xen-pmemd.mjs' \"$@\"\n");
    assert.equal(launchers['xen-pmem'], "#!/bin/sh\n# xen-pmem: installed by the Debian package xen-pmem.\nexec '/usr/bin/node' '/usr/lib/xen-pmem/xen-pmem.mjs' \"$@\"\n");
  });

  it('the conffile holds every default, and the daemon accepts it', () => {
    const text = configJson(defaultConfig());
    assert.deepEqual(parseConfig(text, 'conffile'), defaultConfig());
    assert.match(text, /"logLevel": "info"/);
  });
});

describe('the purge comparison of the lab scenario', () => {
  it('tells the package manager\'s bookkeeping and man-db\'s copies of pages read from leftovers', () => {
    const before = ['/etc/', '/etc/hosts', '/var/lib/dpkg/status'];
    const after = ['/etc/', '/etc/hosts', '/var/lib/dpkg/status', '/var/lib/dpkg/status-old', '/var/cache/man/cat8/xen-pmem.8.gz',
      '/var/cache/man/vi/CACHEDIR.TAG', '/etc/xen-pmem/', '/var/lib/dpkg/info/xen-pmem.list'];
    const diff = diffListings(before, after);
    assert.deepEqual(diff.removed, []);
    assert.deepEqual(leftovers(diff).added, ['/etc/xen-pmem/', '/var/lib/dpkg/info/xen-pmem.list'], 'dpkg\'s own record of the package is not bookkeeping');
    assert.ok(isCatPage('/var/cache/man/cat8/xen-pmem.8.gz') && isCatPage('/var/cache/man/de/cat5/xen-pmem.json.5.gz'));
    assert.ok(!isCatPage('/var/cache/man/index.db') && !isCatPage('/usr/share/man/man8/xen-pmem.8.gz'));
    assert.ok(isBookkeeping('/var/log/apt/history.log') && !isBookkeeping('/var/lib/systemd/deb-systemd-helper-enabled/xen-pmemd.service.dsh-also'));
  });
});
