/** JSON for assertion messages; BigInts as decimal strings, since JSON has no 64-bit integers. */
export function show(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v);
}
