// The checks dom0-probe.js makes and the matrix reads, in the order the probe makes them. Kept
// apart from the probe so that importing them never runs the probe (a bundle of the matrix would
// otherwise carry the probe's "am I the program?" test with the matrix's own URL).

export interface CheckResult {
  ok: boolean;
  detail: string;
}

export const CHECK_ORDER = ['jit', 'koffi', 'hypercall', 'pmemRead', 'sysfs', 'procXen', 'udev'] as const;
