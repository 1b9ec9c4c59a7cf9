// /etc/xen-pmem/config.json, validated with zod. Every field is optional: a Dom0 without a config
// file reports every valid pmem device. A bad file stops start-up with one line naming the field.

import { readFile } from 'node:fs/promises';
import { z } from 'zod';

import { errorCode } from '../core/errno.js';
import { UUID_PATTERN } from '../core/uuid.js';

const uuid = z.string().regex(UUID_PATTERN, 'expected a UUID such as 8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e')
  .transform((value) => value.toLowerCase());
const regionName = z.string().regex(/^region\d+$/, 'expected a region name such as region0');
const deviceName = z.string().regex(/^pmem\d+(\.\d+)?$/, 'expected a pmem block device name such as pmem0 or pmem1.1');

const selector = z.strictObject({
  namespaces: z.array(uuid).default([]),
  regions: z.array(regionName).default([]),
  devices: z.array(deviceName).default([]),
});

export const configSchema = z.strictObject({
  /** When any list is non-empty, only devices matching one of its entries are reported. */
  allow: selector.default({ namespaces: [], regions: [], devices: [] }),
  /** Devices matching an entry are never reported, even when allowed. */
  deny: selector.default({ namespaces: [], regions: [], devices: [] }),
  /** Log the exact hypercall instead of making it. */
  dryRun: z.boolean().default(false),
  logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** libxencall to load; the test hypervisor's path in tests and the lab. */
  xencallLibrary: z.string().min(1).optional(),
  retry: z.strictObject({
    initialMs: z.number().int().min(10).max(600_000).default(1000),
    maxMs: z.number().int().min(10).max(3_600_000).default(60_000),
  }).default({ initialMs: 1000, maxMs: 60_000 }),
});

export type Config = z.infer<typeof configSchema>;
export type Selector = z.infer<typeof selector>;

export const DEFAULT_CONFIG_PATH = '/etc/xen-pmem/config.json';

export class ConfigError extends Error {}

export function parseConfig(text: string, source: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${source}: not valid JSON (${(error as Error).message})`);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    throw new ConfigError(`${source}: ${field}: ${issue.message}`);
  }
  return result.data;
}

/** A missing file is the empty config; any other read failure is an error. */
export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return configSchema.parse({});
    throw new ConfigError(`${path}: cannot be read (${code ?? String(error)})`);
  }
  return parseConfig(text, path);
}

export interface DeviceIdentity {
  device: string;
  region: string;
  namespaceUuid: string | null;
}

/** Null when allowed; otherwise the sentence that says which rule keeps the device out. */
export function configRefusal(config: Config, id: DeviceIdentity): string | null {
  const denied = matchOf(config.deny, id);
  if (denied) return `denied by config (deny.${denied})`;
  const { namespaces, regions, devices } = config.allow;
  if (namespaces.length + regions.length + devices.length === 0) return null;
  if (matchOf(config.allow, id)) return null;
  return `not in the config's allow list (namespace ${id.namespaceUuid ?? 'without UUID'}, ${id.region}, ${id.device})`;
}

function matchOf(selector: Selector, id: DeviceIdentity): string | null {
  if (id.namespaceUuid && selector.namespaces.includes(id.namespaceUuid.toLowerCase())) return `namespaces: ${id.namespaceUuid}`;
  if (selector.regions.includes(id.region)) return `regions: ${id.region}`;
  if (selector.devices.includes(id.device)) return `devices: ${id.device}`;
  return null;
}
