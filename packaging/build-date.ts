// The date a build states, on the manual pages' footers and in the Debian changelog entry:
// SOURCE_DATE_EPOCH when it is set (reproducible builds), else the time of the checkout's last
// commit, else package.json's modification time. Never the clock, so building the same commit
// twice gives the same files.

import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';

/** Seconds since 1970, UTC. */
export function buildEpoch(repository: string, env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv)) return Number(fromEnv);
  const git = spawnSync('git', ['-C', repository, 'log', '-1', '--format=%ct'], { encoding: 'utf8' });
  if (git.status === 0 && /^\d+$/.test(git.stdout.trim())) return Number(git.stdout.trim());
  return Math.floor(statSync(join(repository, 'package.json')).mtimeMs / 1000);
}

/** 2026-12-01 */
export function isoDate(epoch: number): string {
  return new Date(epoch * 1000).toISOString().slice(0, 10);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Tue, 01 Dec 2026 20:13:39 +0000, the form debian/changelog requires (RFC 5322, in UTC). */
export function changelogDate(epoch: number): string {
  const date = new Date(epoch * 1000);
  const two = (value: number): string => String(value).padStart(2, '0');
  return `${DAYS[date.getUTCDay()]}, ${two(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} `
    + `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`;
}
