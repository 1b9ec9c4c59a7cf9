// The lab's pure parts, without a VM: module load order, the bzImage payload, the QEMU command
// line, udevadm output, the nd snapshot over a fake sysfs, fixture shapes, the unit parser and
// the QMP client against a fake QEMU socket.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { MiB } from '../../src/core/units.js';
import { filesystemOnData, layoutChecksums, perPageReservedBytes, preparedImage, shrunkReservedImage } from '../../lab/nvdimm-images.js';
import { DOM0_ROOT, dpkgVersions, removeOlderTrees } from '../../lab/dom0-root.js';
import { LabError } from '../../lab/errors.js';
import { attributeShape, trimEvents } from '../../lab/fixtures.js';
import { unitSandboxProperties } from '../../lab/guest/hardening-matrix.js';
import { snapshotNd } from '../../lab/guest/nd-snapshot.js';
import { findBzImagePayload } from '../../lab/kernel-image.js';
import { moduleLoadOrder, moduleName } from '../../lab/kernel-modules.js';
import { CPU_MODELS, escapeOptionValue, maxMemoryBytes, nvdimmDeviceOption, qemuArguments, type VmConfig } from '../../lab/qemu-args.js';
import { QmpClient } from '../../lab/qmp.js';
import { runCommand } from '../../lab/run-command.js';
import { describeEvent, eventKind, parseUdevMonitor } from '../../lab/udev-monitor.js';
import { describePhaseTimes, guestSteps, lastGuestStep, phaseTimes } from '../../lab/timeline.js';

test('runCommand survives a command that closes its stdin at once, with input and without', async () => {
  // A reader that is gone before the input is written must not end the lab with EPIPE: the
  // command's exit status is the answer.
  const closesStdin = ['-c', 'exec 0<&-; echo done; exit 3'];
  const withInput = await runCommand('/bin/sh', closesStdin, { input: 'x'.repeat(1 << 20) });
  assert.deepEqual([withInput.code, withInput.stdout], [3, 'done\n']);
  const withoutInput = await runCommand('/bin/sh', ['-c', 'read line; echo "got [$line] $?"']);
  assert.equal(withoutInput.stdout, 'got [] 1\n', 'no input: the command reads end of file at once');
});

test('moduleLoadOrder puts every dependency before its user and skips built-in modules', () => {
  const dep = [
    'kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko',
    'kernel/net/9p/9pnet.ko:',
    'kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko',
    'kernel/fs/netfs/netfs.ko:',
    'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko',
    'kernel/drivers/virtio/virtio_ring.ko:',
  ].join('\n');
  const order = moduleLoadOrder(dep, 'kernel/drivers/virtio/virtio_ring.ko\n', ['9pnet-virtio', '9p']).map((module) => module.name);
  assert.deepEqual(order, ['9pnet', '9pnet_virtio', 'netfs', 'fscache', '9p']);
  for (const [index, name] of order.entries()) {
    assert.ok(!order.slice(0, index).includes(name), `${name} twice`);
  }
  assert.equal(moduleName('kernel/drivers/xen/xen-privcmd.ko.xz'), 'xen_privcmd');
});

test('moduleLoadOrder names a module that does not exist', () => {
  assert.throws(() => moduleLoadOrder('kernel/a.ko:\n', '', ['missing']), /module missing is neither in modules.dep nor built into the kernel/);
});

test('findBzImagePayload reads the boot header and recognises the compression', () => {
  const image = new Uint8Array(8192);
  const view = new DataView(image.buffer);
  image[0x1f1] = 3;
  view.setUint32(0x202, 0x53726448, true);
  view.setUint16(0x206, 0x020f, true);
  view.setUint32(0x248, 100, true);
  view.setUint32(0x24c, 600, true);
  const offset = 4 * 512 + 100;
  image.set([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], offset);
  assert.deepEqual(findBzImagePayload(image), { offset, length: 600, format: 'xz' });
  view.setUint32(0x24c, 8192, true);
  assert.equal(findBzImagePayload(image), null, 'a payload past the end of the file is refused');
  assert.equal(findBzImagePayload(new Uint8Array(1024)), null);
});

function vmConfig(overrides: Partial<VmConfig> = {}): VmConfig {
  return {
    qemu: '/usr/bin/qemu-system-x86_64',
    xenImage: '/cache/xen.elf',
    kernelImage: '/cache/vmlinuz.elf',
    initramfs: '/cache/initramfs.cpio.gz',
    rootDir: '/cache/debian13/rootfs-0123456789abcdef',
    cpuModel: CPU_MODELS.qemu64,
    modulesDir: '/cache/lib/modules/6.1.0-56-amd64',
    guestDir: '/repo/lab/guest',
    scenarioPath: '/repo/lab/guest/scenarios/smoke.sh',
    resultsDir: '/run dir/results',
    serialLogPath: '/run/serial.log',
    qmpSocketPath: '/run/qmp.sock',
    nvdimms: [
      { id: 'nv0', imagePath: '/img/a,b.img', sizeBytes: 256n * MiB },
      { id: 'nv1', imagePath: '/img/c.img', sizeBytes: 512n * MiB, labelSizeBytes: 128n * 1024n },
    ],
    memoryMiB: 2048,
    dom0MemoryMiB: 1024,
    cpus: 1,
    hotplugSlots: 4,
    hotplugBytes: 4096n * MiB,
    ...overrides,
  };
}

test('qemuArguments: TCG, Xen with the Dom0 kernel and initramfs as modules, NVDIMMs, shares', () => {
  const args = qemuArguments(vmConfig());
  const value = (flag: string): string[] => args.flatMap((arg, index) => (arg === flag ? [args[index + 1]!] : []));
  assert.deepEqual(value('-accel'), ['tcg']);
  assert.deepEqual(value('-cpu'), ['qemu64,+x2apic,+rdrand']);
  assert.deepEqual(value('-kernel'), ['/cache/xen.elf']);
  const modules = value('-initrd')[0]!;
  assert.match(modules, /^\/cache\/vmlinuz\.elf console=hvc0 .*systemd\.unit=xen-pmem-lab\.target .*xen_pmem_lab\.scenario=\/repo\/lab\/guest\/scenarios\/smoke\.sh xen_pmem_lab\.root=\/cache\/debian13\/rootfs-0123456789abcdef,\/cache\/initramfs\.cpio\.gz$/);
  assert.doesNotMatch(modules, /xen_pmem_lab\.bind=/, 'no extra host paths asked for, none named');
  assert.match(value('-append')[0]!, /dom0_mem=1024M,max:1024M/);
  // 2 GiB RAM + 768 MiB of NVDIMMs + 4 GiB for hotplug, rounded up to whole GiB.
  assert.equal(value('-m')[0], `2048M,slots=6,maxmem=${7n * 1024n * MiB}`);
  assert.deepEqual(value('-object'), [
    `memory-backend-file,id=nv0-mem,share=on,mem-path=/img/a,,b.img,size=${256n * MiB}`,
    `memory-backend-file,id=nv1-mem,share=on,mem-path=/img/c.img,size=${512n * MiB}`,
  ]);
  assert.deepEqual(value('-device'), ['nvdimm,id=nv0,memdev=nv0-mem', 'nvdimm,id=nv1,memdev=nv1-mem,label-size=131072']);
  assert.ok(value('-virtfs').some((share) => share.includes('path=/run dir/results,mount_tag=labresults')));
  assert.ok(args.includes('-no-reboot'));
});

test('qemuArguments: the CPU model and the extra host paths are the caller\'s', () => {
  const args = qemuArguments(vmConfig({ cpuModel: CPU_MODELS.svm, hostPaths: ['/var/cache/xen-pmem-promtool', '/srv/x'] }));
  assert.deepEqual(args.flatMap((arg, index) => (arg === '-cpu' ? [args[index + 1]!] : [])), ['qemu64,+svm,+npt,+nrip-save,+x2apic,+rdrand']);
  const modules = args[args.indexOf('-initrd') + 1]!;
  assert.match(modules, / xen_pmem_lab\.bind=\/var\/cache\/xen-pmem-promtool:\/srv\/x[ ,]/);
});

test('dpkgVersions: installed packages only, from a dpkg status file', () => {
  const status = [
    'Package: nodejs\nStatus: install ok installed\nVersion: 20.19.2+dfsg-1+deb13u3\n',
    'Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n',
    'Package: systemd\nStatus: install ok installed\nPriority: important\nVersion: 257.13-1~deb13u1\n',
  ].join('\n');
  assert.deepEqual([...dpkgVersions(status)], [['nodejs', '20.19.2+dfsg-1+deb13u3'], ['systemd', '257.13-1~deb13u1']]);
});

test('removeOlderTrees: a new Debian 13 root replaces the roots of other keys, nothing else', async () => {
  const base = await mkdtemp(join(tmpdir(), 'xen-pmem-trees-'));
  try {
    for (const name of ['rootfs-aaaaaaaaaaaaaaaa', 'rootfs-bbbbbbbbbbbbbbbb', 'lintian-cccccccccccccccc', 'debs']) {
      await mkdir(join(base, name, 'usr'), { recursive: true });
      await writeFile(`${join(base, name)}.json`, '{}');
    }
    await removeOlderTrees(base, DOM0_ROOT, join(base, 'rootfs-bbbbbbbbbbbbbbbb'), () => {});
    const left = (await readdir(base)).sort();
    assert.deepEqual(left, ['debs', 'debs.json', 'lintian-cccccccccccccccc', 'lintian-cccccccccccccccc.json', 'rootfs-bbbbbbbbbbbbbbbb', 'rootfs-bbbbbbbbbbbbbbbb.json']);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
});

test('qemuArguments refuses what QEMU or the kernel command line cannot carry', () => {
  const refused = (config: VmConfig, pattern: RegExp): void => {
    assert.throws(() => qemuArguments(config), (error: unknown) => error instanceof LabError && error.reason === 'bad-options' && pattern.test(error.message));
  };
  refused(vmConfig({ scenarioPath: '/repo/my scenario.sh' }), /scenario path "\/repo\/my scenario.sh" contains a space, comma or colon/);
  refused(vmConfig({ hostPaths: ['/a:b'] }), /host path "\/a:b" contains a space, comma or colon/);
  refused(vmConfig({ hostPaths: ['relative/dir'] }), /is not absolute/);
  refused(vmConfig({ nvdimms: [{ id: 'nv0', imagePath: '/a', sizeBytes: 1000n }] }), /multiple of 4096/);
  refused(vmConfig({ nvdimms: [{ id: 'nv0', imagePath: '/a', sizeBytes: MiB, labelSizeBytes: 4096n }] }), /label-size 4096 must be at least 131072/);
  refused(vmConfig({ nvdimms: [{ id: 'nv0', imagePath: '/a', sizeBytes: MiB, address: 0x200001000n }] }), /address 0x200001000 must be a positive multiple of 2 MiB/);
  assert.equal(nvdimmDeviceOption({ id: 'nv9', imagePath: '/a', sizeBytes: MiB, address: 0x200000000n }), 'nvdimm,id=nv9,memdev=nv9-mem,addr=0x200000000');
  refused(vmConfig({ nvdimms: [{ id: 'nv0', imagePath: '/a', sizeBytes: MiB }, { id: 'nv0', imagePath: '/b', sizeBytes: MiB }] }), /used twice/);
  assert.equal(escapeOptionValue('a,b,,c'), 'a,,b,,,,c');
  assert.equal(maxMemoryBytes({ memoryMiB: 1024, nvdimms: [], hotplugBytes: 1n }), 2048n * MiB);
});

const MONITOR_OUTPUT = `monitor will print the received events for:
UDEV - the event which udev sends out after rule processing

UDEV  [38.696678] add      /devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/nmem2 (nd)
ACTION=add
DEVPATH=/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/nmem2
SUBSYSTEM=nd
SEQNUM=1259
MAJOR=245

UDEV  [39.100000] add      /devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region2/namespace2.0/block/pmem2 (block)
ACTION=add
DEVTYPE=disk
DEVNAME=/dev/pmem2
`;

test('eventKind keeps the action, the kind of device and the subsystem, and drops the numbers the kernel picks', () => {
  assert.equal(eventKind('add btt2.1'), 'add btt');
  assert.equal(eventKind('bind region12'), 'bind region');
  assert.equal(eventKind('add pmem2 (block)'), 'add pmem (block)');
  assert.equal(eventKind('add 259:2 (bdi)'), 'add N:N (bdi)');
  assert.equal(eventKind('add ndbus0'), 'add ndbus');
  assert.notEqual(eventKind('add btt2.0'), eventKind('add pfn2.0'));
});

test('parseUdevMonitor turns udevadm monitor --property output into events', () => {
  const events = parseUdevMonitor(MONITOR_OUTPUT);
  assert.equal(events.length, 2);
  assert.deepEqual(events.map(describeEvent), ['add nmem2', 'add pmem2 (block)']);
  assert.equal(events[0]!.uptime, 38.696678);
  assert.equal(events[1]!.properties.DEVNAME, '/dev/pmem2');
  const trimmed = trimEvents(events);
  assert.equal(trimmed[0]!.properties.SEQNUM, undefined, 'sequence numbers change from run to run');
  assert.equal(trimmed[0]!.properties.MAJOR, '245');
});

test('snapshotNd reads devices, attributes, unreadable attributes, groups, links and block disks', async () => {
  const root = await mkdtemp(join(tmpdir(), 'lab-sysfs-'));
  try {
    const region = join(root, 'sys/devices/ndbus0/region0');
    const namespace = join(region, 'namespace0.0');
    await mkdir(join(namespace, 'block/pmem0/queue'), { recursive: true });
    await mkdir(join(root, 'sys/bus/nd/devices'), { recursive: true });
    await mkdir(join(root, 'sys/class/block'), { recursive: true });
    await mkdir(join(root, 'sys/bus/nd/drivers/nd_region'), { recursive: true });
    await mkdir(join(region, 'power'), { recursive: true });
    await writeFile(join(region, 'uevent'), 'DEVTYPE=nd_pmem\n');
    await writeFile(join(region, 'resource'), '0x100000000\n');
    await writeFile(join(region, 'size'), '268435456\n');
    await mkdir(join(region, 'delete_namespace'));
    await symlink('../../bus/nd/drivers/nd_region', join(region, 'driver'));
    await writeFile(join(namespace, 'uevent'), 'DEVTYPE=nd_namespace_io\n');
    await writeFile(join(namespace, 'mode'), 'raw\n');
    await writeFile(join(namespace, 'block/pmem0/uevent'), 'DEVTYPE=disk\n');
    await writeFile(join(namespace, 'block/pmem0/size'), '524288\n');
    await writeFile(join(namespace, 'block/pmem0/queue/logical_block_size'), '512\n');
    await symlink(region, join(root, 'sys/bus/nd/devices/region0'));
    await symlink(namespace, join(root, 'sys/bus/nd/devices/namespace0.0'));
    await symlink(join(namespace, 'block/pmem0'), join(root, 'sys/class/block/pmem0'));
    await mkdir(join(root, 'proc'));
    await writeFile(join(root, 'proc/iomem'), '00000000-00000fff : Reserved\n100000000-10fffffff : Persistent Memory\n');
    await mkdir(join(root, 'dev'));

    const snapshot = snapshotNd({ sys: join(root, 'sys'), dev: join(root, 'dev'), proc: join(root, 'proc') });
    assert.deepEqual(snapshot.busDevices.map((device) => device.name), ['namespace0.0', 'region0']);
    const regionObject = snapshot.devices.region0!;
    assert.equal(regionObject.path, region);
    assert.equal(regionObject.attributes.resource, '0x100000000');
    assert.equal(regionObject.links.driver, 'nd_region');
    assert.deepEqual(regionObject.children, ['namespace0.0']);
    assert.equal(regionObject.groups.power, undefined, 'power/ is not an nd attribute group');
    assert.deepEqual(regionObject.groups.delete_namespace, {});
    assert.equal(snapshot.block.pmem0?.attributes.size, '524288');
    assert.equal(snapshot.block.pmem0?.groups.queue?.logical_block_size, '512');
    assert.deepEqual(snapshot.iomem, ['100000000-10fffffff : Persistent Memory']);
    assert.deepEqual(attributeShape([snapshot]), {
      'namespace/nd_namespace_io': ['block/', 'mode', 'uevent'],
      'region/nd_pmem': ['delete_namespace/', 'resource', 'size', 'uevent'],
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('unitSandboxProperties keeps the [Service] settings that shape the sandbox, not the lifecycle', () => {
  const unit = [
    '[Unit]', 'Description=x', 'ConditionPathExists=/proc/xen/capabilities',
    '[Service]', 'Type=notify', '# a comment', 'ExecStart=/usr/bin/node daemon.js', 'Restart=on-failure',
    'ProtectSystem=strict', 'DeviceAllow=/dev/xen/privcmd rw', 'SystemCallFilter=~@privileged @resources',
    '[Install]', 'WantedBy=multi-user.target',
  ].join('\n');
  assert.deepEqual(unitSandboxProperties(unit), ['ProtectSystem=strict', 'DeviceAllow=/dev/xen/privcmd rw', 'SystemCallFilter=~@privileged @resources']);
});

test('QmpClient negotiates, matches answers by id, reports errors and keeps events', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lab-qmp-'));
  const socketPath = join(dir, 'qmp.sock');
  const received: Array<Record<string, unknown>> = [];
  const server = createServer((connection) => {
    connection.write('{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\r\n');
    let buffer = '';
    connection.on('data', (chunk) => {
      buffer += chunk.toString();
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffer.slice(0, newline)) as { execute: string; id: string; arguments?: Record<string, unknown> };
        buffer = buffer.slice(newline + 1);
        received.push(message);
        if (message.execute === 'device_add') {
          connection.write('{"event": "DEVICE_ADDED", "data": {"device": "nv2"}}\r\n');
          connection.write(`{"error": {"class": "GenericError", "desc": "no slot free"}, "id": "${message.id}"}\r\n`);
        } else {
          connection.write(`{"return": {}, "id": "${message.id}"}\r\n`);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  try {
    const client = await QmpClient.connect(socketPath, 2_000);
    await client.addMemoryBackendFile('nv2-mem', '/img/c.img', 512n * MiB);
    await assert.rejects(client.addNvdimm('nv2', 'nv2-mem', 128n * 1024n), /QMP device_add failed: GenericError: no slot free/);
    assert.equal((await client.waitForEvent('DEVICE_ADDED', 1_000, 0)).data?.device, 'nv2');
    client.close();
    assert.deepEqual(received.map((message) => message.execute), ['qmp_capabilities', 'object-add', 'device_add']);
    assert.deepEqual(received[1]!.arguments, { 'qom-type': 'memory-backend-file', id: 'nv2-mem', 'mem-path': '/img/c.img', size: 536870912, share: true });
    assert.deepEqual(received[2]!.arguments, { driver: 'nvdimm', id: 'nv2', memdev: 'nv2-mem', 'label-size': 131072 });
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('QmpClient gives up with a clear error when nothing answers', async () => {
  await assert.rejects(QmpClient.connect('/nonexistent/qmp.sock', 300), (error: unknown) => error instanceof LabError && error.reason === 'qmp-failed' && /no QMP greeting/.test(error.message));
});

const SERIAL_SAMPLE = [
  '(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1)',
  '[   12.150346] sh[140]: lab: marked started',
  '[   12.217093] sh[140]: lab: running /srv/x/lab/guest/scenarios/daemon-xen.sh',
  '\x1b[0;32m  OK  \x1b[0m] Started xen-pmemd.service',
  '[   17.677359] sh[150]: lab: phase boot (uptime 17.6 s)',
  '[   17.766188] sh[150]: lab: phase install (uptime 17.8 s)',
  '[   35.510451] sh[150]: lab: /usr/bin/node … install → 0 in 17726 ms',
  '[   36.069039] sh[150]: lab: phase udev-start (uptime 36.1 s)',
  '[   36.081373] sh[150]: lab: marked hotplug-stopped',
  '[   99.694972] sh[140]: lab: marked done',
].join('\n');

test('guestSteps and lastGuestStep read the phases and markers a scenario printed', () => {
  assert.deepEqual(guestSteps(SERIAL_SAMPLE).map((step) => step.name), [
    'marked started', 'phase boot', 'phase install', 'phase udev-start', 'marked hotplug-stopped', 'marked done',
  ]);
  assert.equal(lastGuestStep(SERIAL_SAMPLE), 'marked done at uptime 99.7 s');
  assert.equal(lastGuestStep(SERIAL_SAMPLE.split('\n').slice(0, 7).join('\n')), 'phase install at uptime 17.8 s');
  assert.match(lastGuestStep('(XEN) Xen version 4.17.7'), /^none yet/);
});

test('phaseTimes splits a run into boot, the start of the guest program and each phase', () => {
  const times = phaseTimes(SERIAL_SAMPLE);
  assert.deepEqual(times.map((time) => time.name), ['dom0-boot', 'program-start', 'boot', 'install', 'udev-start']);
  const seconds = times.map((time) => Number(time.seconds.toFixed(2)));
  assert.deepEqual(seconds, [12.15, 5.53, 0.09, 18.3, 63.63]);
  assert.equal(describePhaseTimes(times.slice(0, 2)), 'dom0-boot 12.2 s, program-start 5.5 s');
});

test('images for the patched hypervisor: the reserved area an older planner made, a file system on the data partition, checksums that see a change', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'xen-pmem-lab-images-'));
  try {
    const size = 256n * MiB;
    // 65,536 pages × 44 bytes = 2.75 MiB, rounded up to 2 MiB: 4 MiB.
    assert.equal(perPageReservedBytes(size), 4n * MiB);
    const older = shrunkReservedImage(join(dir, 'older.img'), size, perPageReservedBytes(size));
    assert.equal(BigInt(older.reservedSize), 4n * MiB);
    const image = join(dir, 'fs.img');
    const offsets = preparedImage(image, size);
    const partition = filesystemOnData(image, { 'hello.txt': 'hello from the host\n' }, dir);
    assert.equal(partition.start, BigInt(offsets.dataOffset), 'partition 1 starts where the data area does');
    const probe = spawnSync('blkid', ['-p', '-O', String(partition.start), '-o', 'value', '-s', 'TYPE', image], { encoding: 'utf8' });
    assert.equal(probe.stdout.trim(), 'ext4');
    const before = layoutChecksums(image, offsets, size);
    assert.deepEqual(Object.keys(before), ['primary GPT', 'backup GPT', 'primary super block', 'backup super block', 'data area']);
    assert.deepEqual(layoutChecksums(image, offsets, size), before, 'reading changes nothing');
    const fd = openSync(image, 'r+');
    writeSync(fd, Buffer.from([0x5a]), 0, 1, Number(BigInt(offsets.dataOffset) + BigInt(offsets.dataSize) - 1n));
    closeSync(fd);
    const after = layoutChecksums(image, offsets, size);
    assert.notEqual(after['data area'], before['data area'], 'one byte at the end of the data area shows');
    assert.equal(after['primary GPT'], before['primary GPT']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
