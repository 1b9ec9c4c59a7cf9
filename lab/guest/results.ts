// The guest side of the results share: what a guest program (run by a scenario inside the Dom0)
// uses to hand files to the host and to wait for the host's signals. The host polls the same
// directory through lab/vm.ts; a result appears under its name only once complete.

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RESULTS_DIR = process.env.LAB_RESULTS ?? '/lab/results';

/** Stores a result: strings as they are, anything else as indented JSON (BigInt as decimal strings). */
export function putResult(name: string, content: unknown): void {
  const text = typeof content === 'string'
    ? content
    : JSON.stringify(content, (_, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2) + '\n';
  const partial = join(RESULTS_DIR, `.${name}.partial`);
  writeFileSync(partial, text);
  renameSync(partial, join(RESULTS_DIR, name));
}

export function mark(name: string, text = ''): void {
  putResult(name, `${text}\n`);
  log(`marked ${name}`);
}

export function log(message: string): void {
  process.stdout.write(`lab: ${message}\n`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `ready()` is true; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, ready: () => boolean, timeoutMs: number, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

/** Waits for a file the host drops into the share (Lab.signalGuest). */
export function waitForHost(name: string, timeoutMs: number): Promise<void> {
  return waitUntil(`the host's ${name}`, () => existsSync(join(RESULTS_DIR, name)), timeoutMs, 200);
}

/** Seconds since the guest booted, the clock the serial log and journal use. */
export function uptimeSeconds(): number {
  try {
    return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  } catch {
    return Number.NaN;
  }
}

/**
 * Runs the steps of a guest scenario: each step names itself in the serial log and, whatever
 * happens, saves the result so far, so that a late failure still leaves the earlier evidence.
 */
export function phaseRunner<R extends { phase: string }>(resultFile: string, result: R) {
  return async (name: string, work: () => Promise<void> | void): Promise<void> => {
    result.phase = name;
    log(`phase ${name} (uptime ${uptimeSeconds().toFixed(1)} s)`);
    try {
      await work();
    } finally {
      putResult(resultFile, result);
    }
  };
}
