// The util-linux tools this project relies on instead of writing partition tables or probing
// filesystems by hand: sfdisk writes the GPT, blkid finds foreign signatures before setup.

import { spawn } from 'node:child_process';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class ToolMissingError extends Error {}

/** Runs a tool without a shell; `input` goes to its stdin. Never rejects for a non-zero exit. */
export function runTool(command: string, args: string[], input?: string): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT'
        ? new ToolMissingError(`${command} is not installed (Debian package: ${PACKAGE_OF[command] ?? command})`)
        : error);
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => { /* the tool may exit before reading all input; its exit code tells */ });
    child.stdin.end(input ?? '');
  });
}

const PACKAGE_OF: Record<string, string> = { sfdisk: 'fdisk', blkid: 'util-linux' };

/**
 * Writes a partition table from an sfdisk script. Old signatures in the table's way are wiped.
 *
 * `--lock=no`: setup already holds the exclusive lock on the disk (src/io/lock.ts), and sfdisk's
 * own lock is taken on its own descriptor, so with `--lock` (or $LOCK_BLOCK_DEVICE set) it would
 * wait for setup's lock while setup waits for it. util-linux before 2.37 has no --lock at all
 * and takes no lock either: there the option is left out.
 */
export async function writePartitionTable(device: string, script: string): Promise<void> {
  const args = ['--quiet', '--wipe', 'always', '--wipe-partitions', 'always', device];
  let result = await runTool('sfdisk', ['--lock=no', ...args], script);
  if (result.code !== 0 && /unrecognized option.*lock/.test(result.stderr)) result = await runTool('sfdisk', args, script);
  if (result.code !== 0) {
    throw new Error(`sfdisk could not write the partition table on ${device}: ${firstLine(result.stderr) || `exit code ${result.code}`}`);
  }
}

/**
 * Foreign signatures (filesystems, RAID, partition tables) libblkid finds on the device, as
 * "TYPE=ext4"-style words; empty when the device is blank.
 */
export async function foreignSignatures(device: string): Promise<string[]> {
  const result = await runTool('blkid', ['-p', '-o', 'export', device]);
  // blkid -p exits 2 when it finds nothing.
  if (result.code === 2) return [];
  // Exit code 8: several signatures that contradict each other; still "not blank".
  if (result.code === 8) return ['AMBIVALENT=several conflicting signatures'];
  if (result.code !== 0) {
    throw new Error(`blkid could not probe ${device}: ${firstLine(result.stderr) || `exit code ${result.code}`}`);
  }
  return result.stdout.split('\n').filter((line) => /^(TYPE|PTTYPE)=/.test(line));
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}
