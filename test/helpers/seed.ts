// One seed for every randomized test, so that a run fails only for a reason. CI runs the fixed
// default; XEN_PMEM_TEST_SEED=<integer> explores another. fast-check names the seed (and the
// path that replays the counterexample) in every failure; `withSeed` adds it to the messages of
// the checks a test makes after a property, such as coverage of a generator.

const DEFAULT_TEST_SEED = 20_261_206;

function seedFromEnvironment(text: string | undefined): number {
  if (text === undefined || text === '') return DEFAULT_TEST_SEED;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed)) throw new Error(`XEN_PMEM_TEST_SEED must be an integer, not "${text}"`);
  return seed;
}

export const TEST_SEED = seedFromEnvironment(process.env.XEN_PMEM_TEST_SEED);

/** fast-check parameters: the run's seed and how many cases. */
export function seeded(numRuns: number): { seed: number; numRuns: number } {
  return { seed: TEST_SEED, numRuns };
}

/** A failure message that says how to replay the run. */
export function withSeed(message: string): string {
  return `${message} (seed ${TEST_SEED}; replay with XEN_PMEM_TEST_SEED=${TEST_SEED})`;
}
