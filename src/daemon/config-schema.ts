// The config file's schema, in zod: each field's type, range and default, and the one line that
// names a bad field. The man page (xen-pmem.json(5)) is built from it. Loaded by config-file.ts
// only when a file exists.

import { z } from 'zod';

import { UUID_PATTERN } from '../core/uuid.js';
import { ConfigError, type Config } from './config.js';

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

// The schema and the written-out type in config.ts must describe the same thing: this line stops
// the build when either changes alone.
type Parsed = z.infer<typeof configSchema>;
const sameShape: [Parsed] extends [Config] ? ([Config] extends [Parsed] ? true : false) : false = true;
void sameShape;

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
