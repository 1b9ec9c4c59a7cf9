// Assertions the daemon scenarios share: journal fields against expected values, and a failure
// message that shows what the guest printed last.

import assert from 'node:assert/strict';

import { field, type JournalEntry } from '../../lab/guest/daemon-results.js';
import type { ScenarioRun } from '../../lab/scenario-run.js';

export function assertFields(entry: JournalEntry, expected: Record<string, string>): void {
  const actual = Object.fromEntries(Object.keys(expected).map((name) => [name, field(entry, name)]));
  assert.deepEqual(actual, expected, `journal fields of: ${field(entry, 'MESSAGE')}`);
}

/** Why a guest scenario did not end well: its own words, its log and the serial console. */
export function guestFailure(run: ScenarioRun<unknown>): string {
  const result = run.result as { failure?: { phase: string; message: string } } | null;
  return [
    `the guest scenario ended with exit status ${run.exitStatus}${result?.failure ? ` in phase ${result.failure.phase}: ${result.failure.message}` : ''}`,
    '--- scenario.log (end) ---', run.scenarioLogTail,
    '--- last lines of the serial log ---', run.serialTail,
  ].join('\n');
}
