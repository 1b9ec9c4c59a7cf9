// Errors in the words the project uses for them, in one place: an errno number by its name
// (EINVAL), a thrown system error by its code (ENOENT), and a sentence for an operator. Every
// layer that reports a failure goes through these, so the same error reads the same everywhere.

import { constants } from 'node:os';

const NAME_OF = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) if (!NAME_OF.has(value)) NAME_OF.set(value, name);

/** `EINVAL` for 22; `errno 4000` for a number no name is known for. */
export function errnoName(errno: number): string {
  return NAME_OF.get(errno) ?? `errno ${errno}`;
}

/** The `code` of a Node system error (`ENOENT`, `EACCES`), or undefined for anything else. */
export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/** The error's own message, with its code when the message does not already name it. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const code = errorCode(error);
    return code && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}

const OPERATOR_WORDS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or device',
  EACCES: 'permission denied (run as root)',
  EPERM: 'operation not permitted (run as root)',
  EBUSY: 'device is busy',
  EIO: 'input/output error',
  ENXIO: 'no such device (it may have been removed)',
  EROFS: 'read-only file system',
};

/** What went wrong opening or reading a device, for an operator: `permission denied (run as root)`. */
export function describeError(error: unknown): string {
  const code = errorCode(error);
  if (code !== undefined) return OPERATOR_WORDS[code] ?? code;
  return error instanceof Error ? error.message : String(error);
}
