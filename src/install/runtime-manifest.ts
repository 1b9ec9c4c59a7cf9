// runtime.json: what the runtime directory (dist/runtime, installed as <prefix>/lib/xen-pmem or
// /usr/lib/xen-pmem) holds for the launchers. Written by packaging/runtime.ts, read by install.

export const RUNTIME_MANIFEST = 'runtime.json';

export interface RuntimeLauncher {
  /** The bundle node runs, relative to the runtime directory. */
  script: string;
  /** Flags node gets before the script (the daemon's memory settings). */
  nodeFlags: string[];
}

export interface RuntimeManifest {
  name: string;
  version: string;
  launchers: Record<string, RuntimeLauncher>;
}

/** The manifest's fields checked by hand: install runs this before anything is written. */
export function parseRuntimeManifest(text: string): RuntimeManifest | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return `it is not JSON (${(error as Error).message})`;
  }
  const { name, version, launchers } = (json ?? {}) as Partial<Record<keyof RuntimeManifest, unknown>>;
  if (typeof name !== 'string' || typeof version !== 'string') return 'it needs a "name" and a "version"';
  if (typeof launchers !== 'object' || launchers === null) return 'it needs a "launchers" table';
  for (const [launcher, value] of Object.entries(launchers)) {
    const { script, nodeFlags } = (value ?? {}) as Partial<RuntimeLauncher>;
    const flagsOk = Array.isArray(nodeFlags) && nodeFlags.every((flag) => typeof flag === 'string' && /^--[a-z0-9-]+(=[A-Za-z0-9._-]+)?$/.test(flag));
    if (!/^[A-Za-z0-9._-]+$/.test(launcher) || typeof script !== 'string' || !/^[A-Za-z0-9._-]+\.mjs$/.test(script) || !flagsOk) {
      return `launcher ${JSON.stringify(launcher)} needs a plain file name, a .mjs script in the runtime directory and --flag node flags`;
    }
  }
  return { name, version, launchers: launchers as Record<string, RuntimeLauncher> };
}
