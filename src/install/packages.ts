// Which directories of node_modules the installed daemon needs: the production dependencies,
// read from package-lock.json, where npm marks development-only packages with `"dev": true`.

import { z } from 'zod';

import { InstallError } from './layout.js';

const lockEntry = z.object({
  version: z.string().optional(),
  dev: z.boolean().optional(),
  optional: z.boolean().optional(),
  devOptional: z.boolean().optional(),
  link: z.boolean().optional(),
});

const lockFile = z.object({
  lockfileVersion: z.number().int(),
  packages: z.record(z.string(), lockEntry),
});

// node_modules/NAME or node_modules/@SCOPE/NAME, possibly nested under another package.
const PACKAGE_PATH = /^node_modules\/(@[^/]+\/)?[^/@][^/]*(\/node_modules\/(@[^/]+\/)?[^/@][^/]*)*$/;

export interface RuntimePackage {
  /** `node_modules/koffi`, `node_modules/fs-minipass/node_modules/minipass`, ... */
  path: string;
  /** npm installs optional packages only where they fit (koffi's per-platform binaries). */
  optional: boolean;
}

/**
 * The packages a production install keeps, in lock order. `devOptional` packages stay: npm
 * installs them in production too when an optional dependency needs them.
 */
export function runtimePackages(lockText: string): RuntimePackage[] {
  let json: unknown;
  try {
    json = JSON.parse(lockText);
  } catch (error) {
    throw new InstallError('lock-invalid', `package-lock.json is not JSON: ${(error as Error).message}`);
  }
  const parsed = lockFile.safeParse(json);
  if (!parsed.success) {
    throw new InstallError('lock-invalid', 'package-lock.json has no "packages" table (npm 7 or later writes one; run npm install)');
  }
  if (parsed.data.lockfileVersion < 2) {
    throw new InstallError('lock-invalid', `package-lock.json is version ${parsed.data.lockfileVersion}; version 2 or 3 is needed (run npm install with npm 7 or later)`);
  }
  const packages: RuntimePackage[] = [];
  for (const [path, entry] of Object.entries(parsed.data.packages)) {
    if (!path.startsWith('node_modules/') || entry.dev === true) continue;
    if (!PACKAGE_PATH.test(path) || path.split('/').some((part) => part === '..' || part === '.')) {
      throw new InstallError('lock-invalid', `package-lock.json names "${path}", which is not a package directory under node_modules`);
    }
    if (entry.link === true) {
      throw new InstallError('lock-invalid', `${path} is a linked package; install copies only packages that npm placed in node_modules`);
    }
    packages.push({ path, optional: entry.optional === true || entry.devOptional === true });
  }
  return packages;
}
