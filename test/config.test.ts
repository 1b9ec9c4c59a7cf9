// The daemon's configuration file: every field optional, a bad file refused with one sentence that
// names the field, a missing file meaning the defaults.

import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ConfigError, configRefusal, defaultConfig } from '../src/daemon/config.js';
import { loadConfig } from '../src/daemon/config-file.js';
import { configSchema, parseConfig } from '../src/daemon/config-schema.js';

const UUID = '8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'xen-pmem-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function refusal(text: string): ConfigError {
  try {
    parseConfig(text, '/etc/xen-pmem/config.json');
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${String(error)}`);
    assert.doesNotMatch(error.message, /\n/, 'one line');
    return error;
  }
  assert.fail(`accepted ${text}`);
}

describe('parseConfig', () => {
  test('an empty object gives every default', () => {
    const config = parseConfig('{}', 'x');
    assert.deepEqual(config, {
      allow: { namespaces: [], regions: [], devices: [] },
      deny: { namespaces: [], regions: [], devices: [] },
      dryRun: false,
      logLevel: 'info',
      retry: { initialMs: 1000, maxMs: 60_000 },
    });
  });

  test('a full file is read as written; UUIDs are lower-cased', () => {
    const config = parseConfig(JSON.stringify({
      allow: { namespaces: [UUID.toUpperCase()], regions: ['region3'], devices: ['pmem1.2'] },
      deny: { devices: ['pmem0'] },
      dryRun: true,
      logLevel: 'debug',
      xencallLibrary: '/opt/xen/lib/libxencall.so.1',
      retry: { initialMs: 50, maxMs: 500 },
    }), 'x');
    assert.deepEqual(config.allow, { namespaces: [UUID], regions: ['region3'], devices: ['pmem1.2'] });
    assert.deepEqual(config.deny, { namespaces: [], regions: [], devices: ['pmem0'] });
    assert.equal(config.dryRun, true);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.xencallLibrary, '/opt/xen/lib/libxencall.so.1');
    assert.deepEqual(config.retry, { initialMs: 50, maxMs: 500 });
  });

  const fieldErrors: [string, unknown, RegExp][] = [
    ['a namespace that is not a UUID', { allow: { namespaces: ['pmem0'] } }, /^\/etc\/xen-pmem\/config\.json: allow\.namespaces\.0: expected a UUID such as 8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e$/],
    ['the second deny namespace', { deny: { namespaces: [UUID, 'nope'] } }, /: deny\.namespaces\.1: expected a UUID such as /],
    ['a region name', { allow: { regions: ['0'] } }, /: allow\.regions\.0: expected a region name such as region0$/],
    ['a device name', { deny: { devices: ['/dev/pmem0'] } }, /: deny\.devices\.0: expected a pmem block device name such as pmem0 or pmem1\.1$/],
    ['dryRun as a string', { dryRun: 'yes' }, /: dryRun: .*boolean/i],
    ['an unknown log level', { logLevel: 'verbose' }, /: logLevel: .*"debug"/],
    ['a retry delay below 10 ms', { retry: { initialMs: 1 } }, /: retry\.initialMs: .*10/],
    ['a fractional retry delay', { retry: { maxMs: 10.5 } }, /: retry\.maxMs: .*int/i],
    ['an empty library path', { xencallLibrary: '' }, /: xencallLibrary: /],
    ['a list given as a string', { allow: { devices: 'pmem0' } }, /: allow\.devices: .*array/i],
  ];
  for (const [what, raw, message] of fieldErrors) {
    test(`names the field: ${what}`, () => {
      assert.match(refusal(JSON.stringify(raw)).message, message);
    });
  }

  test('unknown keys are refused, at the top and inside sections', () => {
    assert.match(refusal(JSON.stringify({ dryrun: true })).message, /^\/etc\/xen-pmem\/config\.json: \(top level\): .*"dryrun"/);
    assert.match(refusal(JSON.stringify({ allow: { uuids: [UUID] } })).message, /: allow: .*"uuids"/);
    assert.match(refusal(JSON.stringify({ retry: { initialMs: 100, factor: 2 } })).message, /: retry: .*"factor"/);
  });

  test('not JSON, or not an object, is refused with the source named', () => {
    assert.match(refusal('{ "dryRun": true, }').message, /^\/etc\/xen-pmem\/config\.json: not valid JSON \(/);
    assert.match(refusal('[]').message, /^\/etc\/xen-pmem\/config\.json: \(top level\): /);
  });
});

describe('loadConfig', () => {
  test('a missing file is the default config', async () => {
    assert.deepEqual(await loadConfig(join(dir, 'does-not-exist.json')), configSchema.parse({}));
  });

  test('the defaults written out without zod are the schema\'s defaults', () => {
    assert.deepEqual(defaultConfig(), configSchema.parse({}));
    assert.notEqual(defaultConfig().allow.namespaces, defaultConfig().allow.namespaces, 'a fresh object each time');
  });

  test('a file is read and validated', async () => {
    const path = join(dir, 'deny.json');
    await writeFile(path, JSON.stringify({ deny: { regions: ['region1'] } }));
    assert.deepEqual((await loadConfig(path)).deny.regions, ['region1']);
  });

  test('an unreadable file is an error, not the defaults', async () => {
    const asDirectory = join(dir, 'config-dir.json');
    await mkdir(asDirectory);
    await assert.rejects(loadConfig(asDirectory), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.message, `${asDirectory}: cannot be read (EISDIR)`);
      return true;
    });
  });

  test('a file its reader may not open is an error (skipped as root, who may open anything)', async (t) => {
    if (process.getuid?.() === 0) return t.skip('running as root: file permissions do not stop root');
    const path = join(dir, 'secret.json');
    await writeFile(path, '{}');
    await chmod(path, 0o000);
    await assert.rejects(loadConfig(path), /cannot be read \(EACCES\)/);
  });

  test('a bad file is refused with the path and the field', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, JSON.stringify({ allow: { namespaces: ['x'] } }));
    await assert.rejects(loadConfig(path), { message: `${path}: allow.namespaces.0: expected a UUID such as 8e0c5b3a-1f7e-4c55-9d0e-2a6f3b1c4d5e` });
  });
});

describe('configRefusal', () => {
  const device = { device: 'pmem0', region: 'region0', namespaceUuid: UUID };

  test('no lists: everything allowed', () => {
    assert.equal(configRefusal(configSchema.parse({}), device), null);
  });

  test('a namespace without UUID never matches a namespace entry', () => {
    const config = configSchema.parse({ allow: { namespaces: [UUID] } });
    assert.match(configRefusal(config, { ...device, namespaceUuid: null }) ?? '', /namespace without UUID, region0, pmem0/);
  });

  test('any one allow list matching is enough', () => {
    const config = configSchema.parse({ allow: { namespaces: ['00000000-0000-4000-8000-000000000000'], devices: ['pmem0'] } });
    assert.equal(configRefusal(config, device), null);
  });

  test('deny beats allow and names the entry', () => {
    const config = configSchema.parse({ allow: { namespaces: [UUID] }, deny: { namespaces: [UUID] } });
    assert.equal(configRefusal(config, device), `denied by config (deny.namespaces: ${UUID})`);
  });
});
