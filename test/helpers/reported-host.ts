// A fixture host on which one daemon run reported pmem0 through the in-process test hypervisor,
// and a way to run an xen-pmem command in process against it, with that hypervisor behind the
// command's xencall port: what the tests of the commands that ask Xen share.

import { main, processIO } from '../../src/cli/xen-pmem.js';
import { MiB } from '../../src/core/units.js';
import { Controller } from '../../src/daemon/controller.js';
import { openXencall } from '../../src/native/libxencall.js';
import type { PortOpening } from '../../src/xen/ports.js';
import { makeDaemonHost, recordingLogger, testConfig, type DaemonHost } from '../../fixtures/daemon-host.js';

const GiB4 = 0x1_0000_0000n;
const SIZE = 256n * MiB;

/**
 * Two raw 256 MiB NVDIMMs at 4 GiB: pmem0 prepared and reported, pmem1 blank. The host's cleanup
 * goes into `cleanups`; the caller forgets the in-process hypervisor after each test.
 */
export async function reportedHost(label: string, cleanups: Array<() => Promise<void>>): Promise<DaemonHost> {
  const host = await makeDaemonHost(label, { regions: [0, 1].map((id) => ({ id, start: GiB4 + BigInt(id) * SIZE, size: SIZE, namespaces: [{ id: 0, mode: 'raw' as const }] })) });
  cleanups.push(() => host.cleanup());
  host.useXenInProcess();
  await host.prepare('pmem0');
  await host.blank('pmem1');
  const controller = new Controller(testConfig(), host.ports({ log: recordingLogger() }), null);
  await controller.start();
  await controller.stop();
  return host;
}

/** `xen-pmem COMMAND --state-dir <the host's> ARGS`, in process, its output captured. */
export async function commandOnHost(
  host: DaemonHost, command: string, args: string[], xencall: () => Promise<PortOpening> = async () => openXencall(host.library),
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main([command, '--state-dir', host.stateDir, ...args], {
    out: (text) => { stdout += text + '\n'; },
    err: (text) => { stderr += text + '\n'; },
    ask: async () => null,
    env: {},
    flock: processIO.flock,
    xencall,
  });
  return { code, stdout, stderr };
}
