// The running system's service managers, as install and uninstall need them: is systemd PID 1,
// is udevd up, and run systemctl or udevadm. Injected, so tests decide what "running" means.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface CommandOutcome {
  /** The exit status, or null when the program could not be started or was killed. */
  status: number | null;
  /** stderr and stdout, trimmed, for a note when something went wrong. */
  output: string;
}

export interface HostPort {
  /** systemd's own test (sd_booted): /run/systemd/system exists only when it is PID 1. */
  systemdRunning(): boolean;
  /** udevd creates its control socket at /run/udev/control. */
  udevdRunning(): boolean;
  run(argv: readonly string[]): CommandOutcome;
}

const COMMAND_TIMEOUT_MS = 60_000;

export const realHost: HostPort = {
  systemdRunning: () => existsSync('/run/systemd/system'),
  udevdRunning: () => existsSync('/run/udev/control'),
  run(argv) {
    const [program, ...args] = argv;
    if (program === undefined) return { status: null, output: 'no command' };
    const result = spawnSync(program, args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
    if (result.error) return { status: null, output: result.error.message };
    return { status: result.status, output: `${result.stderr ?? ''}${result.stdout ?? ''}`.trim() };
  },
};

/** `systemctl daemon-reload` → "systemctl daemon-reload failed (exit 1): <first line>". */
export function describeFailure(argv: readonly string[], outcome: CommandOutcome): string {
  const how = outcome.status === null ? 'could not run' : `failed (exit ${outcome.status})`;
  const firstLine = outcome.output.split('\n')[0] ?? '';
  return `${argv.join(' ')} ${how}${firstLine ? `: ${firstLine}` : ''}`;
}
