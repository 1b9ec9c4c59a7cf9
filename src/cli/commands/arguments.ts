import { CommandError } from '../command.js';

/** Every device command takes exactly one DEVICE. */
export function deviceArgument(positionals: string[]): string {
  if (positionals.length !== 1) {
    throw new CommandError(positionals.length === 0 ? 'missing DEVICE (see --help)' : `expected one DEVICE, got ${positionals.length}: ${positionals.join(' ')}`);
  }
  return positionals[0]!;
}
