// What xen-pmem.json(5) says about each field of /etc/xen-pmem/config.json. Names, types, ranges
// and defaults come from the daemon's own schema (src/daemon/config.ts); only the sentences are
// written here. test/man.test.ts fails when a field of the schema has no sentence here or a
// sentence names a field the schema does not have.

import { z } from 'zod';

import { DEFAULT_CONFIG_PATH, type Config } from '../../src/daemon/config.js';
import { configSchema } from '../../src/daemon/config-schema.js';

export const CONFIG_PATH = DEFAULT_CONFIG_PATH;

/** One sentence or two per field, keyed by its path in the file. */
export const FIELD_TEXT: Readonly<Record<string, string>> = {
  allow: 'Devices that may be reported. When any of its three lists is non-empty, only a device that matches an entry of one of them is reported; any other valid device is rejected with reason not-allowed, at notice level. All three lists empty (the default) allow every device.',
  'allow.namespaces': 'Namespace UUIDs, in any case, as "ndctl list" shows them.',
  'allow.regions': 'nd region names, such as region0.',
  'allow.devices': 'pmem block device names, such as pmem0 or pmem1.1.',
  deny: 'Devices that are never reported, even when allow names them: deny wins. A denied device is never opened.',
  'deny.namespaces': 'Namespace UUIDs, in any case.',
  'deny.regions': 'nd region names.',
  'deny.devices': 'pmem block device names.',
  dryRun: 'Log the exact hypercall (all six page frame numbers, in hex) instead of making it; nothing reaches Xen and no device becomes reported. "xen-pmemd --dry-run" sets it too.',
  logLevel: 'The lowest priority written to the journal. "xen-pmemd --log-level" overrides it.',
  xencallLibrary: 'The libxencall to load instead of libxencall.so.1, by path or soname; a test stand-in for the hypervisor, for instance. When it is not set, the environment variable XEN_PMEM_LIBXENCALL may name one.',
  retry: 'When a device fails in a way that may pass (EAGAIN, EBUSY or ENOMEM from Xen, an I/O error, a state directory that cannot be written), it becomes retrying and is tried again after initialMs, then after twice as long each time, up to maxMs.',
  'retry.initialMs': 'The first delay, in milliseconds.',
  'retry.maxMs': 'The longest delay, in milliseconds.',
};

/** An example with allow and deny lists; installed as examples/config.json beside the docs. */
export const EXAMPLE_CONFIG = {
  allow: { namespaces: ['8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e'], regions: [], devices: [] },
  deny: { namespaces: [], regions: ['region3'], devices: ['pmem7'] },
  dryRun: false,
  logLevel: 'info',
  retry: { initialMs: 1000, maxMs: 60000 },
} as const;

/** The file with every default spelled out: what the Debian package installs as its conffile. */
export function defaultConfig(): Config {
  return configSchema.parse({});
}

/** JSON the way the files are written: two spaces, one short list on a line. */
export function configJson(config: unknown): string {
  return JSON.stringify(config, null, 2).replace(/\[\s*([^[\]{}]*?)\s*\]/g, (_, items: string) => `[${items.split(/,\s*/).filter((item) => item !== '').join(', ')}]`) + '\n';
}

export interface FieldDoc {
  path: string;
  /** "array of strings", "integer from 10 to 600000", "one of debug, info, warn, error". */
  type: string;
  /** The default as JSON, or null when the field has none. */
  defaultJson: string | null;
  text: string;
}

interface JsonSchemaNode {
  type?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  items?: JsonSchemaNode;
  properties?: Record<string, JsonSchemaNode>;
}

/** Every field of the schema, parents before children, in the schema's order. */
export function configFields(): FieldDoc[] {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const defaults = defaultConfig() as unknown as Record<string, unknown>;
  const fields: FieldDoc[] = [];
  const walk = (node: JsonSchemaNode, prefix: string, parentDefault: Record<string, unknown> | undefined): void => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const path = prefix === '' ? name : `${prefix}.${name}`;
      const value = parentDefault?.[name];
      const text = FIELD_TEXT[path];
      if (text === undefined) throw new Error(`config field ${path} has no text in packaging/man/config-doc.ts`);
      fields.push({ path, type: describeType(child), defaultJson: value === undefined ? null : JSON.stringify(value), text });
      if (child.type === 'object') walk(child, path, value as Record<string, unknown> | undefined);
    }
  };
  walk(schema, '', defaults);
  return fields;
}

function describeType(node: JsonSchemaNode): string {
  if (node.enum) return `one of ${node.enum.map(String).join(', ')}`;
  switch (node.type) {
    case 'object': return 'object';
    case 'boolean': return 'true or false';
    case 'array': return `array of ${node.items?.type ?? 'value'}s`;
    case 'integer': return node.minimum !== undefined && node.maximum !== undefined ? `integer from ${node.minimum} to ${node.maximum}` : 'integer';
    case 'string': return node.minLength ? 'non-empty string' : 'string';
    default: return node.type ?? 'value';
  }
}
