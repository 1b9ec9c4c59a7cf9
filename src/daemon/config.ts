// /etc/xen-pmem/config.json: what it may say, and what it means for a device. Every field is
// optional: a Dom0 without a config file reports every valid pmem device.
//
// The types are written out here rather than inferred from the zod schema (config-schema.ts), so
// that the daemon's path without a config file, which is every boot of most hosts, never loads
// zod: config-file.ts loads the schema only when there is a file to check.

export interface Selector {
  namespaces: string[];
  regions: string[];
  devices: string[];
}

export interface Config {
  /** When any list is non-empty, only devices matching one of its entries are reported. */
  allow: Selector;
  /** Devices matching an entry are never reported, even when allowed. */
  deny: Selector;
  /** Log the exact hypercall instead of making it. */
  dryRun: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** libxencall to load; the test hypervisor's path in tests and the lab. */
  xencallLibrary?: string;
  retry: { initialMs: number; maxMs: number };
}

export const DEFAULT_CONFIG_PATH = '/etc/xen-pmem/config.json';

export class ConfigError extends Error {}

/** What an empty file (or none) means; config-schema.ts gives the same defaults, a test holds them equal. */
export function defaultConfig(): Config {
  return {
    allow: { namespaces: [], regions: [], devices: [] },
    deny: { namespaces: [], regions: [], devices: [] },
    dryRun: false,
    logLevel: 'info',
    retry: { initialMs: 1000, maxMs: 60_000 },
  };
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
