// Item 2, I/O per device: how many bytes deciding one device reads, on a 1 GiB and a 1 TiB image,
// prepared by the real `xen-pmem setup` and blank. Counted twice: by the DeviceReader the daemon
// scans through (bytesRead), and by strace on the real `xen-pmem inspect`, which runs the same scan.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { GiB, TiB } from '../src/core/units.js';
import { openDevice } from '../src/io/device.js';
import { scanDevice } from '../src/io/scan.js';
import { CLI_PATH, runCli } from '../fixtures/cli.js';
import { hasCommand, makeScratchDir, makeSparseImage } from '../fixtures/images.js';

export interface IoFigure {
  image: string;
  sizeBytes: number;
  content: 'prepared' | 'blank';
  verdict: string;
  /** What the DeviceReader counted during scanDevice. */
  bytesRead: number;
  reads: number;
  /** What strace saw `xen-pmem inspect` read from the image; null when strace cannot run here. */
  straceBytes: number | null;
  straceReads: number | null;
}

export const IO_SIZES: readonly { label: string; bytes: bigint }[] = [
  { label: '1 GiB', bytes: 1n * GiB },
  { label: '1 TiB', bytes: 1n * TiB },
];

async function countedScan(path: string): Promise<{ verdict: string; bytesRead: number; reads: number }> {
  const reader = await openDevice(path, 'read');
  let reads = 0;
  const counting = Object.create(reader, {
    read: { value: (offset: bigint, length: number) => { reads++; return reader.read(offset, length); } },
  }) as typeof reader;
  try {
    const verdict = await scanDevice(counting);
    return { verdict: verdict.status === 'invalid' ? `invalid (${verdict.reason})` : verdict.status, bytesRead: reader.bytesRead, reads };
  } finally {
    await reader.close();
  }
}

/** Sums what read-type calls returned on descriptors that `strace -y` shows as `path`. */
function straceInspect(path: string, traceDir: string): { bytes: number; reads: number } | null {
  if (!hasCommand('strace')) return null;
  mkdirSync(traceDir, { recursive: true });
  const traced = spawnSync('strace', ['-ff', '-y', '-e', 'trace=read,pread64,readv,preadv,preadv2', '-o', join(traceDir, 'trace'),
    process.execPath, CLI_PATH, 'inspect', path], { encoding: 'utf8' });
  if (traced.status !== 0 && traced.status !== 1) return null;
  const call = /^(?:read|pread64|readv|preadv|preadv2)\((\d+)<([^>]*)>.*\)\s+=\s+(\d+)/;
  let bytes = 0;
  let reads = 0;
  for (const file of readdirSync(traceDir)) {
    for (const line of readFileSync(join(traceDir, file), 'utf8').split('\n')) {
      const match = call.exec(line);
      if (!match || match[2] !== path) continue;
      bytes += Number(match[3]);
      reads++;
    }
  }
  return { bytes, reads };
}

export async function ioPerDevice(): Promise<IoFigure[]> {
  const scratch = makeScratchDir('bench-io');
  try {
    const figures: IoFigure[] = [];
    for (const size of IO_SIZES) {
      for (const content of ['prepared', 'blank'] as const) {
        const path = join(scratch.dir, `${size.label.replace(' ', '')}-${content}.img`);
        makeSparseImage(path, size.bytes);
        if (content === 'prepared') {
          const setup = runCli(['setup', path]);
          if (setup.code !== 0) throw new Error(`xen-pmem setup ${path} failed (${setup.code}): ${setup.stderr.trim()}`);
        }
        const scanned = await countedScan(path);
        const expected = content === 'prepared' ? 'valid' : 'absent';
        if (scanned.verdict !== expected) throw new Error(`the ${size.label} ${content} image scanned as ${scanned.verdict}, not ${expected}`);
        const traced = straceInspect(path, join(scratch.dir, `trace-${size.label.replace(' ', '')}-${content}`));
        figures.push({
          image: size.label,
          sizeBytes: Number(size.bytes),
          content,
          verdict: scanned.verdict,
          bytesRead: scanned.bytesRead,
          reads: scanned.reads,
          straceBytes: traced?.bytes ?? null,
          straceReads: traced?.reads ?? null,
        });
      }
    }
    return figures;
  } finally {
    scratch.remove();
  }
}
