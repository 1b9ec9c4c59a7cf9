// Order statistics for benchmark figures. Timings on a shared machine are noisy, so every figure
// is a median with its spread (min–max and the interquartile range), never a mean.

export interface Spread {
  /** How many samples the figure rests on. */
  n: number;
  median: number;
  min: number;
  max: number;
  /** First and third quartiles. */
  q1: number;
  q3: number;
}

/**
 * The q-quantile (0 ≤ q ≤ 1) by linear interpolation between closest ranks (Hyndman–Fan type 7,
 * what numpy and R use by default), so p50 of [1, 2] is 1.5 rather than either sample.
 */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) throw new RangeError('a quantile of no samples is undefined');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile ${q} is outside 0..1`);
  const sorted = [...samples].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.ceil(position);
  const low = sorted[below]!;
  const high = sorted[above]!;
  return low + (high - low) * (position - below);
}

export function median(samples: readonly number[]): number {
  return quantile(samples, 0.5);
}

export function spread(samples: readonly number[]): Spread {
  if (samples.length === 0) throw new RangeError('the spread of no samples is undefined');
  return {
    n: samples.length,
    median: quantile(samples, 0.5),
    min: Math.min(...samples),
    max: Math.max(...samples),
    q1: quantile(samples, 0.25),
    q3: quantile(samples, 0.75),
  };
}

/** Element-wise ratios of runs measured side by side: numerator[i] / denominator[i]. */
export function pairedRatios(numerators: readonly number[], denominators: readonly number[]): number[] {
  if (numerators.length !== denominators.length) {
    throw new RangeError(`paired ratios need as many numerators (${numerators.length}) as denominators (${denominators.length})`);
  }
  return numerators.map((value, index) => value / denominators[index]!);
}

/** A small, seedable generator (mulberry32) so an event mix is the same in every run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
