// The only file that loads libsystemd. The daemon uses two of its calls: sd_notify (readiness,
// status and watchdog for a Type=notify unit) and sd_journal_sendv (structured journal entries).
// Node cannot send unix datagrams itself, and the journal's native protocol is not worth
// re-implementing when the library that defines it is on every systemd machine.

import koffi from 'koffi';

/** What the rest of the daemon sees of libsystemd; tests can supply their own. */
export interface LibSystemd {
  /**
   * sd_notify(0, state): sends `state` to $NOTIFY_SOCKET of this process's environment.
   * Returns > 0 when sent, 0 when no socket is configured, a negative errno on failure.
   */
  notify(state: string): number;
  /**
   * sd_journal_sendv: one journal entry from `FIELD=value` items. Each item travels as its own
   * iovec, so values may hold any byte, newlines included. Returns 0 or a negative errno.
   */
  journalSend(fields: readonly string[]): number;
}

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
