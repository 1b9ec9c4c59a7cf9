// The shape of src/, checked: each folder imports only from the layers beneath it, the native
// bindings implement ports declared above them and import nothing else from there, port modules
// are types only, and no two modules import each other, however indirectly.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** dist/test/ → the repository root. */
const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/**
 * What each folder of src/ may import, runtime or type. The order is the layering: the pure core
 * at the bottom, then the device, sysfs and hypervisor models, the native bindings, the shared
 * serializers, the daemon, and at the top the installer and the commands. `version` is
 * src/version.ts, the tool's name and version.
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  version: [],
  core: [],
  io: ['core', 'version'],
  sysfs: ['core'],
  xen: ['core'],
  native: ['core'],
  format: ['core', 'sysfs', 'xen'],
  daemon: ['core', 'io', 'sysfs', 'xen', 'native', 'format', 'version'],
  install: ['core', 'daemon'],
  cli: ['core', 'io', 'sysfs', 'xen', 'daemon', 'format', 'install', 'version'],
};

/**
 * Composition roots build the real ports and may load the native bindings for that, whatever
 * their folder: the daemon's entry (in daemon/, which may import native anyway) and the CLI's,
 * which builds libc's flock for the commands that lock a device.
 */
const COMPOSITION_ROOTS: ReadonlySet<string> = new Set(['src/cli/xen-pmem.ts']);

interface ImportEdge {
  /** Both relative to the repository root: `src/xen/bridge.ts`. */
  from: string;
  to: string;
  typeOnly: boolean;
}

const STATIC = /^[ \t]*(import|export)[ \t]+(type[ \t]+)?(\{[^}]*\}|\*(?:[ \t]+as[ \t]+\w+)?|\w+(?:[ \t]*,[ \t]*\{[^}]*\})?)\s+from\s+'([^']+)'/gm;
const BARE = /^[ \t]*import[ \t]+'([^']+)'/gm;
const DYNAMIC = /\bimport\(\s*'([^']+)'\s*\)/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import of every .ts file under `dir`, resolved to the file it names. */
function importEdges(dir: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of sourceFiles(dir)) {
    const text = readFileSync(file, 'utf8');
    const add = (specifier: string, typeOnly: boolean): void => {
      if (!specifier.startsWith('.')) return;
      const target = resolve(dirname(file), specifier).replace(/\.js$/, '.ts');
      edges.push({ from: relative(ROOT, file), to: relative(ROOT, target), typeOnly });
    };
    for (const match of text.matchAll(STATIC)) {
      const names = match[3]!;
      const everyNameIsType = names.startsWith('{') && names.slice(1, -1).split(',').map((name) => name.trim()).filter(Boolean).every((name) => name.startsWith('type '));
      add(match[4]!, match[2] !== undefined || everyNameIsType);
    }
    for (const match of text.matchAll(BARE)) add(match[1]!, false);
    for (const match of text.matchAll(DYNAMIC)) add(match[1]!, false);
  }
  return edges;
}

/** `src/xen/bridge.ts` → `xen`; `src/version.ts` → `version`. */
function layerOf(path: string): string {
  const parts = path.split('/');
  return parts.length > 2 ? parts[1]! : parts[1]!.replace(/\.ts$/, '');
}

function isPortModule(path: string): boolean {
  return path.endsWith('/ports.ts');
}

/** Imports that run upward or sideways. A type-only import of a port module is how a binding implements it. */
function layerViolations(edges: readonly ImportEdge[]): string[] {
  const found: string[] = [];
  for (const edge of edges) {
    const from = layerOf(edge.from);
    const to = layerOf(edge.to);
    if (from === to) continue;
    const allowed = MAY_IMPORT[from];
    if (allowed === undefined) {
      found.push(`${edge.from}: folder ${from} has no place in the layering`);
      continue;
    }
    if (allowed.includes(to)) continue;
    if (edge.typeOnly && isPortModule(edge.to)) continue;
    if (to === 'native' && COMPOSITION_ROOTS.has(edge.from)) continue;
    found.push(`${edge.from} imports ${edge.to}${edge.typeOnly ? ' (types)' : ''}: ${from} may not import from ${to}`);
  }
  return found;
}

/** Every set of modules that import each other, directly or not (Tarjan's strongly connected components). */
function importCycles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) {
    next.set(from, [...(next.get(from) ?? []), to]);
    if (!next.has(to)) next.set(to, []);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const target of next.get(node)!) {
      if (!index.has(target)) {
        visit(target);
        low.set(node, Math.min(low.get(node)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(node, Math.min(low.get(node)!, index.get(target)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || next.get(node)!.includes(node)) cycles.push(component.sort());
    }
  };
  for (const node of next.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

/** Port modules that declare something that exists at run time, or import something that does. */
function portsWithRuntime(dir: string): string[] {
  return sourceFiles(dir).filter((file) => isPortModule(relative(ROOT, file))).flatMap((file) => {
    const text = readFileSync(file, 'utf8');
    const problems: string[] = [];
    if (/^[ \t]*export[ \t]+(const|let|var|function|class|enum|default)\b/m.test(text)) problems.push(`${relative(ROOT, file)} exports a value`);
    const edges = importEdges(dirname(file)).filter((edge) => edge.from === relative(ROOT, file));
    for (const edge of edges) if (!edge.typeOnly) problems.push(`${edge.from} imports ${edge.to} at run time`);
    return problems;
  });
}

describe('what the benchmarks and the tests share', () => {
  test('bench/ imports nothing from test/; fixtures/ takes only the test hypervisor from there', () => {
    const fromBench = importEdges(join(ROOT, 'bench')).filter((edge) => edge.to.startsWith('test/'));
    assert.deepEqual(fromBench.map((edge) => `${edge.from} imports ${edge.to}`), []);
    const fromFixtures = importEdges(join(ROOT, 'fixtures')).filter((edge) => edge.to.startsWith('test/') && edge.to !== 'test/hypervisor/build.ts');
    assert.deepEqual(fromFixtures.map((edge) => `${edge.from} imports ${edge.to}`), []);
  });
});

describe('the layering of src/', () => {
  const edges = importEdges(join(ROOT, 'src'));

  test('the check sees the imports (a sanity floor, not a count to keep)', () => {
    assert.ok(edges.length > 100, `${edges.length} imports found`);
    assert.ok(edges.some((edge) => edge.from === 'src/native/libxencall.ts' && edge.to === 'src/xen/ports.ts' && edge.typeOnly));
  });

  test('no import runs upward or sideways; native/ takes only port types from above', () => {
    assert.deepEqual(layerViolations(edges), []);
  });

  test('no cycle among modules', () => {
    assert.deepEqual(importCycles(edges), []);
  });

  test('port modules are types only', () => {
    assert.deepEqual(portsWithRuntime(join(ROOT, 'src')), []);
  });

  test('the check itself fails on an upward import, a native import of logic, and a cycle', () => {
    assert.deepEqual(layerViolations([{ from: 'src/xen/bridge.ts', to: 'src/native/libxencall.ts', typeOnly: true }]).length, 1);
    assert.deepEqual(layerViolations([{ from: 'src/native/udev.ts', to: 'src/daemon/controller.ts', typeOnly: true }]).length, 1);
    assert.deepEqual(layerViolations([{ from: 'src/native/udev.ts', to: 'src/daemon/ports.ts', typeOnly: false }]).length, 1);
    assert.deepEqual(layerViolations([{ from: 'src/native/udev.ts', to: 'src/daemon/ports.ts', typeOnly: true }]), []);
    assert.deepEqual(importCycles([
      { from: 'src/core/a.ts', to: 'src/core/b.ts', typeOnly: false },
      { from: 'src/core/b.ts', to: 'src/core/c.ts', typeOnly: true },
      { from: 'src/core/c.ts', to: 'src/core/a.ts', typeOnly: false },
    ]), [['src/core/a.ts', 'src/core/b.ts', 'src/core/c.ts']]);
  });
});
