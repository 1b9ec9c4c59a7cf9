// The Debian package, built the way `npm run package` builds it, twice from this tree: the
// current version and a lower one (VERSION~prev). First the .deb itself on the host: lintian,
// its fields, its files, its conffile, maintainer scripts that debhelper wrote. Then, in the lab's
// Xen Dom0 (real dpkg, apt, systemd, udev; the test hypervisor answering for Xen), what each
// maintainer step does (lab/guest/debian-package.ts): install, upgrade with an edited conffile,
// remove, purge.
//
// NVDIMM at boot: nv0, prepared on the host.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { test } from 'node:test';

import { MiB } from '../../src/core/units.js';
import { CATALOG, messageIdOf, renderCatalog, type CatalogName } from '../../src/daemon/catalog.js';
import { parseConfig } from '../../src/daemon/config-schema.js';
import { RULE_TEMPLATE } from '../../src/install/layout.js';
import { buildPackage, packagedUnit, packageVersion, type BuiltPackage } from '../../packaging/deb.js';
import { configJson, defaultConfig } from '../../packaging/man/config-doc.js';
import { addsFor, expectedLayout, field, type SuperblockOffsets } from '../../lab/guest/daemon-results.js';
import { diffListings, isCatPage, leftovers, PACKAGE_RESULT_FILE, type PackageScenarioResult } from '../../lab/guest/package-results.js';
import { blankImage, preparedImage } from '../../lab/nvdimm-images.js';
import { repositoryDir } from '../../lab/prepare.js';
import { readRun, type ScenarioRun } from '../../lab/scenario-run.js';
import { lintianOnDebian13 } from '../../lab/trixie-lintian.js';
import { withLab, type Dom0Release } from '../../lab/vm.js';
import { buildTestHypervisor } from '../hypervisor/build.js';
import { findPromtool } from '../helpers/promtool.js';
import { labAvailability } from './lab-available.js';
import { guestFailure } from './scenario-asserts.js';

const SIZE = 256n * MiB;
/** How journalctl -x sets off catalog text: "░░ " in a UTF-8 locale, "-- " in others. */
const CATALOG_PREFIX = '(?:░░|--) ';
const VERSION = packageVersion();

function dpkgDeb(args: string[]): string {
  const run = spawnSync('dpkg-deb', args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  assert.equal(run.status, 0, `dpkg-deb ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

/** Paths in the .deb, without the leading `.`, directories left out. */
function packageFiles(deb: string): string[] {
  return dpkgDeb(['-c', deb]).split('\n')
    .filter((line) => line !== '' && !line.startsWith('d'))
    .map((line) => line.split(/\s+/).slice(5).join(' ').replace(/^\./, '').replace(/ -> .*$/, ''))
    .sort();
}

function packageDirectories(...debs: string[]): string[] {
  const dirs = new Set<string>();
  for (const deb of debs) {
    for (const line of dpkgDeb(['-c', deb]).split('\n')) {
      if (line.startsWith('d')) dirs.add(line.split(/\s+/).slice(5).join(' ').replace(/^\./, '').replace(/\/$/, '') || '/');
    }
  }
  return [...dirs].filter((dir) => dir !== '/').sort();
}

function runtimeFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    return entry.isDirectory() ? runtimeFiles(dir, path) : [path];
  });
}

test('the Debian package: built and checked on the host, then installed, upgraded, removed and purged in the Dom0', { timeout: 1_800_000 }, async (t) => {
  const availability = await labAvailability();
  if ('skip' in availability) {
    t.skip(availability.skip);
    return;
  }
  buildTestHypervisor();
  const startedAt = Date.now();
  const previous: BuiltPackage = buildPackage({ versionSuffix: '~prev', lintian: false });
  const current: BuiltPackage = buildPackage();
  t.diagnostic(`both packages built and the current one linted in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);

  await t.test('lintian: no error and no warning (overridden tags shown as O:)', () => {
    const lintian = current.lintian!;
    const shown = lintian.tags.map((tag) => `${tag.severity}: ${tag.tag} ${tag.detail}`.trim());
    t.diagnostic(`lintian (errors, warnings, overrides): ${shown.length === 0 ? 'nothing to report' : shown.join('; ')}`);
    assert.equal(lintian.status, 0, lintian.output);
    assert.deepEqual(lintian.tags.filter((tag) => tag.severity === 'E' || tag.severity === 'W'), []);
  });

  await t.test('fields: version from package.json, amd64, dependencies on Debian packages', () => {
    assert.equal(dpkgDeb(['-f', current.deb, 'Version']).trim(), VERSION);
    assert.equal(dpkgDeb(['-f', previous.deb, 'Version']).trim(), `${VERSION}~prev`);
    assert.equal(spawnSync('dpkg', ['--compare-versions', `${VERSION}~prev`, 'lt', VERSION]).status, 0);
    assert.equal(dpkgDeb(['-f', current.deb, 'Architecture']).trim(), 'amd64');
    const depends = dpkgDeb(['-f', current.deb, 'Depends']).trim().split(/,\s*/);
    for (const dependency of ['nodejs (>= 18.20)', 'libxencall1', 'libsystemd0', 'fdisk']) assert.ok(depends.includes(dependency), `${dependency} in ${depends.join(', ')}`);
    assert.ok(depends.some((dependency) => /^libudev1( |$)/.test(dependency)));
    assert.ok(depends.some((dependency) => /^libc6 /.test(dependency)), 'dh_shlibdeps read the addons');
  });

  await t.test('files: the runtime as built under /usr/lib/xen-pmem, and only the system directories', () => {
    const files = packageFiles(current.deb);
    const runtime = runtimeFiles(join(repositoryDir(), 'dist', 'runtime')).map((path) => `/usr/lib/xen-pmem/${path}`);
    assert.deepEqual(files.filter((path) => path.startsWith('/usr/lib/xen-pmem/')), runtime.sort());
    assert.deepEqual(files.filter((path) => !path.startsWith('/usr/lib/xen-pmem/') && !/^\/usr\/share\/doc\/xen-pmem\/[A-Za-z-]+\.md\.gz$/.test(path)), [
      '/etc/xen-pmem/config.json',
      '/usr/lib/systemd/catalog/xen-pmem.catalog',
      '/usr/lib/systemd/system/xen-pmemd.service',
      '/usr/lib/udev/rules.d/69-xen-pmem.rules',
      '/usr/sbin/xen-pmem',
      '/usr/sbin/xen-pmemd',
      '/usr/share/doc/xen-pmem/changelog.gz',
      '/usr/share/doc/xen-pmem/copyright',
      '/usr/share/doc/xen-pmem/examples/config.json',
      '/usr/share/man/man5/xen-pmem.json.5.gz',
      '/usr/share/man/man8/xen-pmem.8.gz',
      '/usr/share/man/man8/xen-pmemd.8.gz',
    ]);
  });

  await t.test('contents: the rendered unit, the rule, the launchers, a conffile the daemon accepts, pages man renders cleanly', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xen-pmem-deb-'));
    try {
      dpkgDeb(['-x', current.deb, dir]);
      dpkgDeb(['-e', current.deb, join(dir, 'DEBIAN')]);
      assert.equal(readFileSync(join(dir, 'usr/lib/systemd/system/xen-pmemd.service'), 'utf8'), packagedUnit());
      assert.equal(readFileSync(join(dir, 'usr/lib/udev/rules.d/69-xen-pmem.rules'), 'utf8'), readFileSync(join(repositoryDir(), RULE_TEMPLATE), 'utf8'));
      assert.equal(readFileSync(join(dir, 'usr/lib/systemd/catalog/xen-pmem.catalog'), 'utf8'), renderCatalog(), 'the catalog, rendered from the table the daemon uses');
      assert.match(readFileSync(join(dir, 'usr/sbin/xen-pmemd'), 'utf8'), /^exec '\/usr\/bin\/node' '--max-semi-space-size=1' '\/usr\/lib\/xen-pmem\/xen-pmemd\.mjs' "\$@"$/m);
      assert.equal(readFileSync(join(dir, 'DEBIAN/conffiles'), 'utf8'), '/etc/xen-pmem/config.json\n');
      const conffile = readFileSync(join(dir, 'etc/xen-pmem/config.json'), 'utf8');
      assert.equal(conffile, configJson(defaultConfig()));
      parseConfig(conffile, 'the conffile');
      // Every line of the maintainer scripts is debhelper's: inside its "Automatically added" blocks.
      for (const script of ['postinst', 'prerm', 'postrm']) {
        let inBlock = false;
        for (const line of readFileSync(join(dir, 'DEBIAN', script), 'utf8').split('\n')) {
          if (/^# Automatically added by dh_installsystemd\//.test(line)) inBlock = true;
          else if (line === '# End automatically added section') inBlock = false;
          else if (!inBlock) assert.ok(['#!/bin/sh', 'set -e', ''].includes(line), `${script}: "${line}" is not debhelper's`);
        }
      }
      // The packaged bundles run from their installed place, on this machine's node.
      const version = spawnSync(process.execPath, [join(dir, 'usr/lib/xen-pmem/xen-pmemd.mjs'), '--version'], { encoding: 'utf8' });
      assert.equal(version.stdout.trim(), `xen-pmemd ${VERSION}`, version.stderr);
      for (const page of ['usr/share/man/man8/xen-pmem.8.gz', 'usr/share/man/man8/xen-pmemd.8.gz', 'usr/share/man/man5/xen-pmem.json.5.gz']) {
        const man = spawnSync('man', ['--warnings', '-l', join(dir, page)], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80' } });
        assert.equal(man.status, 0, man.stderr);
        assert.equal(man.stderr, '', page);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  await t.test('lintian of Debian 13: no error and no warning either', async () => {
    const lintian = await lintianOnDebian13(current.deb);
    const shown = lintian.tags.map((tag) => `${tag.severity}: ${tag.tag} ${tag.detail}`.trim());
    t.diagnostic(`Debian 13's lintian ${lintian.version} (errors, warnings, overrides): ${shown.length === 0 ? 'nothing to report' : shown.join('; ')}`);
    assert.equal(lintian.status, 0, lintian.output);
    assert.deepEqual(lintian.tags.filter((tag) => tag.severity === 'E' || tag.severity === 'W'), []);
  });

  const promtool = findPromtool();
  const promtoolPath = !('path' in promtool) ? ''
    : isAbsolute(promtool.path) ? promtool.path
      : spawnSync('sh', ['-c', 'command -v "$0"', promtool.path], { encoding: 'utf8' }).stdout.trim();
  // The same maintainer steps in each Dom0: Debian 13 (systemd 257, merged /usr, node 20.19) and
  // Debian 12, whose root is the host's own.
  for (const dom0 of ['debian13', 'debian12'] as Dom0Release[]) {
    await t.test(`in the ${dom0} Dom0 (${availability.artifacts.releases[dom0].codename}): install, upgrade, remove, purge`, async (tr) => {
      const images = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
      let prepared: SuperblockOffsets;
      let collected: ScenarioRun<PackageScenarioResult>;
      const labStartedAt = Date.now();
      try {
        prepared = preparedImage(join(images, 'nv0.img'), SIZE);
        blankImage(join(images, 'nv1.img'), SIZE);
        collected = await withLab({
          artifacts: availability.artifacts,
          dom0,
          // The host's promtool, bound at its own path into a Dom0 whose root is not the host's.
          hostPaths: promtoolPath ? [promtoolPath] : [],
          nvdimms: [
            { id: 'nv0', imagePath: join(images, 'nv0.img'), sizeBytes: SIZE },
            { id: 'nv1', imagePath: join(images, 'nv1.img'), sizeBytes: SIZE },
          ],
          scenario: 'debian-package',
          env: {
            LAB_DEB_PREVIOUS: previous.deb,
            LAB_DEB_CURRENT: current.deb,
            LAB_PACKAGE_DIRS: packageDirectories(previous.deb, current.deb).join('\n'),
            LAB_PROMTOOL: promtoolPath,
          },
          timeoutMs: 1_200_000,
        }, async (lab) => {
          await lab.waitForFile('done');
          return readRun<PackageScenarioResult>(lab, PACKAGE_RESULT_FILE);
        });
      } finally {
        await rm(images, { recursive: true, force: true });
      }
      const got = collected.result ?? ({ phase: 'no result' } as PackageScenarioResult);
      const seconds = (ms: number | undefined): string => (ms === undefined ? '?' : (ms / 1000).toFixed(1));
      tr.diagnostic(`${dom0}: lab run ${((Date.now() - labStartedAt) / 1000).toFixed(1)} s; apt-get install ${seconds(got.install?.apt.ms)} s, upgrade ${seconds(got.upgrade?.apt.ms)} s, remove ${seconds(got.remove?.apt.ms)} s, purge ${seconds(got.purge?.apt.ms)} s`);
      const expected = got.facts ? expectedLayout(got.facts, prepared) : null;
      const addsOf = (log: string[] | undefined): string[] => (expected ? addsFor(log ?? [], expected.spfn) : []);
      const reportedLedgerLines = (ledger: string[] | undefined): string[] => (ledger ?? []).filter((line) => line.includes('"op":"reported"') && expected !== null && line.includes(`"spfn":"${expected.spfn}"`));

      const failure = (): string => `${guestFailure(collected)}${got.lastApt ? `\n--- the last apt-get (${got.lastApt.command}, exit ${got.lastApt.status}) ---\n${got.lastApt.stdout.slice(-3000)}\n${got.lastApt.stderr.slice(-2000)}` : ''}`;

      await tr.test('the guest scenario ran to its end', () => {
        assert.equal(collected.exitStatus, '0', failure());
        assert.equal(got.phase, 'done', failure());
      });

      await tr.test('install: enabled, started, the device reported once, the udev rule active, man xen-pmem works', () => {
        const { baseline, install } = got;
        assert.ok(baseline && install && expected, `no install result (guest stopped in phase ${got.phase})`);
        assert.match(baseline.dpkg, /not known to dpkg|not-installed/);
        assert.equal(baseline.udev.systemdWants, null, 'no SYSTEMD_WANTS before the package');
        assert.equal(install.dpkg, `install ok installed ${VERSION}~prev`);
        assert.deepEqual([install.unit.properties.UnitFileState, install.unit.properties.ActiveState], ['enabled', 'active']);
        assert.ok(install.pids.length > 0);
        assert.ok(install.ruleFile, '/usr/lib/udev/rules.d/69-xen-pmem.rules exists');
        assert.match(install.udev.systemdWants ?? '', /\bxen-pmemd\.service\b/, 'a change event now gets SYSTEMD_WANTS from the rule');
        assert.match(install.wantedBy, new RegExp(`sys-devices-\\S+-${got.watchDisk}\\.device`), `the disk's device unit wants the daemon (WantedBy=${install.wantedBy})`);
        const device = install.daemon.status?.devices.find((entry) => entry.device === got.disk);
        assert.deepEqual([device?.state, device?.layout?.pfns.spfn], ['reported', expected.spfn]);
        assert.equal(install.daemon.status?.daemon.pid?.toString(), install.unit.properties.MainPID);
        const adds = addsOf(install.daemon.hypervisorLog);
        assert.equal(adds.length, 1, install.daemon.hypervisorLog.join('\n'));
        assert.match(adds[0]!, / ret=0 OK /);
        assert.equal(install.man.status, 0, install.man.stderr);
        assert.match(install.man.stdout, /XEN-PMEM\(8\)/);
        assert.match(install.man.stdout, /xen-pmem setup DEVICE/);
        assert.deepEqual(install.manPaths.stdout.trim().split('\n'), [
          '/usr/share/man/man8/xen-pmem.8.gz', '/usr/share/man/man8/xen-pmemd.8.gz', '/usr/share/man/man5/xen-pmem.json.5.gz',
        ]);
        assert.equal(install.conffile, configJson(defaultConfig()));
        tr.diagnostic(`install: apt-get ${seconds(install.apt.ms)} s, dpkg -L lists ${install.files.length} paths`);
      });

      await tr.test('install: journalctl -x explains the daemon\'s lines from the catalog, MESSAGE_ID finds the report', () => {
        const { install } = got;
        assert.ok(install && expected, `no install result (guest stopped in phase ${got.phase})`);
        const { journal } = install;
        // systemd's trigger on /usr/lib/systemd/catalog rebuilt the index: every entry is in it.
        const ids = (Object.keys(CATALOG) as CatalogName[]).map(messageIdOf);
        assert.deepEqual(journal.catalog.map((line) => line.split(' ')[0]).sort(), [...ids].sort(), journal.catalog.join('\n'));
        assert.equal(journal.explained.status, 0, journal.explained.stderr);
        const text = journal.explained.stdout;
        assert.match(text, new RegExp(`^${CATALOG_PREFIX}Subject: pmem region of ${got.disk} reported to Xen$`, 'm'), text.slice(-3000));
        assert.match(text, new RegExp(`^${CATALOG_PREFIX}Xen accepted the report of ${got.disk}: the region at ${expected.regionStart}`, 'm'), 'the fields of the line are put into the text');
        assert.match(text, new RegExp(`^${CATALOG_PREFIX}Defined-By: xen-pmem$`, 'm'));
        assert.match(text, new RegExp(`^${CATALOG_PREFIX}Subject: Xen accepts pmem reports \\(xenpf-pmem\\)$`, 'm'), 'the hypervisor\'s line is explained too');
        assert.deepEqual(journal.reports.map((entry) => [field(entry, 'PMEM_DEVICE'), field(entry, 'MESSAGE_ID'), field(entry, '_SYSTEMD_UNIT'), field(entry, 'PMEM_SPFN')]), [
          [got.disk, messageIdOf('reported'), 'xen-pmemd.service', expected.spfn],
        ]);
        const lines = text.split('\n');
        const at = lines.findIndex((line) => line.includes(`${got.disk}: reported region`));
        tr.diagnostic(`journalctl -x -u xen-pmemd (the report and its explanation):\n${lines.slice(at, at + 18).join('\n')}`);
      });

      await tr.test('install: the metrics file is readable by node_exporter\'s kind of user, its directory is not listable, promtool accepts it', (tt) => {
        const { install } = got;
        assert.ok(install, `no install result (guest stopped in phase ${got.phase})`);
        const { metrics } = install;
        tt.diagnostic(`metrics file in the Dom0, read as nobody:\n${metrics.readAsNobody.stdout}`);
        if (metrics.promtool) tt.diagnostic(`promtool check metrics in the Dom0: exit ${metrics.promtool.status} ${`${metrics.promtool.stdout}${metrics.promtool.stderr}`.trim() || '(no findings)'}`);
        assert.equal(metrics.runDirMode, 0o711);
        assert.equal(metrics.readAsNobody.status, 0, metrics.readAsNobody.stderr);
        for (const line of ['xen_pmem_up 1', 'xen_pmem_ready 1', 'xen_pmem_devices{state="reported"} 1', 'xen_pmem_reports_total 1', 'xen_pmem_hypervisor_accepts_reports 1']) {
          assert.ok(metrics.readAsNobody.stdout.split('\n').includes(line), `${line} in\n${metrics.readAsNobody.stdout}`);
        }
        assert.notEqual(metrics.listAsNobody.status, 0, 'nobody cannot list /run/xen-pmem');
        assert.match(metrics.listAsNobody.stderr, /Permission denied/);
        if (metrics.promtool === null) {
          tt.diagnostic(`promtool not run in the Dom0: ${'skip' in promtool ? promtool.skip : 'no path'}`);
        } else {
          assert.equal(metrics.promtool.status, 0, `${metrics.promtool.stdout}${metrics.promtool.stderr}`);
          assert.equal(`${metrics.promtool.stdout}${metrics.promtool.stderr}`.trim(), '', 'no findings');
        }
      });

      await tr.test('upgrade with an edited conffile: restarted, nothing reported twice, the edit kept and in effect', () => {
        const { install, edit, upgrade } = got;
        assert.ok(install && edit && upgrade && expected, `no upgrade result (guest stopped in phase ${got.phase})`);
        assert.equal(upgrade.dpkg, `install ok installed ${VERSION}`);
        assert.notEqual(upgrade.unit.properties.MainPID, upgrade.before.properties.MainPID, 'a new daemon process');
        assert.ok(Number(upgrade.unit.properties.ExecMainStartTimestampMonotonic) > Number(upgrade.before.properties.ExecMainStartTimestampMonotonic));
        assert.deepEqual([upgrade.unit.properties.UnitFileState, upgrade.unit.properties.ActiveState], ['enabled', 'active']);
        assert.equal(upgrade.conffile, edit.after, 'the edited conffile is the one in place');
        assert.deepEqual(upgrade.confDir, ['config.json'], 'no .dpkg-dist or .dpkg-new beside it');
        assert.doesNotMatch(upgrade.apt.stdout, /Configuration file .*config\.json/, 'dpkg did not ask about the conffile');
        assert.ok(upgrade.debugEntries.length > 0, 'the upgraded daemon logs at debug, as the edited file says');
        assert.ok(upgrade.debugEntries.every((entry) => field(entry, 'PRIORITY') === '7' && field(entry, '_PID') === upgrade.unit.properties.MainPID));
        const adds = addsOf(upgrade.daemon.hypervisorLog);
        assert.equal(adds.length, 1, `the region was sent ${adds.length} times:\n${adds.join('\n')}`);
        assert.equal(reportedLedgerLines(upgrade.daemon.ledger).length, 1, upgrade.daemon.ledger.join('\n'));
        const device = upgrade.daemon.status?.devices.find((entry) => entry.device === got.disk);
        assert.equal(device?.state, 'reported');
        assert.equal(upgrade.daemon.status?.daemon.pid?.toString(), upgrade.unit.properties.MainPID);
        assert.equal(upgrade.journal.reports.length, 1, 'MESSAGE_ID of a report finds one line in the boot: the upgraded daemon reported nothing');
        // The disk went away when the first daemon unbound its namespace for Xen: the upgraded one
        // finds the namespace it holds (no disk to decide again) and keeps the record, with its note.
        assert.equal(device?.reason, 'reported');
        assert.ok((device?.notes ?? []).some((note) => /^Xen holds this region; the Dom0 no longer sees the device \(namespace\d+\.\d+ unbound from nd_pmem before the report\)$/.test(note)), JSON.stringify(device));
        assert.deepEqual(upgrade.journal.reportedEarlier, [], 'no reported-earlier line: there was no disk to decide again');
        tr.diagnostic(`upgrade: apt-get ${seconds(upgrade.apt.ms)} s; MainPID ${upgrade.before.properties.MainPID} → ${upgrade.unit.properties.MainPID}; ${upgrade.debugEntries.length} debug lines; hypervisor log ${upgrade.daemon.hypervisorLog.length} lines, ${adds.length} add for spfn ${expected.spfn}`);
      });

      await tr.test('remove: the daemon stopped, the rule gone, the ledger and the conffile kept', () => {
        const { remove, edit } = got;
        assert.ok(remove && edit && expected, `no remove result (guest stopped in phase ${got.phase})`);
        assert.equal(remove.dpkg, `deinstall ok config-files ${VERSION}`);
        assert.equal(remove.before.properties.ActiveState, 'active');
        assert.deepEqual([remove.unit.properties.ActiveState, remove.unit.properties.LoadState], ['inactive', 'not-found']);
        assert.deepEqual(remove.pids, []);
        assert.equal(remove.oldPidAlive, false, `the daemon (pid ${remove.before.properties.MainPID}) is gone`);
        assert.equal(remove.ruleFile, false);
        assert.equal(remove.udev.systemdWants, null, 'a change event no longer gets SYSTEMD_WANTS');
        assert.equal(remove.unitAfterTrigger.properties.ActiveState, 'inactive', 'nothing started the daemon again');
        assert.equal(remove.conffile, edit.after, 'remove keeps the conffile');
        assert.ok(remove.runDir.includes('ledger.jsonl'), `/run/xen-pmem holds ${remove.runDir.join(' ')}`);
        assert.equal(reportedLedgerLines(remove.ledger).length, 1);
        tr.diagnostic(`remove: apt-get ${seconds(remove.apt.ms)} s; /run/xen-pmem: ${remove.runDir.join(' ')}; enablement link left for purge: ${remove.enablementLink}`);
      });

      await tr.test('purge: nothing of the package left on disk; /run/xen-pmem stays until reboot', () => {
        const { baseline, purge } = got;
        assert.ok(baseline && purge, `no purge result (guest stopped in phase ${got.phase})`);
        assert.match(purge.dpkg, /not known to dpkg|not-installed/);
        assert.equal(purge.etcDir, false, '/etc/xen-pmem is gone');
        const diff = diffListings(baseline.listing, purge.listing);
        assert.deepEqual(leftovers(diff), { added: [], removed: [] });
        // The one trace with the name: man-db's formatted copy of xen-pmem(8), made when the scenario
        // read the page with man, and expired by man-db itself.
        const named = diff.added.filter((path) => /xen-pmem/.test(path));
        assert.ok(named.every(isCatPage), `only man-db's copies of pages read may carry the name: ${named.join(', ')}`);
        assert.ok(purge.runDir.includes('ledger.jsonl'));
        assert.deepEqual(purge.catalog, [], 'the trigger ran again on removal: no xen-pmem entry left in the catalog index');
        tr.diagnostic(`purge: apt-get ${seconds(purge.apt.ms)} s; ${baseline.listing.length} paths listed before install, ${purge.listing.length} after purge; `
          + `added since: ${diff.added.join(', ') || 'none'}; gone since: ${diff.removed.join(', ') || 'none'}`);
      });
    });
  }
});
