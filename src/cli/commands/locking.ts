// The lock setup and wipe hold while they write (src/io/lock.ts), as a command wants it: libc's
// flock from the command's io, and a lock another program keeps too long as one line for people.

import { DeviceLockedError, lockDevice, WRITER_PATIENCE, type DeviceLock } from '../../io/lock.js';
import { CommandError, type CommandIO } from '../command.js';

/** The exclusive lock on DEVICE's disk (src/io/lock.ts), or a CommandError saying who has it. */
export async function lockForWriting(path: string, io: CommandIO): Promise<DeviceLock> {
  try {
    return await lockDevice(path, 'exclusive', await io.flock(), WRITER_PATIENCE);
  } catch (error) {
    if (error instanceof DeviceLockedError) throw new CommandError(`${error.message}; nothing was written [device-locked]`);
    throw error;
  }
}

