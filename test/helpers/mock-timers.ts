// node:test's mock timers differ between the Node releases the project supports:
// - from Node 20.11 on, `enable()` takes an options object ({ apis: [...] }); Node 18 and
//   20.4–20.10 take the list of APIs itself;
// - Node 18's mocked setTimeout returns a bare number, where node's real one (and the mock of
//   later releases) returns a Timeout with ref() and unref(), which the daemon calls.
// Tests call mockSetTimeout() and get the same behaviour on each.

import type { TestContext } from 'node:test';

type MockTimers = TestContext['mock']['timers'];

/** Node's own version, as [major, minor]. */
function runningNode(): [number, number] {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return [major, minor];
}

/** Replaces setTimeout and clearTimeout with the mock, whose clock `timers.tick(ms)` advances. */
export function mockSetTimeout(timers: MockTimers): void {
  const [major, minor] = runningNode();
  if (major > 20 || (major === 20 && minor >= 11)) {
    (timers.enable as unknown as (options: { apis: string[] }) => void).call(timers, { apis: ['setTimeout'] });
    return;
  }
  timers.enable(['setTimeout']);
  if (major >= 20) return;
  // Node 18: wrap the mock's numbers in Timeout-like objects. timers.reset() (run when the test
  // ends) puts node's own functions back, so the wrappers go with the mock.
  const mockedSet = globalThis.setTimeout as unknown as (...args: unknown[]) => number;
  const mockedClear = globalThis.clearTimeout as unknown as (id: unknown) => void;
  class MockTimeout {
    constructor(readonly id: number) {}
    ref(): this { return this; }
    unref(): this { return this; }
    hasRef(): boolean { return true; }
    [Symbol.toPrimitive](): number { return this.id; }
  }
  globalThis.setTimeout = ((...args: unknown[]) => new MockTimeout(mockedSet(...args))) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((timer: unknown) => mockedClear(timer instanceof MockTimeout ? timer.id : timer)) as typeof clearTimeout;
}
