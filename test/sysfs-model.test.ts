import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readlink, realpath, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';

import { seeded } from './helpers/seed.js';
import { hex, MiB, GiB } from '../src/core/units.js';
import { attributeProblem, attributeText, type AttributeRead, type NamespaceFacts } from '../src/sysfs/facts.js';
import {
  buildNamespaceModel,
  isSupportedPmem,
  listPmemNamespaces,
  readPmemByBlockName,
  readPmemBySyspath,
  UNSUPPORTED_CODES,
  type PmemNamespaceModel,
  type SysfsRoots,
} from '../src/sysfs/model.js';
import { namespaceToJson } from '../src/format/serializers.js';
import { makeSysfsTree, type SysfsTree, type SysfsTreeSpec } from '../fixtures/sysfs-tree.js';

const scratch: string[] = [];

async function tree(spec: SysfsTreeSpec): Promise<SysfsTree> {
  const dir = await mkdtemp(join(tmpdir(), 'xen-pmem-sysfs-'));
  scratch.push(dir);
  return makeSysfsTree(dir, spec);
}

after(async () => {
  await Promise.all(scratch.map((dir) => rm(dir, { recursive: true, force: true })));
});

function paths(fixture: SysfsTree, namespace: string) {
  const found = fixture.namespaces.get(namespace);
  assert.ok(found, `fixture has ${namespace}`);
  return found;
}

function only(models: PmemNamespaceModel[], namespace: string): PmemNamespaceModel {
  const found = models.filter((model) => model.namespace === namespace);
  assert.equal(found.length, 1, `exactly one model for ${namespace}`);
  return found[0]!;
}

async function readOne(fixture: SysfsTree, namespace: string): Promise<PmemNamespaceModel> {
  const model = await readPmemBySyspath(fixture.roots, paths(fixture, namespace).namespaceDir);
  assert.ok(model, `${namespace} reads as a model`);
  return model;
}

const REGION0_START = 0x1_0000_0000n;
const REGION0_SIZE = 256n * MiB;

describe('raw namespaces', () => {
  let fixture: SysfsTree;
  before(async () => {
    fixture = await tree({
      regions: [{ id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'raw' }] }],
    });
  });

  test('block byte 0 is the namespace resource, and the block device covers the namespace', async () => {
    const [model, ...rest] = await listPmemNamespaces(fixture.roots);
    assert.equal(rest.length, 0);
    assert.ok(model);
    assert.equal(model.namespace, 'namespace0.0');
    assert.equal(model.mode, 'raw');
    assert.equal(model.unsupported, null);
    assert.ok(isSupportedPmem(model));
    assert.equal(model.block.physStart, REGION0_START);
    assert.equal(model.block.size, REGION0_SIZE);
    assert.equal(model.block.name, 'pmem0');
    assert.equal(model.block.devPath, join(fixture.roots.devRoot, 'pmem0'));
    assert.equal(model.block.syspath, await realpath(paths(fixture, 'namespace0.0').blockDir!));
    assert.equal(model.block.logicalBlockSize, 512);
  });

  test('a label-less namespace has no uuid and the region is read from its own attributes', async () => {
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.namespaceUuid, null);
    assert.deepEqual(model.region, { name: 'region0', start: REGION0_START, size: REGION0_SIZE, numaNode: 0 });
  });

  test('a namespace whose block device sits at an offset inside the region maps from its own resource', async () => {
    const offset = 64n * MiB;
    const size = 128n * MiB;
    const uuid = '6f1e0c2a-8d0b-4e55-9a41-2f7f3c5d9e01';
    const labelled = await tree({
      regions: [{ id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 1, mode: 'raw', offset, size, uuid }] }],
    });
    const model = await readPmemByBlockName(labelled.roots, 'pmem0.1');
    assert.ok(model && isSupportedPmem(model));
    assert.equal(model.block.physStart, REGION0_START + offset);
    assert.equal(model.block.size, size);
    assert.equal(model.namespaceUuid, uuid);
  });
});

describe('fsdax namespaces', () => {
  const start = 0x1_4000_0000n;
  const size = 512n * MiB;
  const dataOffset = 10n * MiB;
  let fixture: SysfsTree;
  before(async () => {
    fixture = await tree({
      regions: [
        { id: 1, start, size, namespaces: [{ id: 0, mode: 'fsdax', dataOffset }] },
        { id: 2, start: start + GiB, size, namespaces: [{ id: 0, mode: 'fsdax', map: 'mem', dataOffset: 2n * MiB }] },
        { id: 3, start: start + 2n * GiB, size, namespaces: [{ id: 0, mode: 'fsdax', map: 'static' }] },
      ],
    });
  });

  test('block byte 0 is the pfn device resource, after the kernel info block and memmap', async () => {
    const model = await readPmemByBlockName(fixture.roots, 'pmem1');
    assert.ok(model && isSupportedPmem(model));
    assert.equal(model.mode, 'fsdax');
    assert.equal(model.block.physStart, start + dataOffset);
    assert.equal(model.block.size, size - dataOffset);
    assert.equal(model.block.syspath, await realpath(join(paths(fixture, 'namespace1.0').claimDir!, 'block', 'pmem1')));
  });

  test('with struct pages in RAM the pfn device still gives the data start', async () => {
    const model = await readPmemByBlockName(fixture.roots, 'pmem2');
    assert.ok(model && isSupportedPmem(model));
    assert.equal(model.block.physStart, start + GiB + 2n * MiB);
    assert.equal(model.block.size, size - 2n * MiB);
  });

  test('static memory mode without a pfn device maps from the namespace resource', async () => {
    const model = await readPmemByBlockName(fixture.roots, 'pmem3');
    assert.ok(model && isSupportedPmem(model));
    assert.equal(model.mode, 'fsdax');
    assert.equal(model.block.physStart, start + 2n * GiB);
    assert.equal(model.block.size, size);
  });
});

describe('modes without a linear block device', () => {
  let fixture: SysfsTree;
  before(async () => {
    fixture = await tree({
      regions: [
        { id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'sector' }] },
        { id: 1, start: REGION0_START + GiB, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'devdax' }] },
      ],
    });
  });

  test('sector mode is unsupported and names its BTT device and block device', async () => {
    const model = await readPmemByBlockName(fixture.roots, 'pmem0s');
    assert.ok(model);
    assert.equal(model.namespace, 'namespace0.0');
    assert.equal(model.mode, 'sector');
    assert.equal(model.block, null);
    assert.equal(model.unsupported?.code, 'sector-mode');
    assert.match(model.unsupported.message, /btt0\.0/);
    assert.match(model.unsupported.message, /pmem0s/);
    assert.equal(isSupportedPmem(model), false);
  });

  test('devdax mode is unsupported because it has no block device', async () => {
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.mode, 'devdax');
    assert.equal(model.block, null);
    assert.equal(model.unsupported?.code, 'devdax-mode');
    assert.match(model.unsupported.message, /dax1\.0/);
  });

  test('both are still listed, so that `xen-pmem list` can say why they are not used', async () => {
    const models = await listPmemNamespaces(fixture.roots);
    assert.deepEqual(
      models.map((model) => [model.namespace, model.unsupported?.code]),
      [
        ['namespace0.0', 'sector-mode'],
        ['namespace1.0', 'devdax-mode'],
      ],
    );
  });
});

describe('several regions', () => {
  const uuid = (n: number): string => `0000000${n}-1111-2222-3333-444444444444`;
  let fixture: SysfsTree;
  before(async () => {
    fixture = await tree({
      regions: [
        // Listed out of order on purpose: the model orders by region and namespace number.
        {
          id: 10,
          start: 0x30_0000_0000n,
          size: 1n * GiB,
          numaNode: 1,
          namespaces: [
            { id: 0, mode: 'fsdax', size: 512n * MiB, uuid: uuid(1), dataOffset: 10n * MiB },
            { id: 2, mode: 'raw', offset: 512n * MiB, size: 256n * MiB, uuid: uuid(2) },
          ],
        },
        { id: 2, start: 0x10_0000_0000n, size: 256n * MiB, numaNode: 0, namespaces: [{ id: 0, mode: 'raw' }] },
        { id: 3, start: 0x20_0000_0000n, size: 256n * MiB, numaNode: null, namespaces: [{ id: 0, mode: 'raw' }] },
        { id: 4, start: 0x28_0000_0000n, size: 256n * MiB, numaNode: -1, namespaces: [{ id: 0, mode: 'raw' }] },
      ],
    });
  });

  test('lists every namespace with capacity, ordered, leaving out the size-0 seed', async () => {
    const models = await listPmemNamespaces(fixture.roots);
    assert.deepEqual(
      models.map((model) => model.namespace),
      ['namespace2.0', 'namespace3.0', 'namespace4.0', 'namespace10.0', 'namespace10.2'],
    );
    assert.ok(models.every((model) => model.unsupported === null));
  });

  test('each namespace carries its own region and NUMA node (absent or -1 read as none)', async () => {
    const models = await listPmemNamespaces(fixture.roots);
    assert.equal(only(models, 'namespace2.0').region.numaNode, 0);
    assert.equal(only(models, 'namespace3.0').region.numaNode, null);
    assert.equal(only(models, 'namespace4.0').region.numaNode, null);
    const second = only(models, 'namespace10.2');
    assert.deepEqual(second.region, { name: 'region10', start: 0x30_0000_0000n, size: 1n * GiB, numaNode: 1 });
    assert.equal(second.block?.name, 'pmem10.2');
    assert.equal(second.block?.physStart, 0x30_0000_0000n + 512n * MiB);
    const first = only(models, 'namespace10.0');
    assert.equal(first.block?.name, 'pmem10');
    assert.equal(first.block?.physStart, 0x30_0000_0000n + 10n * MiB);
    assert.equal(first.namespaceUuid, uuid(1));
  });

  test('the seed namespace can still be looked up and says it has no capacity', async () => {
    const seed = await readPmemBySyspath(fixture.roots, join(fixture.regionDirs.get('region10')!, 'namespace10.3'));
    assert.equal(seed?.unsupported?.code, 'no-block-device');
  });
});

describe('odd sysfs contents become unsupported, never a throw', () => {
  const fsdaxStart = 0x1_4000_0000n;
  const dataOffset = 10n * MiB;
  const spec = (): SysfsTreeSpec => ({
    regions: [
      { id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'raw' }] },
      { id: 1, start: fsdaxStart, size: 512n * MiB, namespaces: [{ id: 0, mode: 'fsdax', dataOffset }] },
    ],
  });

  test('a missing attribute', async () => {
    const fixture = await tree(spec());
    await unlink(join(paths(fixture, 'namespace0.0').namespaceDir, 'resource'));
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'attribute-missing');
    assert.match(model.unsupported.message, /namespace0\.0.*'resource'/);
    assert.equal(model.block?.physStart, null);
  });

  test('an unparsable region address', async () => {
    const fixture = await tree(spec());
    await writeFile(join(fixture.regionDirs.get('region0')!, 'resource'), '4294967296\n');
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'attribute-unparsable');
    assert.match(model.unsupported.message, /region0 'resource' holds "4294967296"/);
    assert.equal(model.region.start, null);
  });

  test('an unparsable block size', async () => {
    const fixture = await tree(spec());
    await writeFile(join(paths(fixture, 'namespace0.0').blockDir!, 'size'), '-8\n');
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'attribute-unparsable');
    assert.equal(model.block, null);
  });

  test('an impossible logical block size', async () => {
    const fixture = await tree(spec());
    await writeFile(join(paths(fixture, 'namespace0.0').blockDir!, 'queue', 'logical_block_size'), '520\n');
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'attribute-unparsable');
    assert.match(model.unsupported.message, /logical_block_size/);
  });

  test('a raw block device smaller than its namespace', async () => {
    const fixture = await tree(spec());
    const sectors = REGION0_SIZE / 512n - 8n;
    await writeFile(join(paths(fixture, 'namespace0.0').blockDir!, 'size'), `${sectors}\n`);
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'size-mismatch');
    assert.ok(model.unsupported.message.includes(hex(sectors * 512n)), model.unsupported.message);
    assert.ok(model.unsupported.message.includes(hex(REGION0_SIZE)), model.unsupported.message);
  });

  test('an fsdax block device whose size is not the pfn device size', async () => {
    const fixture = await tree(spec());
    // The namespace size would be wrong here: the block device must match the pfn data range.
    await writeFile(join(paths(fixture, 'namespace1.0').blockDir!, 'size'), `${(512n * MiB) / 512n}\n`);
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.unsupported?.code, 'size-mismatch');
    assert.ok(model.unsupported.message.includes(hex(512n * MiB - dataOffset)), model.unsupported.message);
  });

  test('a namespace outside its region', async () => {
    const fixture = await tree(spec());
    const beyond = REGION0_START + REGION0_SIZE - MiB;
    await writeFile(join(paths(fixture, 'namespace0.0').namespaceDir, 'resource'), `${hex(beyond)}\n`);
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'outside-region');
    assert.ok(model.unsupported.message.includes(hex(beyond)), model.unsupported.message);
    assert.ok(model.unsupported.message.includes(hex(REGION0_START)), model.unsupported.message);
  });

  test('a pfn data range outside its namespace', async () => {
    const fixture = await tree(spec());
    const belowNamespace = fsdaxStart - 2n * MiB;
    await writeFile(join(paths(fixture, 'namespace1.0').claimDir!, 'resource'), `${hex(belowNamespace)}\n`);
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.unsupported?.code, 'outside-namespace');
    assert.ok(model.unsupported.message.includes(hex(belowNamespace)), model.unsupported.message);
  });

  test('a pfn device that holds another namespace', async () => {
    const fixture = await tree(spec());
    await writeFile(join(paths(fixture, 'namespace1.0').claimDir!, 'namespace'), 'namespace1.7\n');
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.unsupported?.code, 'holder-mismatch');
    assert.match(model.unsupported.message, /namespace1\.7/);
  });

  test('a mode the model does not know', async () => {
    const fixture = await tree(spec());
    await writeFile(join(paths(fixture, 'namespace0.0').namespaceDir, 'mode'), 'turbo\n');
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.mode, 'unknown');
    assert.equal(model.unsupported?.code, 'unknown-mode');
    assert.equal(model.block, null);
  });

  test('a disabled namespace has no block device', async () => {
    const fixture = await tree({
      regions: [{ id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'raw', enabled: false }] }],
    });
    const [model] = await listPmemNamespaces(fixture.roots);
    assert.equal(model?.unsupported?.code, 'no-block-device');
    assert.equal(model.block, null);
  });

  test('a disabled pfn device gives no block device either', async () => {
    const fixture = await tree({
      regions: [{ id: 1, start: fsdaxStart, size: 512n * MiB, namespaces: [{ id: 0, mode: 'fsdax', enabled: false }] }],
    });
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.unsupported?.code, 'no-block-device');
    assert.match(model.unsupported.message, /pfn1\.0/);
    assert.equal(model.block, null);
  });
});

describe('devices that disappear', () => {
  const spec: SysfsTreeSpec = {
    regions: [
      { id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'raw' }] },
      { id: 1, start: REGION0_START + GiB, size: 512n * MiB, namespaces: [{ id: 0, mode: 'fsdax', dataOffset: 10n * MiB }] },
    ],
  };

  async function removeDevice(fixture: SysfsTree, deviceDir: string, links: string[]): Promise<void> {
    await rm(deviceDir, { recursive: true, force: true });
    for (const path of links) await rm(path, { force: true });
  }

  test('a namespace removed between listing and reading reads as null, and drops out of the list', async () => {
    const fixture = await tree(spec);
    const listed = await listPmemNamespaces(fixture.roots);
    const raw = only(listed, 'namespace0.0');
    const { sysRoot } = fixture.roots;
    await removeDevice(fixture, paths(fixture, 'namespace0.0').namespaceDir, [
      join(sysRoot, 'bus', 'nd', 'devices', 'namespace0.0'),
      join(sysRoot, 'class', 'block', 'pmem0'),
      join(sysRoot, 'block', 'pmem0'),
    ]);
    assert.equal(await readPmemBySyspath(fixture.roots, raw.block!.syspath), null);
    assert.equal(await readPmemByBlockName(fixture.roots, 'pmem0'), null);
    assert.deepEqual(
      (await listPmemNamespaces(fixture.roots)).map((model) => model.namespace),
      ['namespace1.0'],
    );
  });

  test('a namespace whose bus link dangles is skipped, not reported', async () => {
    const fixture = await tree(spec);
    await rm(paths(fixture, 'namespace0.0').namespaceDir, { recursive: true, force: true });
    const models = await listPmemNamespaces(fixture.roots);
    assert.deepEqual(models.map((model) => model.namespace), ['namespace1.0']);
  });

  test('a namespace gone while its pfn device still names it reads as null, not as broken', async () => {
    const fixture = await tree(spec);
    const { namespaceDir, claimDir } = paths(fixture, 'namespace1.0');
    await rm(namespaceDir, { recursive: true, force: true });
    assert.equal(await readPmemBySyspath(fixture.roots, claimDir!), null);
  });

  test('a pfn device that vanished while its namespace stays is a reconfiguration in progress', async () => {
    const fixture = await tree(spec);
    const { claimDir } = paths(fixture, 'namespace1.0');
    await removeDevice(fixture, claimDir!, [join(fixture.roots.sysRoot, 'bus', 'nd', 'devices', 'pfn1.0')]);
    const model = await readOne(fixture, 'namespace1.0');
    assert.equal(model.unsupported?.code, 'device-vanished');
    assert.match(model.unsupported.message, /pfn1\.0/);
  });

  test('a block device that vanished under a present namespace means no block device now', async () => {
    const fixture = await tree(spec);
    await rm(paths(fixture, 'namespace0.0').blockDir!, { recursive: true, force: true });
    const model = await readOne(fixture, 'namespace0.0');
    assert.equal(model.unsupported?.code, 'no-block-device');
  });
});

describe('lookups', () => {
  let fixture: SysfsTree;
  before(async () => {
    fixture = await tree({
      regions: [
        { id: 0, start: REGION0_START, size: REGION0_SIZE, namespaces: [{ id: 0, mode: 'raw' }] },
        { id: 1, start: REGION0_START + GiB, size: 512n * MiB, namespaces: [{ id: 0, mode: 'fsdax', dataOffset: 10n * MiB }] },
      ],
    });
  });

  test('by block name, by block syspath, by namespace and by pfn syspath give the same model', async () => {
    const byName = await readPmemByBlockName(fixture.roots, 'pmem1');
    assert.ok(byName);
    const { namespaceDir, claimDir } = paths(fixture, 'namespace1.0');
    for (const syspath of [byName.block!.syspath, namespaceDir, claimDir!]) {
      assert.deepEqual(await readPmemBySyspath(fixture.roots, syspath), byName, syspath);
    }
  });

  test('a udev syspath under /sys is re-rooted onto the injected sysfs root', async () => {
    const blockDir = await realpath(paths(fixture, 'namespace0.0').blockDir!);
    const sysRoot = await realpath(fixture.roots.sysRoot);
    const udevSyspath = '/sys/' + relative(sysRoot, blockDir);
    const model = await readPmemBySyspath({ ...fixture.roots, sysRoot }, udevSyspath);
    assert.equal(model?.namespace, 'namespace0.0');
    assert.equal(model.block?.name, 'pmem0');
  });

  test('class/block links really point into the device tree', async () => {
    const target = await readlink(join(fixture.roots.sysRoot, 'class', 'block', 'pmem0'));
    assert.match(target, /^\.\.\/\.\.\/devices\/.*\/ndbus0\/region0\/namespace0\.0\/block\/pmem0$/);
  });

  test('names and paths that are not pmem namespaces give null', async () => {
    const roots: SysfsRoots = fixture.roots;
    assert.equal(await readPmemByBlockName(roots, 'pmem9'), null);
    assert.equal(await readPmemByBlockName(roots, '../../bus/nd/devices/namespace0.0'), null);
    assert.equal(await readPmemByBlockName(roots, ''), null);
    assert.equal(await readPmemBySyspath(roots, '/proc/self'), null);
    assert.equal(await readPmemBySyspath(roots, join(fixture.regionDirs.get('region0')!, 'pfn0.0')), null, 'seed pfn');
    assert.equal(await readPmemBySyspath(roots, fixture.regionDirs.get('region0')!), null, 'a region');
  });

  test('a partition is not a namespace', async () => {
    const { blockDir } = paths(fixture, 'namespace0.0');
    const partition = join(blockDir!, 'pmem0p1');
    await makePartition(fixture, partition);
    assert.equal(await readPmemBySyspath(fixture.roots, partition), null);
    assert.equal(await readPmemByBlockName(fixture.roots, 'pmem0p1'), null);
  });
});

async function makePartition(fixture: SysfsTree, partitionDir: string): Promise<void> {
  await mkdir(partitionDir, { recursive: true });
  await writeFile(join(partitionDir, 'partition'), '1\n');
  const linkPath = join(fixture.roots.sysRoot, 'class', 'block', 'pmem0p1');
  await symlink(relative(join(fixture.roots.sysRoot, 'class', 'block'), partitionDir), linkPath);
}

describe('no nd bus', () => {
  test('a kernel without libnvdimm has no namespaces', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xen-pmem-sysfs-'));
    scratch.push(dir);
    assert.deepEqual(await listPmemNamespaces({ sysRoot: join(dir, 'sys'), devRoot: join(dir, 'dev') }), []);
  });
});

// The pure builder, fed attribute reads the fixture cannot produce (EACCES as root, ENXIO).
function rawFacts(overrides: Partial<NamespaceFacts> = {}): NamespaceFacts {
  const ok = attributeText;
  return {
    namespace: 'namespace0.0',
    region: 'region0',
    mode: ok('raw'),
    holder: ok(''),
    size: ok(String(REGION0_SIZE)),
    resource: ok(hex(REGION0_START)),
    uuid: attributeProblem('missing', 'ENOENT'),
    regionResource: ok(hex(REGION0_START)),
    regionSize: ok(String(REGION0_SIZE)),
    regionNumaNode: ok('0'),
    claim: null,
    blocks: {
      state: 'listed',
      devices: [
        {
          name: 'pmem0',
          devPath: '/dev/pmem0',
          syspath: '/sys/devices/ndbus0/region0/namespace0.0/block/pmem0',
          size: ok(String(REGION0_SIZE / 512n)),
          logicalBlockSize: ok('512'),
        },
      ],
    },
    ...overrides,
  };
}

describe('the pure model builder', () => {
  test('complete raw facts give a supported model', () => {
    const model = buildNamespaceModel(rawFacts());
    assert.ok(isSupportedPmem(model));
    assert.equal(model.block.physStart, REGION0_START);
  });

  test('root-only addresses read by a user give permission-denied with the errno', () => {
    const model = buildNamespaceModel(
      rawFacts({ regionResource: attributeProblem('denied', 'EACCES'), resource: attributeProblem('denied', 'EACCES') }),
    );
    assert.equal(model.unsupported?.code, 'permission-denied');
    assert.match(model.unsupported.message, /EACCES/);
    assert.equal(model.region.start, null);
    assert.equal(model.block?.physStart, null, 'the block device is still named, without an address');
    assert.equal(model.block?.name, 'pmem0');
  });

  test('ENXIO from a disabled pfn device is unreadable, and says why', () => {
    const model = buildNamespaceModel(
      rawFacts({
        mode: attributeText('memory'),
        holder: attributeText('pfn0.0'),
        claim: {
          name: 'pfn0.0',
          namespace: attributeText('namespace0.0'),
          resource: attributeProblem('unreadable', 'ENXIO'),
          size: attributeProblem('unreadable', 'ENXIO'),
        },
      }),
    );
    assert.equal(model.unsupported?.code, 'attribute-unreadable');
    assert.match(model.unsupported.message, /pfn0\.0.*ENXIO.*disabled/);
  });

  test('the mode reason wins over any other problem', () => {
    const model = buildNamespaceModel(
      rawFacts({ mode: attributeText('safe'), holder: attributeText('btt0.1'), regionSize: attributeText('lots') }),
    );
    assert.equal(model.unsupported?.code, 'sector-mode');
  });

  test('attribute text that names an Object member is just an unknown word', () => {
    for (const word of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      const model = buildNamespaceModel(rawFacts({ mode: attributeText(word) }));
      assert.equal(model.mode, 'unknown', word);
      assert.equal(model.unsupported?.code, 'unknown-mode', word);
    }
  });

  test('a holder of the wrong kind for the mode', () => {
    const model = buildNamespaceModel(rawFacts({ mode: attributeText('raw'), holder: attributeText('pfn0.0') }));
    assert.equal(model.unsupported?.code, 'holder-mismatch');
  });

  test('two block devices under one namespace', () => {
    const facts = rawFacts();
    assert.equal(facts.blocks.state, 'listed');
    const [device] = facts.blocks.devices;
    facts.blocks.devices.push({ ...device!, name: 'pmem0x' });
    const model = buildNamespaceModel(facts);
    assert.equal(model.unsupported?.code, 'ambiguous-block-device');
  });

  test('arbitrary attribute texts never throw, and only fully checked models are supported', () => {
    const read: fc.Arbitrary<AttributeRead> = fc.oneof(
      fc.string().map(attributeText),
      fc.bigInt({ min: 0n, max: 1n << 66n }).map((n) => attributeText(n.toString())),
      fc.bigInt({ min: 0n, max: 1n << 66n }).map((n) => attributeText(hex(n))),
      fc.constantFrom('raw', 'memory', 'safe', 'dax', '', 'pfn0.0', 'btt0.0', '-1', '512').map(attributeText),
      fc.constantFrom('toString', '__proto__', 'constructor').map(attributeText),
      fc.constantFrom('missing', 'device-gone', 'denied', 'unreadable' as const).map((p) => attributeProblem(p, 'EIO')),
    );
    fc.assert(
      fc.property(fc.array(read, { minLength: 13, maxLength: 13 }), (reads) => {
        const [mode, holder, size, resource, uuid, rStart, rSize, numa, bSize, lbs, cNs, cRes, cSize] = reads as [
          AttributeRead, AttributeRead, AttributeRead, AttributeRead, AttributeRead, AttributeRead, AttributeRead,
          AttributeRead, AttributeRead, AttributeRead, AttributeRead, AttributeRead, AttributeRead,
        ];
        const facts = rawFacts({
          mode, holder, size, resource, uuid,
          regionResource: rStart, regionSize: rSize, regionNumaNode: numa,
          claim: holder.ok && holder.text !== '' ? { name: holder.text, namespace: cNs, resource: cRes, size: cSize } : null,
        });
        if (facts.blocks.state === 'listed') facts.blocks.devices[0] = { ...facts.blocks.devices[0]!, size: bSize, logicalBlockSize: lbs };
        const model = buildNamespaceModel(facts);
        if (model.unsupported !== null) {
          assert.ok((UNSUPPORTED_CODES as readonly string[]).includes(model.unsupported.code));
          assert.ok(model.unsupported.message.length > 0);
          return;
        }
        assert.ok(isSupportedPmem(model));
        const { start, size: regionSize } = model.region;
        assert.ok(model.block.physStart >= start);
        assert.ok(model.block.physStart + model.block.size <= start + regionSize);
      }),
      seeded(2000),
    );
  });

  const PAGE = 4096n;
  /** Consistent raw facts: a page-aligned namespace somewhere inside a page-aligned region. */
  const consistentRaw = fc
    .record({
      regionPage: fc.bigInt({ min: 1n, max: 1n << 38n }),
      regionPages: fc.bigInt({ min: 1n, max: 1n << 28n }),
      offsetShare: fc.double({ min: 0, max: 1, noNaN: true }),
      sizeShare: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .map(({ regionPage, regionPages, offsetShare, sizeShare }) => {
      const offsetPages = BigInt(Math.floor(Number(regionPages - 1n) * offsetShare));
      const sizePages = 1n + BigInt(Math.floor(Number(regionPages - offsetPages - 1n) * sizeShare));
      const regionStart = regionPage * PAGE;
      const nsStart = regionStart + offsetPages * PAGE;
      const nsSize = sizePages * PAGE;
      const facts = rawFacts({
        regionResource: attributeText(hex(regionStart)),
        regionSize: attributeText(String(regionPages * PAGE)),
        resource: attributeText(hex(nsStart)),
        size: attributeText(String(nsSize)),
      });
      if (facts.blocks.state === 'listed') {
        facts.blocks.devices[0] = { ...facts.blocks.devices[0]!, size: attributeText(String(nsSize / 512n)) };
      }
      return { facts, nsStart, nsSize };
    });

  test('consistent raw facts are supported and map block byte 0 to the namespace start', () => {
    fc.assert(
      fc.property(consistentRaw, ({ facts, nsStart, nsSize }) => {
        const model = buildNamespaceModel(facts);
        assert.ok(isSupportedPmem(model), model.unsupported?.message);
        assert.equal(model.block.physStart, nsStart);
        assert.equal(model.block.size, nsSize);
      }),
      seeded(500),
    );
  });

  test('changing any one number of consistent facts either keeps every invariant or names a reason', () => {
    const numberFields = ['size', 'resource', 'regionResource', 'regionSize'] as const;
    fc.assert(
      fc.property(
        consistentRaw,
        fc.constantFrom(...numberFields, 'blockSize' as const),
        fc.bigInt({ min: 0n, max: 1n << 50n }),
        fc.boolean(),
        ({ facts }, field, value, asHex) => {
          const text = attributeText(asHex ? hex(value) : value.toString());
          if (field === 'blockSize') {
            if (facts.blocks.state === 'listed') facts.blocks.devices[0] = { ...facts.blocks.devices[0]!, size: text };
          } else {
            facts[field] = text;
          }
          const model = buildNamespaceModel(facts);
          if (!isSupportedPmem(model)) {
            assert.ok(model.unsupported !== null, 'an unusable model always says why');
            return;
          }
          const { start, size } = model.region;
          assert.ok(model.block.physStart >= start && model.block.physStart + model.block.size <= start + size);
          const nsSize = BigInt((facts.size as { text: string }).text);
          assert.equal(model.block.size, (nsSize / 512n) * 512n, 'block covers the namespace in whole sectors');
        },
      ),
      seeded(2000),
    );
  });
});

describe('the JSON serializer', () => {
  const supported = buildNamespaceModel(rawFacts());

  test('sizes are numbers and addresses hex strings by default', () => {
    const json = namespaceToJson(supported);
    assert.equal(json.size, Number(REGION0_SIZE));
    assert.equal(json.phys_start, hex(REGION0_START));
    assert.deepEqual(json.region, { dev: 'region0', resource: hex(REGION0_START), size: Number(REGION0_SIZE), numa_node: 0 });
    assert.equal(json.blockdev, 'pmem0');
    assert.equal(json.sector_size, 512);
    assert.equal(json.supported, true);
    assert.equal(json.unsupported, undefined);
    assert.equal('uuid' in json, false, 'label-less namespaces carry no uuid key');
  });

  test('human sizes are binary units with two decimals', () => {
    const json = namespaceToJson(supported, { human: true });
    assert.equal(json.size, '256.00 MiB');
    assert.equal(json.region.size, '256.00 MiB');
    assert.equal(json.phys_start, hex(REGION0_START));
  });

  test('a size beyond 2^53 stays exact as a decimal string', () => {
    const huge = 1n << 60n;
    const json = namespaceToJson({ ...supported, region: { ...supported.region, size: huge } });
    assert.equal(json.region.size, huge.toString());
  });

  test('unsupported models keep their code and message, and omit what is unknown', () => {
    const model = buildNamespaceModel(rawFacts({ regionResource: attributeProblem('denied', 'EACCES') }));
    const json = namespaceToJson(model);
    assert.equal(json.supported, false);
    assert.equal(json.unsupported?.code, 'permission-denied');
    assert.equal('resource' in json.region, false);
    assert.deepEqual(JSON.parse(JSON.stringify(json)), json, 'plain JSON, no BigInt');
  });
});
