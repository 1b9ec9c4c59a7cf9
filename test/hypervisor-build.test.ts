// The parts of lab/hypervisor.ts and lab/mutants.ts that need no apt and no compiler: the series
// file, its hash (the cache key), the check that series and patches/ agree, the .dsc reader, the
// private apt options, the series a lab run may be pointed at, and the mutants' patches.

import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { dscFiles, hypervisorSeriesDir, parseSeries, privateAptOptions, readSeries, seriesHash, seriesOverride, seriesProblems, variantFromEnv, XEN_BASES } from '../lab/hypervisor.js';
import { failures, MUTANTS, xenPanic } from '../lab/mutants.js';

for (const base of XEN_BASES) {
  describe(`the patch series for Xen ${base} in hypervisor/`, () => {
    const dir = hypervisorSeriesDir(base);

    it('lists existing patches/*.patch files, and every patch there is listed', () => {
      assert.deepEqual(seriesProblems(dir), []);
      assert.ok(readSeries(dir).length > 0);
    });

    it('has patches that patch -p1 can take: a subject, then unified diffs with a/ and b/ prefixes', () => {
      for (const name of readSeries(dir)) {
        const text = readFileSync(join(dir, name), 'utf8');
        assert.match(text, /^Subject: \S/, `${name} starts with its subject`);
        const diffs = [...text.matchAll(/^diff --git a\/(\S+) b\/(\S+)$/gm)];
        assert.ok(diffs.length > 0, `${name} has no diff`);
        for (const [, from, to] of diffs) assert.equal(from, to, `${name}: ${from} renamed`);
      }
    });

    it('keeps the fixes to Xen\'s own code first, each with a Fixes: tag naming a commit and its subject', () => {
      const fixes = readSeries(dir).slice(0, 3).map((name) => readFileSync(join(dir, name), 'utf8'));
      for (const text of fixes) assert.match(text, /^Fixes: [0-9a-f]{12} \(".+"\)$/m);
    });
  });
}

describe('the two series', () => {
  it('carry the same patches, by subject and in order: one ABI on both bases', () => {
    const subjects = (base: (typeof XEN_BASES)[number]): string[] => readSeries(hypervisorSeriesDir(base)).map((name) => readFileSync(join(hypervisorSeriesDir(base), name), 'utf8').split('\n')[0]!);
    assert.deepEqual(subjects('4.17'), subjects('4.20'));
  });
});

describe('seriesHash', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'xen-pmem-series-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  const copy = (name: string): string => {
    const target = join(scratch, name);
    cpSync(hypervisorSeriesDir(), target, { recursive: true });
    return target;
  };

  it('changes when a listed patch changes', () => {
    const dir = copy('changed');
    const before = seriesHash(dir);
    const first = join(dir, readSeries(dir)[0]!);
    writeFileSync(first, readFileSync(first, 'utf8').replace('Subject:', 'Subject: (edited)'));
    assert.notEqual(seriesHash(dir), before);
  });

  it('changes when the series order changes', () => {
    const dir = copy('reordered');
    const before = seriesHash(dir);
    const names = readSeries(dir);
    writeFileSync(join(dir, 'series'), [...names].reverse().join('\n') + '\n');
    assert.notEqual(seriesHash(dir), before);
  });

  it('does not change for file times, an unlisted file, or the same bytes written again', () => {
    const dir = copy('unchanged');
    const before = seriesHash(dir);
    const first = join(dir, readSeries(dir)[0]!);
    writeFileSync(first, readFileSync(first));
    utimesSync(first, new Date(0), new Date(0));
    writeFileSync(join(dir, 'NOTES.txt'), 'not part of the series\n');
    assert.equal(seriesHash(dir), before);
    assert.equal(seriesHash(hypervisorSeriesDir()), before, 'a copy hashes like the original');
  });

  it('seriesProblems names a listed patch that is missing and a patch that is not listed', () => {
    const dir = copy('broken');
    const [first, second] = readSeries(dir);
    unlinkSync(join(dir, first!));
    writeFileSync(join(dir, 'series'), readFileSync(join(dir, 'series'), 'utf8').replace(`${second}\n`, ''));
    assert.deepEqual(seriesProblems(dir), [`${first} is listed but missing`, `${second} is not listed in series`]);
  });
});

describe('parseSeries, dscFiles, privateAptOptions', () => {
  it('parseSeries drops comments and blank lines', () => {
    assert.deepEqual(parseSeries('# the series\npatches/0001-a.patch\n\n  patches/0002-b.patch  # second\n'), ['patches/0001-a.patch', 'patches/0002-b.patch']);
  });

  it('dscFiles reads the file names of a .dsc', () => {
    const dsc = [
      'Format: 3.0 (quilt)',
      'Source: xen',
      'Version: 4.17.5+72-g01140da4e8-1',
      'Checksums-Sha256:',
      ' 0123 4735560 xen_4.17.5+72-g01140da4e8.orig.tar.xz',
      ' 4567 139916 xen_4.17.5+72-g01140da4e8-1.debian.tar.xz',
      'Files:',
      ' 89ab 4735560 xen_4.17.5+72-g01140da4e8.orig.tar.xz',
      ' cdef 139916 xen_4.17.5+72-g01140da4e8-1.debian.tar.xz',
      'Homepage: https://xenproject.org/',
    ].join('\n');
    assert.deepEqual(dscFiles(dsc), ['xen_4.17.5+72-g01140da4e8.orig.tar.xz', 'xen_4.17.5+72-g01140da4e8-1.debian.tar.xz']);
  });

  it('privateAptOptions keeps every apt directory and list under the lab\'s own directory', () => {
    const options = privateAptOptions('/cache/apt');
    const values = options.filter((_, index) => index % 2 === 1);
    assert.ok(options.filter((_, index) => index % 2 === 0).every((flag) => flag === '-o'));
    for (const name of ['Dir::Etc::SourceList', 'Dir::Etc::SourceParts', 'Dir::State::Lists', 'Dir::Cache']) {
      const value = values.find((option) => option.startsWith(`${name}=`));
      assert.ok(value?.startsWith(`${name}=/cache/apt/`), `${name} is private: ${value}`);
    }
    assert.ok(values.includes('APT::Sandbox::User=root'));
  });
});

describe('XEN_PMEM_XEN_SERIES', () => {
  it('names a series directory for one base, and nothing when unset', () => {
    assert.deepEqual(seriesOverride({ XEN_PMEM_XEN_SERIES: '4.17:/tmp/series' }), { base: '4.17', dir: '/tmp/series' });
    assert.equal(seriesOverride({}), null);
  });

  it('refuses a value without a known base, saying what it expects', () => {
    for (const value of ['/tmp/series', '4.18:/tmp/series']) {
      assert.throws(() => seriesOverride({ XEN_PMEM_XEN_SERIES: value }), /expected BASE:DIR with BASE one of 4\.20, 4\.17/);
    }
  });
});

describe('XEN_PMEM_XEN_VARIANT', () => {
  it('names a configuration of the build matrix, Debian\'s own when unset', () => {
    assert.equal(variantFromEnv({}), 'debian');
    assert.equal(variantFromEnv({ XEN_PMEM_XEN_VARIANT: 'debug' }), 'debug');
    assert.throws(() => variantFromEnv({ XEN_PMEM_XEN_VARIANT: 'toString' }), /the configurations are debian, debug, pv32, bigmem, flask, all/);
  });
});

describe('the mutants of hypervisor/mutants/', () => {
  const mutantsDir = join(hypervisorSeriesDir('4.20'), 'mutants');

  it('has a patch for every mutant npm run mutants knows, and no other', () => {
    const onDisk = XEN_BASES.flatMap((base) => (existsSync(join(mutantsDir, base)) ? readdirSync(join(mutantsDir, base)).map((file) => `${base}/${file}`) : []));
    assert.deepEqual(onDisk.sort(), MUTANTS.map((mutant) => `${mutant.base}/${mutant.name}.patch`).sort());
  });

  it('each says what it takes out, and changes only lines the series itself adds (so it still applies)', () => {
    for (const mutant of MUTANTS) {
      const text = readFileSync(join(mutantsDir, mutant.base, `${mutant.name}.patch`), 'utf8');
      assert.match(text, /^Mutant for the lab tests, never part of the series: \S/, `${mutant.name} starts with what it does`);
      const seriesDir = hypervisorSeriesDir(mutant.base);
      const added = new Set(readSeries(seriesDir).flatMap((name) => readFileSync(join(seriesDir, name), 'utf8').split('\n').filter((line) => line.startsWith('+') && !line.startsWith('+++')).map((line) => line.slice(1))));
      const touched = text.split('\n').filter((line) => /^[ -]/.test(line) && !line.startsWith('---')).map((line) => line.slice(1));
      assert.ok(touched.length > 0, `${mutant.name} has hunks`);
      for (const line of touched) assert.ok(line.trim() === '' || added.has(line), `${mutant.name}: "${line}" is not a line the ${mutant.base} series adds`);
    }
  });
});

describe('failures', () => {
  it('lists the failing tests of a spec report, each with the message under it and without the stack', () => {
    const output = [
      '✔ something else (1.2ms)',
      '✖ failing tests:',
      '',
      'test at dist/test/lab/patched-xen.test.js:80:3',
      '✖ route: DOMID_XEN maps the M2P chunk (0.99ms)',
      '  AssertionError [ERR_ASSERTION]: first M2P chunk: 16 !== 0',
      '      at TestContext.<anonymous> (file:///x.js:194:16)',
      '',
      'test at dist/test/lab/patched-xen.test.js:90:3',
      '✖ a PV DomU is saved and restored (0.32ms)',
      '  AssertionError [ERR_ASSERTION]: afterSlot: xl save exited 1',
      '  xc: error: Failed to mmap() m2p ranges (16 = Device or resource busy)',
      '      at TestContext.<anonymous> (file:///x.js:200:16)',
    ].join('\n');
    assert.deepEqual(failures(output), [
      { name: 'route: DOMID_XEN maps the M2P chunk', message: 'AssertionError [ERR_ASSERTION]: first M2P chunk: 16 !== 0' },
      { name: 'a PV DomU is saved and restored', message: 'AssertionError [ERR_ASSERTION]: afterSlot: xl save exited 1 xc: error: Failed to mmap() m2p ranges (16 = Device or resource busy)' },
    ]);
    assert.deepEqual(failures('✔ all passed (1ms)\n'), []);
  });
});

describe('xenPanic', () => {
  it('says what Xen panicked with and in which function, from the serial log a failure quotes', () => {
    const quoted = "    serialTail: '(XEN) Xen call trace:\\n(XEN)    [<ffff82d04030f341>] R put_page_from_l1e+0x81/0x130\\n(XEN)    [<ffff82d0402f3090>] S ptwr_emulated_update+0x180/0x350\\n(XEN) ****************************************\\n(XEN) Panic on CPU 0:\\n(XEN) FATAL PAGE FAULT\\n(XEN) [error_code=0000]\\n'";
    assert.equal(xenPanic(quoted), 'FATAL PAGE FAULT in put_page_from_l1e+0x81/0x130');
    assert.equal(xenPanic('(XEN) pmem: added region [0x240000, 0x250000)\n'), null);
  });
});
