// Reads the config file. A missing file is the default config, with no schema to load; a file
// that exists is checked by the zod schema, loaded only then (a fifth of the daemon's start-up
// and several MiB resident otherwise).

import { readFile } from 'node:fs/promises';

import { errorCode } from '../core/errno.js';
import { ConfigError, defaultConfig, type Config } from './config.js';

/** A missing file is the empty config; any other read failure is an error. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return defaultConfig();
    throw new ConfigError(`${path}: cannot be read (${code ?? String(error)})`);
  }
  const { parseConfig } = await import('./config-schema.js');
  return parseConfig(text, path);
}
