// The runtime directory the build makes (packaging/runtime.ts): which packages stay out of the
// bundles and which of their files are kept.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { keepsAtRunTime, nativeClosure } from '../packaging/runtime.js';
import { parseRuntimeManifest } from '../src/install/runtime-manifest.js';

const PROJECT_DIR = fileURLToPath(new URL('../../', import.meta.url));

describe('the runtime directory', () => {
  it('keeps package.json, JavaScript and compiled addons, and drops sources, docs, tests and musl builds', () => {
    for (const path of ['package.json', 'udev.js', 'build/Release/udev.node', 'src/koffi/index.cjs', 'linux_x64/koffi.node', 'lib/x.mjs']) {
      assert.equal(keepsAtRunTime(path), true, path);
    }
    for (const path of ['udev.cc', 'README.md', 'binding.gyp', 'build/Release/obj.target/udev.node', 'musl_x64/koffi.node', 'test/a.js', 'samples/howto.js', 'vendor/x/y.js', 'lib/a.test.js', 'node_modules/x/index.js']) {
      assert.equal(keepsAtRunTime(path), false, path);
    }
  });

  it('takes the native packages with what they load at run time, not their build tools', () => {
    const lock = {
      'node_modules/udev': { dependencies: { bindings: '^1', '@mapbox/node-pre-gyp': '^1', 'node-addon-api': '^4' } },
      'node_modules/bindings': { dependencies: { 'file-uri-to-path': '1' } },
      'node_modules/file-uri-to-path': {},
      'node_modules/@mapbox/node-pre-gyp': { dependencies: { tar: '^6' } },
      'node_modules/tar': {},
      'node_modules/node-addon-api': {},
      'node_modules/koffi': { optionalDependencies: { '@koromix/koffi-linux-x64': '3', '@koromix/koffi-no-such-platform': '3' } },
      'node_modules/@koromix/koffi-linux-x64': { optional: true },
      'node_modules/@koromix/koffi-no-such-platform': { optional: true },
      'node_modules/zod': {},
    };
    const closure = nativeClosure(lock);
    assert.deepEqual(closure.filter((path) => path !== 'node_modules/@koromix/koffi-linux-x64'), [
      'node_modules/bindings', 'node_modules/file-uri-to-path', 'node_modules/koffi', 'node_modules/udev',
    ]);
    // An optional package npm did not install on this machine stays out.
    assert.ok(!closure.includes('node_modules/@koromix/koffi-no-such-platform'));
    assert.throws(() => nativeClosure({ 'node_modules/udev': {} }), /package-lock\.json has no koffi/);
  });

  it('was built: runtime.json names both launchers, each bundle exists, the version is package.json\'s', () => {
    const runtime = join(PROJECT_DIR, 'dist', 'runtime');
    const manifest = parseRuntimeManifest(readFileSync(join(runtime, 'runtime.json'), 'utf8'));
    assert.ok(typeof manifest !== 'string', String(manifest));
    const pkg = JSON.parse(readFileSync(join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string };
    assert.equal(manifest.version, pkg.version);
    assert.deepEqual(Object.keys(manifest.launchers).sort(), ['xen-pmem', 'xen-pmemd']);
    for (const launcher of Object.values(manifest.launchers)) assert.ok(existsSync(join(runtime, launcher.script)), launcher.script);
    assert.ok(existsSync(join(runtime, 'node_modules', 'udev', 'build', 'Release', 'udev.node')));
    assert.ok(!existsSync(join(runtime, 'node_modules', 'zod')), 'zod is bundled, not copied');
    assert.ok(!existsSync(join(runtime, 'node_modules', 'koffi', 'cnoke.cjs')), 'koffi\'s build script is for npm install only');
  });

  it('the daemon\'s bundle does not load zod, pino or the config schema at start: they are chunks it imports on demand', () => {
    const runtime = join(PROJECT_DIR, 'dist', 'runtime');
    // Every file the entry imports statically, however indirectly: what node loads before main runs.
    const reached = new Set<string>();
    const visit = (file: string): void => {
      if (reached.has(file)) return;
      reached.add(file);
      const text = readFileSync(join(runtime, file), 'utf8');
      for (const match of text.matchAll(/(?:^|[\n;}])\s*(?:import|export)\s*(?:[^'"()]*?\sfrom\s*)?["'](\.{1,2}\/[^"']+)["']/g)) {
        visit(posix.normalize(posix.join(posix.dirname(file), match[1]!)));
      }
    };
    visit('xen-pmemd.mjs');
    const onDemand = readdirSync(join(runtime, 'chunks')).filter((name) => /^(zod|pino|config-schema)-/.test(name)).map((name) => `chunks/${name}`);
    assert.deepEqual(onDemand.map((name) => name.replace(/-[A-Z0-9]+\.mjs$/, '')).sort(), ['chunks/config-schema', 'chunks/pino', 'chunks/zod']);
    assert.ok(reached.size > 1, 'the entry imports its shared chunks');
    assert.deepEqual(onDemand.filter((name) => reached.has(name)), []);
    for (const file of reached) assert.doesNotMatch(readFileSync(join(runtime, file), 'utf8'), /class \$ZodError|ZodError = /, `${file} holds zod`);
  });
});
