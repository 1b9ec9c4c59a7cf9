// What the figures were measured on: they mean little without the machine, its load and the code.

import { spawnSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';

export interface Machine {
  date: string;
  cpu: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  blkid: string;
  commit: string;
  /** 1, 5 and 15 minute load averages. */
  loadAtStart: number[];
  loadAtEnd: number[];
}

function firstLine(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim().split('\n')[0] ?? '' : 'unknown';
}

export function describeMachine(): Machine {
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
    blkid: firstLine('blkid', ['--version']),
    commit: firstLine('git', ['rev-parse', '--short', 'HEAD']),
    loadAtStart: loadavg(),
    loadAtEnd: [],
  };
}
