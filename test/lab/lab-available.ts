// Decides whether a lab test can run here. The lab needs root (apt-get, the host root shared with
// the guest) and Debian's packages; without them the test skips and says why.
// XEN_PMEM_LAB=skip skips the lab tests on purpose (for a quick unit-test run).

import { LabUnavailableError } from '../../lab/errors.js';
import { prepareLab, type LabArtifacts } from '../../lab/prepare.js';

export type LabAvailability = { artifacts: LabArtifacts } | { skip: string };

export async function labAvailability(): Promise<LabAvailability> {
  if (process.env.XEN_PMEM_LAB === 'skip') return { skip: 'XEN_PMEM_LAB=skip: lab tests skipped on request' };
  if (process.getuid?.() !== 0) return { skip: 'the lab needs root (QEMU with the host root over 9p, apt-get); run the tests as root' };
  try {
    return { artifacts: await prepareLab() };
  } catch (error) {
    if (error instanceof LabUnavailableError) return { skip: `the lab cannot be prepared here: ${error.message}` };
    throw error;
  }
}
