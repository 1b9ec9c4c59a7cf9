// Turns what a lab run brought back into the small committed fixtures of test/fixtures/captured:
// sysfs snapshots without the counters that change on every read, udev event lists without
// sequence numbers and timestamps, and the shapes (which attributes each kind of device has)
// that tests compare against later runs.

import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { NdSnapshot, SysfsObject } from './guest/nd-snapshot.js';
import { describeEvent, parseUdevMonitor, type UdevEvent } from './udev-monitor.js';

/** Block attributes that describe the disk; the rest are I/O counters and sequence numbers. */
const BLOCK_ATTRIBUTES = new Set(['dev', 'size', 'ro', 'removable', 'hidden', 'capability', 'range', 'ext_range', 'alignment_offset']);
const QUEUE_ATTRIBUTES = new Set([
  'logical_block_size', 'physical_block_size', 'hw_sector_size', 'minimum_io_size', 'optimal_io_size',
  'dax', 'rotational', 'max_hw_sectors_kb', 'fua', 'write_cache',
]);
/** udev properties that differ on every run without meaning anything. */
const VOLATILE_PROPERTIES = new Set(['SEQNUM', 'USEC_INITIALIZED', 'DISKSEQ']);

export function trimBlock(object: SysfsObject): SysfsObject {
  const attributes = Object.fromEntries(Object.entries(object.attributes).filter(([name]) => BLOCK_ATTRIBUTES.has(name)));
  const queue = Object.fromEntries(Object.entries(object.groups.queue ?? {}).filter(([name]) => QUEUE_ATTRIBUTES.has(name)));
  const links = Object.fromEntries(Object.entries(object.links).filter(([name]) => name !== 'bdi'));
  return { ...object, links, attributes, unreadable: {}, groups: { queue }, children: object.children };
}

export function trimSnapshot(snapshot: NdSnapshot): NdSnapshot {
  const block = Object.fromEntries(Object.entries(snapshot.block).map(([name, object]) => [name, trimBlock(object)]));
  return { ...snapshot, block };
}

export function trimEvents(events: readonly UdevEvent[]): UdevEvent[] {
  return events.map((event) => ({
    ...event,
    uptime: 0,
    properties: Object.fromEntries(Object.entries(event.properties).filter(([name]) => !VOLATILE_PROPERTIES.has(name))),
  }));
}

/** `region/nd_pmem`, `namespace/nd_namespace_io`, `pfn/nd_pfn`: what kind of nd device this is. */
export function deviceKind(name: string, object: SysfsObject): string {
  const prefix = name.replace(/[\d.]+$/, '');
  const devtype = object.attributes.devtype ?? /DEVTYPE=(\S+)/.exec(object.attributes.uevent ?? '')?.[1] ?? 'none';
  return `${prefix}/${devtype}`;
}

/**
 * Per kind of device, the attribute names it showed in any of the snapshots (readable or not),
 * and the names of its attribute groups. Two runs of one kernel must agree on these; values may differ.
 */
export function attributeShape(snapshots: readonly NdSnapshot[]): Record<string, string[]> {
  const shape: Record<string, Set<string>> = {};
  const objects = snapshots.flatMap((snapshot) => Object.entries(snapshot.devices));
  for (const [name, object] of objects) {
    const kind = deviceKind(name, object);
    const names = (shape[kind] ??= new Set());
    for (const attribute of Object.keys(object.attributes)) names.add(attribute);
    for (const attribute of Object.keys(object.unreadable)) names.add(attribute);
    for (const group of Object.keys(object.groups)) names.add(`${group}/`);
  }
  return Object.fromEntries(Object.entries(shape).sort(([a], [b]) => a.localeCompare(b)).map(([kind, names]) => [kind, [...names].sort()]));
}

/** What the proof run brought back, read from its results directory. */
export interface ProofCapture {
  environment: Record<string, unknown>;
  hypercall: Record<string, unknown>;
  boot: NdSnapshot;
  hotplug: NdSnapshot;
  labelled: NdSnapshot;
  fsdax: NdSnapshot;
  hotplugEvents: UdevEvent[];
  createNamespaceEvents: UdevEvent[];
  createNamespace: Record<string, unknown>;
  initLabels: unknown;
}

export async function readProofCapture(resultsDir: string): Promise<ProofCapture> {
  const json = async <T>(name: string): Promise<T> => JSON.parse(await readFile(join(resultsDir, name), 'utf8')) as T;
  const text = (name: string): Promise<string> => readFile(join(resultsDir, name), 'utf8');
  return {
    environment: await json('environment.json'),
    hypercall: await json('hypercall.json'),
    boot: await json('nd-boot.json'),
    hotplug: await json('nd-hotplug.json'),
    labelled: await json('nd-labelled.json'),
    fsdax: await json('nd-fsdax.json'),
    hotplugEvents: parseUdevMonitor(await text('udev-hotplug.txt')),
    createNamespaceEvents: parseUdevMonitor(await text('udev-create-namespace.txt')),
    createNamespace: await json('ndctl-create-namespace.json'),
    initLabels: await json('ndctl-init-labels.json'),
  };
}

const pretty = (value: unknown): string => JSON.stringify(value, null, 2) + '\n';

/** Writes the proof run's fixtures; the raw udevadm output is kept verbatim beside the parsed lists. */
export async function writeProofFixtures(resultsDir: string, capture: ProofCapture, fixturesDir: string): Promise<string[]> {
  await mkdir(fixturesDir, { recursive: true });
  const written: Array<[string, string]> = [
    ['environment.json', pretty({ ...capture.environment, kernelCommandLine: undefined, uptimeAtStart: undefined, hypercall: capture.hypercall })],
    ['nd-boot.json', pretty(trimSnapshot(capture.boot))],
    ['nd-hotplug.json', pretty(trimSnapshot(capture.hotplug))],
    ['nd-labelled.json', pretty(trimSnapshot(capture.labelled))],
    ['nd-fsdax.json', pretty(trimSnapshot(capture.fsdax))],
    ['udev-hotplug.json', pretty(trimEvents(capture.hotplugEvents))],
    ['udev-create-namespace.json', pretty(trimEvents(capture.createNamespaceEvents))],
    ['ndctl-create-namespace.json', pretty({ initLabels: capture.initLabels, ...capture.createNamespace })],
    ['shapes.json', pretty({
      attributes: attributeShape([capture.boot, capture.hotplug, capture.labelled, capture.fsdax]),
      hotplugEvents: capture.hotplugEvents.map(describeEvent),
      createNamespaceEvents: capture.createNamespaceEvents.map(describeEvent),
    })],
  ];
  for (const [name, content] of written) await writeFile(join(fixturesDir, name), content);
  for (const raw of ['udev-hotplug.txt', 'udev-create-namespace.txt']) await copyFile(join(resultsDir, raw), join(fixturesDir, raw));
  return [...written.map(([name]) => name), 'udev-hotplug.txt', 'udev-create-namespace.txt'];
}
