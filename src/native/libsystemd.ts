// The only file that loads libsystemd. The daemon uses two of its calls: sd_notify (readiness,
// status and watchdog for a Type=notify unit) and sd_journal_sendv (structured journal entries).
// Node cannot send unix datagrams itself, and the journal's native protocol is not worth
// re-implementing when the library that defines it is on every systemd machine.

import koffi from 'koffi';

import type { JournalSender, NotifySender } from '../daemon/ports.js';

/** libsystemd as the daemon uses it: sd_notify(0, state) and sd_journal_sendv. */
export type LibSystemd = NotifySender & JournalSender;

/** The soname of Debian's libsystemd0 (and every other distribution's). */
export const LIBSYSTEMD_SONAME = 'libsystemd.so.0';

let cached: LibSystemd | null | undefined;

/**
 * Loads libsystemd once per process. Returns null when the library (or one of its two symbols)
 * is missing, so callers fall back to plain output instead of failing.
 */
export function loadLibSystemd(): LibSystemd | null {
  if (cached !== undefined) return cached;
  cached = tryLoad();
  return cached;
}

function tryLoad(): LibSystemd | null {
  try {
    const lib = koffi.load(LIBSYSTEMD_SONAME);
    const iovec = koffi.struct({ iov_base: 'const void *', iov_len: 'size_t' });
    const sdNotify = lib.func('int sd_notify(int unset_environment, const char *state)');
    const sdJournalSendv = lib.func('sd_journal_sendv', 'int', [koffi.pointer(iovec), 'int']);
    return {
      notify: (state) => sdNotify(0, state) as number,
      journalSend(fields) {
        if (fields.length === 0) return 0;
        // Buffers stay referenced by `vectors` until the call returns, which is all the
        // library needs: it copies (or sends) the data before sd_journal_sendv returns.
        const vectors = fields.map((field) => {
          const bytes = Buffer.from(field, 'utf8');
          return { iov_base: bytes, iov_len: bytes.length };
        });
        return sdJournalSendv(vectors, vectors.length) as number;
      },
    };
  } catch {
    return null;
  }
}
