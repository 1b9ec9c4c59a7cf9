// The README promises two set-up commands and CI must run the test one as written.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');
const ci = readFileSync(new URL('.ci/run', root), 'utf8');

function setupCommands(): string[] {
  const section = readme.split('## Set-up: two commands')[1]?.split('\n## ')[0] ?? '';
  return [...section.matchAll(/```sh\n([^`]*?)\n```/g)].map((m) => m[1]!.trim());
}

test('the README has exactly two set-up commands: the demo and the tests', () => {
  const commands = setupCommands();
  assert.equal(commands.length, 2);
  assert.match(commands[0]!, /npm run demo$/);
  assert.match(commands[1]!, /npm test$/);
  for (const command of commands) assert.doesNotMatch(command, /\n/, 'each is a single line');
});

test('.ci/run runs the README test command verbatim', () => {
  const testCommand = setupCommands()[1]!;
  assert.ok(ci.split('\n').some((line) => line.trim() === testCommand), `.ci/run must contain: ${testCommand}`);
});
