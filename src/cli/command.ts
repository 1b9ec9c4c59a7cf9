// The contract every `xen-pmem` sub-command fulfils. Commands live one per file in
// `src/cli/commands/` and are listed in the table in `src/cli/xen-pmem.ts`.

import type { FlockPort } from '../io/ports.js';
import type { PortOpening } from '../xen/ports.js';

export const EXIT_OK = 0;
/** The device holds no valid super block (absent or invalid), or the daemon is not running. */
export const EXIT_NOT_VALID = 1;
/** Bad usage, or an I/O error that kept the command from reaching a verdict. */
export const EXIT_USAGE_OR_IO = 2;

export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
  /** Reads one line from the terminal for confirmations; null when stdin is not a TTY. */
  ask(question: string): Promise<string | null>;
  env: NodeJS.ProcessEnv;
  /** libc's flock, for the device locks of setup and wipe; loaded by the first command that locks. */
  flock(): Promise<FlockPort>;
  /** The hypercall port, for `status` to ask Xen what it holds; loaded only by that command. */
  xencall(): Promise<PortOpening>;
}

export interface Command {
  name: string;
  /** One line for the command table in `xen-pmem --help`. */
  summary: string;
  /**
   * Full `--help` text of this command, and the command's part of xen-pmem(8): the build renders
   * it with packaging/man/help-text.ts, which documents the shape it must have.
   */
  help: string;
  run(args: string[], io: CommandIO): Promise<number>;
}

/** A usage or I/O failure that the command turns into one line on stderr and exit code 2. */
export class CommandError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT_USAGE_OR_IO) {
    super(message);
  }
}
