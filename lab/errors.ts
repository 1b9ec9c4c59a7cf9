// Errors the lab raises. Every one carries a stable reason code, and, once a VM has started, the
// tail of its serial log: most lab failures are only explained by what the guest printed last.

import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export type LabReason =
  /** The lab needs root: apt-get, the host root shared over 9p, device images owned by root. */
  | 'not-root'
  /** A Debian package, the kernel, Xen or the initramfs could not be made ready. */
  | 'prepare-failed'
  /** The source of a Xen base cannot be had here (Debian's archive does not serve it). */
  | 'source-unavailable'
  /** The caller asked for something the lab cannot build, such as a path QEMU cannot take. */
  | 'bad-options'
  /** QEMU refused to start or died on its own. */
  | 'qemu-failed'
  /** The QMP monitor answered with an error or not at all. */
  | 'qmp-failed'
  /** The guest powered off before producing what the host was waiting for. */
  | 'vm-exited'
  /** The run's hard time limit, or a single wait's limit, ran out. */
  | 'timeout'
  /** The guest's scenario reported a failure of its own. */
  | 'guest-failed';

export class LabError extends Error {
  constructor(
    readonly reason: LabReason,
    message: string,
    readonly serialTail: string = '',
  ) {
    super(serialTail ? `${message}\n--- last lines of the serial log ---\n${serialTail}` : message);
    this.name = 'LabError';
  }
}

/**
 * The lab cannot run on this machine at all (not root, packages unavailable). Tests catch this one
 * and skip with its message instead of failing.
 */
export class LabUnavailableError extends LabError {
  constructor(reason: 'not-root' | 'prepare-failed' | 'source-unavailable', message: string) {
    super(reason, message);
    this.name = 'LabUnavailableError';
  }
}

/**
 * Runs a lab command's body when its module is the program node was started with (not when it is
 * imported), and turns a failure into one line with the reason code and exit status 1.
 */
export async function runAsProgram(moduleUrl: string, tool: string, body: () => Promise<void>): Promise<void> {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return;
  try {
    await body();
  } catch (error) {
    const reason = error instanceof LabError ? error.reason : 'prepare-failed';
    process.stderr.write(`${tool}: ${reason}: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
