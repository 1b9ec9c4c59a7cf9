// The host's side of a scenario that talks back: wait for a marker unless the guest ended first
// (a failed scenario still writes `done` and powers off), and collect what it left in the share,
// with the ends of its log and of the serial console for when something went wrong.

import { readFile } from 'node:fs/promises';

import { describePhaseTimes, phaseTimes } from './timeline.js';
import type { Lab } from './vm.js';

export interface ScenarioRun<T> {
  /** The guest's result file, or null when it never wrote one. */
  result: T | null;
  /** `0` when the scenario's script ended well. */
  exitStatus: string;
  scenarioLogTail: string;
  serialTail: string;
  /** Where the Dom0's time went, from its console (lab/timeline.ts): `dom0-boot 12.1 s, …`. */
  phases: string;
}

/**
 * Waits for the guest's marker `name`; false when the scenario ended without it (the guest then
 * wrote `done`), so the host skips its part and goes on to collect what there is.
 */
export async function waitForMarkerOrEnd(lab: Lab, name: string): Promise<boolean> {
  for (;;) {
    if (lab.hasResult(name)) return true;
    if (lab.hasResult('done')) return false;
    // waitForFile logs progress and fails on timeouts and a vanished VM; short slices keep `done` seen.
    try {
      await lab.waitForFile(name, 10_000);
      return true;
    } catch (error) {
      if (lab.hasResult('done')) return false;
      if (!/did not produce/.test((error as Error).message)) throw error;
    }
  }
}

/** Reads the result file and the logs once the guest wrote `done`. */
export async function readRun<T>(lab: Lab, resultFile: string, logLines = 30): Promise<ScenarioRun<T>> {
  const exitStatus = lab.hasResult('exit-status') ? (await lab.readResult('exit-status')).trim() : 'missing';
  const scenarioLog = lab.hasResult('scenario.log') ? await lab.readResult('scenario.log') : '';
  return {
    result: lab.hasResult(resultFile) ? await lab.readJson<T>(resultFile) : null,
    exitStatus,
    scenarioLogTail: scenarioLog.trimEnd().split('\n').slice(-logLines).join('\n'),
    serialTail: lab.serialTail(40),
    phases: describePhaseTimes(phaseTimes(await readFile(lab.serialLogPath, 'utf8').catch(() => ''))),
  };
}
