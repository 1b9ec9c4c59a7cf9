// The tool's name and version as recorded in every super block it writes.

import { createRequire } from 'node:module';

/** Set to package.json's version by the runtime bundler (packaging/runtime.ts). */
declare const XEN_PMEM_VERSION: string | undefined;

function versionFromManifest(): string {
  // dist/src/version.js -> package.json two levels up, in the source tree.
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

export const TOOL_VERSION: string = typeof XEN_PMEM_VERSION === 'string' ? XEN_PMEM_VERSION : versionFromManifest();
export const WRITER = `xen-pmem ${TOOL_VERSION}`;
