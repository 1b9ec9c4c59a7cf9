// Runs the built `xen-pmem` CLI as a child process, the way an operator does, with no terminal
// on stdin (so confirmations fail closed).

import type { VerdictJson } from '../../src/format/serializers.js';
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** dist/test/helpers/cli.js -> dist/src/cli/xen-pmem.js */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/xen-pmem.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], options: { input?: string } = {}): CliResult {
  const result = spawnSync(process.execPath, [CLI_PATH, ...args], {
    input: options.input ?? '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** The same, without blocking, so independent runs can overlap. stdin is empty. */
export function runCliAsync(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(error);
        return;
      }
      // A run killed by the timeout has no exit code: -1 fails any assertion on codes.
      resolve({ code: child.exitCode ?? -1, stdout, stderr });
    });
    child.stdin?.end();
  });
}

/** `inspect --json` parsed; the exit code is returned beside it. */
export function inspectJson(path: string): { code: number; json: InspectJson; stderr: string } {
  return parseInspect(runCli(['inspect', path, '--json']));
}

export async function inspectJsonAsync(path: string): Promise<{ code: number; json: InspectJson; stderr: string }> {
  return parseInspect(await runCliAsync(['inspect', path, '--json']));
}

function parseInspect(result: CliResult): { code: number; json: InspectJson; stderr: string } {
  let json: InspectJson;
  try {
    json = JSON.parse(result.stdout) as InspectJson;
  } catch {
    throw new Error(`inspect --json printed no JSON (exit ${result.code}): ${result.stdout}${result.stderr}`);
  }
  return { code: result.code, json, stderr: result.stderr };
}

/** What `inspect --json` prints: the shared verdict shape plus the device and its size. */
export type InspectJson = VerdictJson & { device: string; size: number };

/** Lines a Node stack trace is made of; a clean failure prints none. */
export function stackTraceLines(text: string): string[] {
  return text.split('\n').filter((line) => /^\s{4}at /.test(line));
}
