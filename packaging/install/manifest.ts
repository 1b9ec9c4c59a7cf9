// The record of one installation: every file and every directory `install.js install` created,
// so that `install.js uninstall` removes exactly those and nothing an operator put beside them.
// Paths are the installed system's (without --root), so a tree staged with --root and later
// booted as / still uninstalls cleanly.

import { z } from 'zod';

import { InstallError } from '../../src/install/layout.js';

export const MANIFEST_FORMAT = 'xen-pmem-install';
export const MANIFEST_VERSION = 1;

const absolutePath = z.string().regex(/^\/[^\0]*$/, 'an absolute path');

const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  toolVersion: z.string(),
  prefix: absolutePath,
  /** Files and symbolic links, in the order they were written. */
  files: z.array(absolutePath),
  /** Directories that did not exist before, parents before children. */
  directories: z.array(absolutePath),
});

export type InstallManifest = z.infer<typeof manifestSchema>;

export function serializeManifest(manifest: InstallManifest): string {
  return JSON.stringify(manifest, null, 2) + '\n';
}

export function parseManifest(text: string, where: string): InstallManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InstallError('manifest-invalid', `${where} is not JSON (${(error as Error).message}); remove the installed files by hand`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue && issue.path.length > 0 ? issue.path.join('.') : 'the top level';
    throw new InstallError('manifest-invalid', `${where} is not a version ${MANIFEST_VERSION} install manifest (${field}: ${issue?.message ?? 'unexpected'})`);
  }
  return parsed.data;
}
