// Writes the journal message catalog into dist/catalog/xen-pmem.catalog (npm run build runs this
// after tsc), rendered from the one table of ids and texts, src/daemon/catalog.ts. Nothing
// generated is committed; the Debian package installs the file in /usr/lib/systemd/catalog and
// `node dist/packaging/install.js install` in /usr/local/lib/systemd/catalog.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CATALOG, CATALOG_FILE_NAME, renderCatalog } from '../src/daemon/catalog.js';

/** dist/packaging/catalog.js → the repository. */
const REPOSITORY = fileURLToPath(new URL('../../', import.meta.url));
export const CATALOG_DIR = join(REPOSITORY, 'dist', 'catalog');
export function buildCatalog(outDir = CATALOG_DIR): string {
  mkdirSync(outDir, { recursive: true });
  const path = join(outDir, CATALOG_FILE_NAME);
  writeFileSync(`${path}.partial`, renderCatalog());
  renameSync(`${path}.partial`, path);
  return path;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = buildCatalog();
  process.stderr.write(`catalog: ${Object.keys(CATALOG).length} entries in ${path}\n`);
}
