// The tool's name and version as recorded in every super block it writes.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// dist/src/version.js -> package.json two levels up, both in the tree and where install puts it.
const manifest = require('../../package.json') as { version: string };

export const TOOL_VERSION: string = manifest.version;
export const WRITER = `xen-pmem ${TOOL_VERSION}`;
