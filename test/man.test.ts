// The manual pages (packaging/man): made from the help texts and the config schema, so that
// `--help` and the pages say the same; rendered by groff and man without a single warning.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { COMMANDS } from '../src/cli/xen-pmem.js';
import { parseConfig } from '../src/daemon/config-schema.js';
import { DAEMON_HELP } from '../src/daemon/usage.js';
import { buildEpoch, changelogDate, isoDate } from '../packaging/build-date.js';
import { configFields, configJson, defaultConfig, EXAMPLE_CONFIG, FIELD_TEXT } from '../packaging/man/config-doc.js';
import { HelpShapeError, parseHelp } from '../packaging/man/help-text.js';
import { manPages } from '../packaging/man/pages.js';
import { escape, line, usage } from '../packaging/man/roff.js';
import { MAN_DIR } from '../packaging/man/build.js';

const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string }).version;
const CONTEXT = { version: VERSION, date: isoDate(buildEpoch(PROJECT_DIR)) };
const pages = Object.fromEntries(manPages(CONTEXT).map((page) => [page.file, page.text]));

describe('help texts have the one shape the pages are made from', () => {
  for (const command of COMMANDS) {
    it(`xen-pmem ${command.name}`, () => {
      const help = parseHelp(command.help, command.name);
      assert.match(help.usage, new RegExp(`^xen-pmem ${command.name}( |$)`));
      assert.ok(help.paragraphs.length > 0, 'a description');
      assert.ok(help.options.some((option) => option.flags.includes('--help')), '--help is listed');
      assert.ok(help.exitCodes, 'an "Exit codes:" line');
    });
  }

  it('xen-pmemd', () => {
    const help = parseHelp(DAEMON_HELP, 'xen-pmemd');
    assert.match(help.usage, /^xen-pmemd /);
    assert.match(help.exitCodes ?? '', /\b78\b/);
  });

  it('refuses other shapes, naming what it found', () => {
    assert.throws(() => parseHelp('xen-pmem x\n\ntext', 'x'), HelpShapeError);
    assert.throws(() => parseHelp('Usage: x\n\n  --a  text\n\n  --b  more', 'x'), /one block/);
    assert.throws(() => parseHelp('Usage: x\n\n  --a  text\n   stray', 'x'), /"   stray" is neither/);
    assert.throws(() => parseHelp('Usage: x\n\nExit codes: 0\n\nafter', 'x'), /nothing may follow/);
    assert.throws(() => parseHelp('Usage: x\n\n  --a', 'x'), /no description/);
    const parsed = parseHelp('Usage: x [--a N]\n\nOne\nparagraph.\n\n  --a N   first\n          second\n  --b     switch\n\nExit codes: 0 fine.', 'x');
    assert.deepEqual(parsed, {
      usage: 'x [--a N]',
      paragraphs: ['One paragraph.'],
      options: [{ flags: ['--a'], argument: 'N', text: 'first second' }, { flags: ['--b'], argument: null, text: 'switch' }],
      exitCodes: '0 fine.',
    });
  });
});

describe('the pages say what --help says', () => {
  it('xen-pmem(8) has every command, its usage, paragraphs, options and exit codes', () => {
    const page = pages['xen-pmem.8']!;
    for (const command of COMMANDS) {
      const help = parseHelp(command.help, command.name);
      assert.ok(page.includes(`.SS ${escape(command.name)}\n${usage(help.usage)}\n`), `section for ${command.name}`);
      for (const text of help.paragraphs) assert.ok(page.includes(line(text)), `${command.name}: ${text}`);
      for (const option of help.options) {
        assert.ok(page.includes(`.TP\n\\fB${escape(option.flags[0]!)}\\fR`), `${command.name} ${option.flags[0]}`);
        assert.ok(page.includes(line(option.text)), `${command.name} ${option.flags[0]}: ${option.text}`);
      }
      assert.ok(page.includes(line(`Exit codes: ${help.exitCodes}`)));
    }
  });

  it('xen-pmemd(8) has the daemon\'s usage, options and exit codes', () => {
    const page = pages['xen-pmemd.8']!;
    const help = parseHelp(DAEMON_HELP, 'xen-pmemd');
    assert.ok(page.includes(`.SH "SYNOPSIS"\n${usage(help.usage)}\n`));
    for (const option of help.options) assert.ok(page.includes(line(option.text)), option.flags[0]);
    assert.ok(page.includes(line(help.exitCodes!)));
  });

  it('xen-pmem.json(5) has every field of the schema, with its default', () => {
    const page = pages['xen-pmem.json.5']!;
    const fields = configFields();
    assert.deepEqual(fields.map((field) => field.path).sort(), Object.keys(FIELD_TEXT).sort(), 'a sentence for each field and none for a field that is gone');
    for (const field of fields) {
      assert.ok(page.includes(`.TP\n\\fB${escape(field.path)}\\fR`), field.path);
      if (field.defaultJson !== null) assert.ok(page.includes(escape(`default ${field.defaultJson}`)), `${field.path} default`);
    }
    assert.deepEqual(fields.find((field) => field.path === 'retry.initialMs'), {
      path: 'retry.initialMs', type: 'integer from 10 to 600000', defaultJson: '1000', text: FIELD_TEXT['retry.initialMs'],
    });
  });

  it('the example and the default file are configurations the daemon accepts', () => {
    assert.deepEqual(parseConfig(configJson(EXAMPLE_CONFIG), 'example'), parseConfig(JSON.stringify(EXAMPLE_CONFIG), 'example'));
    assert.deepEqual(parseConfig(configJson(defaultConfig()), 'default'), defaultConfig());
    assert.equal(configJson({ a: [], b: ['x', 'y'] }), '{\n  "a": [],\n  "b": ["x", "y"]\n}\n');
  });

  it('xen-pmemd --help prints DAEMON_HELP', () => {
    const run = spawnSync(process.execPath, [join(PROJECT_DIR, 'dist/src/daemon/xen-pmemd.js'), '--help'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, `${DAEMON_HELP}\n`);
  });

  it('the build wrote these pages (npm run build)', () => {
    for (const [file, text] of Object.entries(pages)) assert.equal(readFileSync(join(MAN_DIR, file), 'utf8'), text, `${file} in ${MAN_DIR} is stale`);
  });
});

describe('roff', () => {
  it('escapes backslashes, dashes, leading dots and anything outside ASCII', () => {
    assert.equal(escape('a\\b --json'), 'a\\eb \\-\\-json');
    assert.equal(line('.hidden'), '\\&.hidden');
    assert.equal(line("'quoted"), "\\&'quoted");
    assert.equal(escape('≤ 2 s'), '\\[u2264] 2 s');
    assert.equal(usage('xen-pmem setup DEVICE [--force]'), '\\fBxen\\-pmem\\fR \\fBsetup\\fR \\fIDEVICE\\fR [\\fB\\-\\-force\\fR]');
  });

  it('dates are UTC and fixed by SOURCE_DATE_EPOCH', () => {
    assert.equal(buildEpoch(PROJECT_DIR, { SOURCE_DATE_EPOCH: '1796157219' }), 1796157219);
    assert.equal(isoDate(1796157219), '2026-12-01');
    assert.equal(changelogDate(1796157219), 'Tue, 01 Dec 2026 20:33:39 +0000');
  });
});

function hasCommand(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

describe('rendering', () => {
  for (const file of Object.keys(pages)) {
    it(`groff -ww finds nothing to warn about in ${file}`, { skip: hasCommand('groff', ['--version']) ? false : 'groff is not installed (Debian package groff-base)' }, () => {
      const run = spawnSync('groff', ['-ww', '-z', '-b', '-man', '-Tutf8', join(MAN_DIR, file)], { encoding: 'utf8' });
      assert.equal(run.status, 0);
      assert.equal(run.stderr, '');
    });

    it(`man --warnings -l renders ${file} without a warning`, { skip: hasCommand('man', ['--version']) ? false : 'man is not installed (Debian package man-db)' }, () => {
      const run = spawnSync('man', ['--warnings', '-l', join(MAN_DIR, file)], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '80', MAN_KEEP_FORMATTING: '' } });
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stderr, '');
      assert.match(run.stdout, /^NAME$/m);
      assert.match(run.stdout, /^SEE ALSO$/m);
    });
  }
});
