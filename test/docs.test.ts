// The documents may not drift from the program: every xen-pmem or xen-pmemd command line they
// show uses a command and options its --help lists, the configuration section names every field of
// the schema with an example the daemon accepts, and the Node releases they name are the ones the
// tests run on.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { COMMANDS } from '../src/cli/xen-pmem.js';
import { parseConfig } from '../src/daemon/config-schema.js';
import { DAEMON_HELP } from '../src/daemon/usage.js';
import { configFields } from '../packaging/man/config-doc.js';
import { optionNames, parseHelp } from '../packaging/man/help-text.js';
import { NODE_RELEASES } from './node-releases.js';

const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));
const DOCUMENTS = ['README.md', ...readdirSync(join(PROJECT_DIR, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
const read = (path: string): string => readFileSync(join(PROJECT_DIR, path), 'utf8');

/** Code in a Markdown text: the lines of fenced blocks and the inline code spans elsewhere. */
export function codeIn(markdown: string): string[] {
  const code: string[] = [];
  const prose = markdown.replace(/^```[^\n]*\n([\s\S]*?)^```$/gm, (_, block: string) => {
    code.push(...block.split('\n'));
    return '';
  });
  for (const span of prose.matchAll(/`([^`\n]+)`/g)) code.push(span[1]!);
  return code;
}

interface Invocation {
  program: 'xen-pmem' | 'xen-pmemd';
  command: string | null;
  options: string[];
  text: string;
}

/** `xen-pmem setup /dev/pmem0 --force # note` → program, command and options, up to a comment or a pipe. */
export function invocations(code: string): Invocation[] {
  const found: Invocation[] = [];
  for (const match of code.matchAll(/(?:^|[\s/])(xen-pmemd?)(?:\.m?js)?((?: +[^\s#|;&]+)*)/g)) {
    const program = match[1] as Invocation['program'];
    const words = match[2]!.trim().split(/ +/).filter((word) => word !== '');
    const command = program === 'xen-pmem' && words[0] && /^[a-z][a-z-]*$/.test(words[0]) ? words[0] : null;
    const options = words.flatMap((word) => /^\[?(--[a-z][a-z-]*)/.exec(word)?.[1] ?? []);
    found.push({ program, command, options, text: match[0].trim() });
  }
  return found;
}

describe('command lines in the documents', () => {
  const daemonOptions = new Set(optionNames(parseHelp(DAEMON_HELP, 'xen-pmemd')));
  const commandOptions = new Map(COMMANDS.map((command) => [command.name, new Set(optionNames(parseHelp(command.help, command.name)))]));
  const everywhere = new Set(['--help', '--version']);

  for (const document of DOCUMENTS) {
    it(`${document} uses only commands and options that exist`, () => {
      const problems: string[] = [];
      for (const code of codeIn(read(document))) {
        for (const call of invocations(code)) {
          if (call.program === 'xen-pmemd') {
            for (const option of call.options) if (!daemonOptions.has(option) && !everywhere.has(option)) problems.push(`${call.text}: xen-pmemd has no ${option}`);
            continue;
          }
          if (call.command === null) continue;
          const options = commandOptions.get(call.command);
          if (!options) {
            problems.push(`${call.text}: xen-pmem has no command ${call.command}`);
            continue;
          }
          for (const option of call.options) if (!options.has(option) && !everywhere.has(option)) problems.push(`${call.text}: xen-pmem ${call.command} has no ${option}`);
        }
      }
      assert.deepEqual(problems, []);
    });
  }

  it('the checker reads command lines the way the documents write them', () => {
    assert.deepEqual(codeIn('a `xen-pmem status --json` b\n```sh\nxen-pmem setup X --force # c\n```\n'), ['xen-pmem setup X --force # c', '', 'xen-pmem status --json']);
    assert.deepEqual(invocations('node dist/runtime/xen-pmem.mjs install --prefix /opt # --root'), [
      { program: 'xen-pmem', command: 'install', options: ['--prefix'], text: '/xen-pmem.mjs install --prefix /opt' },
    ]);
    assert.deepEqual(invocations('xen-pmem list [--json] [--human]')[0]?.options, ['--json', '--human']);
    assert.deepEqual(invocations('xen-pmemd --log-level debug')[0], { program: 'xen-pmemd', command: null, options: ['--log-level'], text: 'xen-pmemd --log-level debug' });
  });
});

describe('package file names in the documents', () => {
  const { version } = JSON.parse(read('package.json')) as { version: string };
  for (const document of DOCUMENTS) {
    it(`${document} names the .deb of package.json's version (or a placeholder)`, () => {
      const named = [...read(document).matchAll(/xen-pmem_([^_\s`]+)_amd64\.deb/g)].map((m) => m[1]!);
      // VERSION, NEWER, VERSION~prev: placeholders in capitals, with a suffix at most.
      assert.deepEqual(named.filter((name) => name !== version && !/^[A-Z]+(~[a-z]+)?$/.test(name)), []);
    });
  }
});

describe('the configuration in docs/daemon.md', () => {
  const section = read('docs/daemon.md').split('## Configuration')[1]?.split('\n## ')[0] ?? '';

  it('names every top-level field of the schema', () => {
    const topLevel = configFields().map((field) => field.path).filter((path) => !path.includes('.'));
    assert.deepEqual(topLevel.filter((name) => !section.includes(`\`${name}\``)), []);
  });

  it('shows an example the daemon accepts', () => {
    const example = /```json\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(example, 'a JSON example');
    parseConfig(example, 'docs/daemon.md');
  });
});

describe('Node releases in the documents', () => {
  const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
  const floor = /^>=(\d+\.\d+)$/.exec(engines)?.[1];

  it('package.json names a floor, and the lowest release tested is of it', () => {
    assert.ok(floor, `engines.node is ${engines}`);
    assert.ok(NODE_RELEASES[0]!.version.startsWith(`${floor}.`), `${NODE_RELEASES[0]!.version} is not a ${floor} release`);
  });

  for (const document of ['README.md', 'docs/operations.md']) {
    it(`${document} names the floor and the releases the tests run on`, () => {
      const text = read(document);
      assert.ok(text.includes(`Node.js ${floor}`), `"Node.js ${floor}"`);
      for (const release of NODE_RELEASES) assert.ok(text.includes(release.version), release.version);
    });
  }
});
