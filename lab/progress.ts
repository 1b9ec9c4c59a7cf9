// Progress lines on stderr, so a person watching a slow TCG boot sees that something moves.
// XEN_PMEM_LAB_QUIET=1 silences them (errors still carry everything that matters).

export type ProgressLog = (line: string) => void;

export function stderrProgress(prefix = 'lab'): ProgressLog {
  const startedAt = Date.now();
  if (process.env.XEN_PMEM_LAB_QUIET === '1') return () => {};
  return (line) => {
    const seconds = ((Date.now() - startedAt) / 1000).toFixed(1).padStart(5);
    process.stderr.write(`[${prefix} ${seconds}s] ${line}\n`);
  };
}
