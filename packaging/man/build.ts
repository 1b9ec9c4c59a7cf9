// Writes the manual pages into dist/man (npm run build runs this after tsc):
//   xen-pmem.8       from the CLI's command table, each command's --help text
//   xen-pmemd.8      from the daemon's --help text
//   xen-pmem.json.5  from the daemon's config schema
// Nothing generated is committed; the Debian package installs these files.

import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildEpoch, isoDate } from '../build-date.js';
import { manPages, type RenderedPage } from './pages.js';

/** dist/packaging/man/build.js → the repository. */
const REPOSITORY = fileURLToPath(new URL('../../../', import.meta.url));
export const MAN_DIR = join(REPOSITORY, 'dist', 'man');

export function buildManPages(outDir = MAN_DIR): RenderedPage[] {
  const { version } = JSON.parse(readFileSync(join(REPOSITORY, 'package.json'), 'utf8')) as { version: string };
  const pages = manPages({ version, date: isoDate(buildEpoch(REPOSITORY)) });
  const partial = `${outDir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  for (const page of pages) writeFileSync(join(partial, page.file), page.text);
  rmSync(outDir, { recursive: true, force: true });
  renameSync(partial, outDir);
  return pages;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const pages = buildManPages();
  process.stderr.write(`man: ${pages.map((page) => page.file).join(', ')} in ${MAN_DIR}\n`);
}
