// Runs host commands for the lab and turns their failures into one readable sentence.

import { spawn } from 'node:child_process';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Feeds this to the command's stdin; otherwise stdin is closed. */
  input?: string;
}

/** Runs a command to completion and returns its output, whatever its exit status. */
export function runCommand(command: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
    // A command may close its stdin or exit before it reads all its input: the write then fails
    // with EPIPE, which unhandled would end the whole lab. The exit status tells what happened.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  });
}

/** Runs a command and throws, quoting the last lines of its stderr, unless it exits 0. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) {
    const how = result.signal !== null ? `was killed by ${result.signal}` : `exited ${result.code}`;
    const tail = lastLines(result.stderr || result.stdout, 6);
    throw new Error(`${command} ${args.join(' ')} ${how}${tail ? `: ${tail}` : ''}`);
  }
  return result.stdout;
}

export function lastLines(text: string, count: number): string {
  const lines = text.split('\n').filter((line) => line.trim().length > 0);
  return lines.slice(-count).join('\n');
}
