// The pure half of the device model: attribute texts in, a PmemNamespaceModel out. No I/O, no
// throws. Checks run in a fixed order and the first failure becomes the reason, so one device
// always gets the same reason however many things are wrong with it.

import { hex, hexRange } from '../core/units.js';
import { isUuid, NIL_UUID } from '../core/uuid.js';
import { claimKindOf, type AttributeRead, type BlockFacts, type ClaimKind, type NamespaceFacts } from './facts.js';
import {
  mapsLinearly,
  NAMESPACE_MODES,
  type KnownMode,
  type PmemBlockDevice,
  type PmemMode,
  type PmemNamespaceModel,
  type PmemRegion,
  type Unsupported,
  type UnsupportedCode,
} from './types.js';

export const SECTOR_BYTES = 512n;

/**
 * The kernel's namespace `mode` attribute prints its own words (namespace_devs.c mode_show);
 * ndctl renamed them for users. Both are accepted so that a kernel that adopts ndctl's words
 * keeps working.
 */
// A Map, not an object literal: attribute text such as "toString" must not find Object's members.
const MODE_WORDS: ReadonlyMap<string, KnownMode> = new Map(
  (Object.keys(NAMESPACE_MODES) as KnownMode[]).flatMap((mode) => NAMESPACE_MODES[mode].words.map((word) => [word, mode] as const)),
);

/** Which claim kinds each mode allows; '' means "no holder". */
function holdersOf(mode: KnownMode): readonly (ClaimKind | '')[] {
  return NAMESPACE_MODES[mode].holders;
}

const HEX_ADDRESS = /^(0x[0-9a-fA-F]+|0)$/;
const DECIMAL = /^[0-9]+$/;
const SIGNED_DECIMAL = /^-?[0-9]+$/;
const MAX_LOGICAL_BLOCK_BYTES = 65536;

type Parsed<T> = { ok: true; value: T } | { ok: false; why: Unsupported };

/** Keeps the first reason only: later checks still fill in the model but do not override it. */
class FirstReason {
  reason: Unsupported | null = null;
  note(code: UnsupportedCode, message: string): void {
    if (this.reason === null) this.reason = { code, message };
  }
  take<T>(parsed: Parsed<T>): T | null {
    if (parsed.ok) return parsed.value;
    if (this.reason === null) this.reason = parsed.why;
    return null;
  }
}

function readProblem(device: string, attribute: string, read: AttributeRead & { ok: false }): Unsupported {
  switch (read.problem) {
    case 'missing':
      return {
        code: 'attribute-missing',
        message: `${device} has no '${attribute}' attribute although the device is still present.`,
      };
    case 'device-gone':
      return {
        code: 'device-vanished',
        message: `${device} disappeared while its '${attribute}' attribute was being read.`,
      };
    case 'denied':
      return {
        code: 'permission-denied',
        message:
          `Reading '${attribute}' of ${device} was refused (${read.errno}): ` +
          'the kernel shows physical addresses to root only.',
      };
    case 'unreadable':
      return {
        code: 'attribute-unreadable',
        message:
          `Reading '${attribute}' of ${device} failed with ${read.errno}` +
          (read.errno === 'ENXIO' ? ' (the kernel answers ENXIO while the device is disabled).' : '.'),
      };
  }
}

function unparsable(device: string, attribute: string, text: string, expected: string): Parsed<never> {
  return {
    ok: false,
    why: {
      code: 'attribute-unparsable',
      message: `${device} '${attribute}' holds ${JSON.stringify(text)}, not ${expected}.`,
    },
  };
}

function parseText(device: string, attribute: string, read: AttributeRead): Parsed<string> {
  return read.ok ? { ok: true, value: read.text } : { ok: false, why: readProblem(device, attribute, read) };
}

function parseHexAddress(device: string, attribute: string, read: AttributeRead): Parsed<bigint> {
  if (!read.ok) return { ok: false, why: readProblem(device, attribute, read) };
  if (!HEX_ADDRESS.test(read.text)) return unparsable(device, attribute, read.text, 'a hex address');
  return { ok: true, value: BigInt(read.text) };
}

function parseDecimal(device: string, attribute: string, read: AttributeRead): Parsed<bigint> {
  if (!read.ok) return { ok: false, why: readProblem(device, attribute, read) };
  if (!DECIMAL.test(read.text)) return unparsable(device, attribute, read.text, 'a decimal number');
  return { ok: true, value: BigInt(read.text) };
}

/** `numa_node`: absent without CONFIG_NUMA, -1 for "no node". */
function parseNumaNode(device: string, read: AttributeRead): Parsed<number | null> {
  if (!read.ok) {
    if (read.problem === 'missing') return { ok: true, value: null };
    return { ok: false, why: readProblem(device, 'numa_node', read) };
  }
  if (!SIGNED_DECIMAL.test(read.text)) return unparsable(device, 'numa_node', read.text, 'a node number');
  const node = Number(read.text);
  if (node === -1) return { ok: true, value: null };
  if (node < 0 || !Number.isSafeInteger(node)) return unparsable(device, 'numa_node', read.text, 'a node number');
  return { ok: true, value: node };
}

/** `uuid`: absent for label-less namespaces, empty or all-zero when a label carries none. */
function parseUuid(device: string, read: AttributeRead): Parsed<string | null> {
  if (!read.ok) {
    if (read.problem === 'missing') return { ok: true, value: null };
    return { ok: false, why: readProblem(device, 'uuid', read) };
  }
  if (read.text === '' || read.text === NIL_UUID) return { ok: true, value: null };
  if (!isUuid(read.text)) return unparsable(device, 'uuid', read.text, 'a UUID');
  return { ok: true, value: read.text.toLowerCase() };
}

function parseLogicalBlockSize(device: string, read: AttributeRead): Parsed<number> {
  const attribute = 'queue/logical_block_size';
  if (!read.ok) return { ok: false, why: readProblem(device, attribute, read) };
  const bytes = DECIMAL.test(read.text) ? Number(read.text) : NaN;
  const powerOfTwo = Number.isInteger(bytes) && bytes >= 512 && bytes <= MAX_LOGICAL_BLOCK_BYTES && (bytes & (bytes - 1)) === 0;
  if (!powerOfTwo) return unparsable(device, attribute, read.text, 'a power of two from 512 to 65536');
  return { ok: true, value: bytes };
}

function contains(outerStart: bigint, outerSize: bigint, innerStart: bigint, innerSize: bigint): boolean {
  return innerStart >= outerStart && innerStart + innerSize <= outerStart + outerSize;
}

function describeRange(start: bigint, size: bigint): string {
  return size > 0n ? hexRange(start, size) : `${hex(start)} (empty)`;
}

/** True for the size-0 namespace the kernel keeps in labelled regions for creating new ones. */
export function isIdleSeed(facts: NamespaceFacts): boolean {
  return facts.size.ok && facts.size.text === '0';
}

export function buildNamespaceModel(facts: NamespaceFacts): PmemNamespaceModel {
  const ns = facts.namespace;
  const verdict = new FirstReason();

  // 1. Mode first: for sector and devdax the mode is the whole answer, whatever else is wrong.
  let mode: PmemMode = 'unknown';
  const modeText = verdict.take(parseText(ns, 'mode', facts.mode));
  if (modeText !== null) {
    const known = MODE_WORDS.get(modeText);
    if (known !== undefined) mode = known;
    else
      verdict.note(
        'unknown-mode',
        `${ns} reports mode ${JSON.stringify(modeText)}, which is none of raw, memory (fsdax), safe (sector) or dax (devdax).`,
      );
  }

  const holderText = verdict.take(parseText(ns, 'holder', facts.holder));
  const claimName = holderText !== null && holderText !== '' ? holderText : null;
  const blockNames = facts.blocks.state === 'listed' ? facts.blocks.devices.map((device) => device.name) : [];

  if (mode === 'sector') {
    const via = [claimName, blockNames[0] !== undefined ? `block device ${blockNames[0]}` : null].filter(Boolean);
    verdict.note(
      'sector-mode',
      `${ns} is in sector mode (BTT${via.length > 0 ? `, ${via.join(', ')}` : ''}): ` +
        'block offsets go through a translation table and do not map linearly to physical addresses.',
    );
  } else if (mode === 'devdax') {
    verdict.note(
      'devdax-mode',
      `${ns} is in devdax mode${claimName !== null ? ` (${claimName})` : ''}: ` +
        'it has a character device and no block device to hold a super block.',
    );
  }

  // 2. The holder must be the kind of device the mode implies, and must name this namespace back.
  let claimKind: ClaimKind | '' | null = null;
  if (holderText !== null) {
    claimKind = claimKindOf(holderText);
    if (claimKind === null) {
      verdict.take(unparsable(ns, 'holder', holderText, 'empty or a pfn, btt or dax device name'));
    } else if (mode !== 'unknown' && !holdersOf(mode).includes(claimKind)) {
      verdict.note(
        'holder-mismatch',
        `${ns} reports mode ${mode} but is held by ${holderText === '' ? 'no device' : holderText}.`,
      );
    }
  }
  if (claimName !== null && facts.claim !== null) {
    const claimed = facts.claim.namespace;
    if (!claimed.ok && claimed.problem === 'device-gone') {
      verdict.note('device-vanished', `${ns} is held by ${claimName}, which disappeared while it was being read.`);
    } else {
      const backRef = verdict.take(parseText(claimName, 'namespace', claimed));
      if (backRef !== null && backRef !== ns) {
        verdict.note(
          'holder-mismatch',
          `${ns} names ${claimName} as its holder but ${claimName} holds ${backRef === '' ? 'no namespace' : backRef}.`,
        );
      }
    }
  }

  // 3. A namespace without a block device is best described as just that, before its addresses
  // (which a disabled pfn device refuses to give anyway).
  const linear = mapsLinearly(mode);
  if (linear && facts.blocks.state === 'listed' && facts.blocks.devices.length === 0) {
    if (facts.size.ok && facts.size.text === '0') {
      verdict.note('no-block-device', `${ns} has no capacity (size 0x0): it is an unconfigured namespace.`);
    } else {
      verdict.note(
        'no-block-device',
        `${claimName ?? ns} has no block device: it is disabled or not yet bound to its driver.`,
      );
    }
  }

  // 4. Region.
  const regionStart = verdict.take(parseHexAddress(facts.region, 'resource', facts.regionResource));
  const regionSize = verdict.take(parseDecimal(facts.region, 'size', facts.regionSize));
  const numaNode = verdict.take(parseNumaNode(facts.region, facts.regionNumaNode));
  const region: PmemRegion = { name: facts.region, start: regionStart, size: regionSize, numaNode };

  const namespaceUuid = verdict.take(parseUuid(ns, facts.uuid));

  // 5. The namespace's own range, inside its region.
  const nsSize = verdict.take(parseDecimal(ns, 'size', facts.size));
  let nsStart: bigint | null = null;
  if (nsSize === 0n) {
    // The kernel refuses `resource` (ENXIO) for an empty namespace: say what it is instead.
    verdict.note('no-block-device', `${ns} has no capacity (size 0x0): it is an unconfigured namespace.`);
  } else {
    nsStart = verdict.take(parseHexAddress(ns, 'resource', facts.resource));
  }
  if (nsStart !== null && nsSize !== null && regionStart !== null && regionSize !== null) {
    if (!contains(regionStart, regionSize, nsStart, nsSize)) {
      verdict.note(
        'outside-region',
        `${ns} spans ${describeRange(nsStart, nsSize)} but ${facts.region} spans ${describeRange(regionStart, regionSize)}.`,
      );
    }
  }

  // 6. Where block byte 0 lies: the namespace start, or the pfn device's data start (the kernel
  // keeps its info block and, in "dev" map mode, the struct page array in front of it).
  let dataStart: bigint | null = null;
  let dataSize: bigint | null = null;
  let dataOwner = ns;
  if (linear && claimKind === 'pfn' && facts.claim !== null && claimName !== null) {
    dataOwner = claimName;
    const pfn = facts.claim;
    dataStart = pfn.resource === null ? null : verdict.take(parseHexAddress(claimName, 'resource', pfn.resource));
    dataSize = pfn.size === null ? null : verdict.take(parseDecimal(claimName, 'size', pfn.size));
    if (dataStart !== null && dataSize !== null && nsStart !== null && nsSize !== null) {
      if (!contains(nsStart, nsSize, dataStart, dataSize)) {
        verdict.note(
          'outside-namespace',
          `${claimName} exposes ${describeRange(dataStart, dataSize)} but ${ns} spans ${describeRange(nsStart, nsSize)}.`,
        );
      }
    }
  } else if (linear && claimKind === '') {
    dataStart = nsStart;
    dataSize = nsSize;
  }

  // 7. The block device, whose size must be exactly the data range's (in whole sectors, as the
  // kernel's set_capacity truncates).
  let block: PmemBlockDevice | null = null;
  if (linear) {
    block = readBlock(facts, verdict, ns, dataOwner, dataStart, dataSize);
  } else if (facts.blocks.state === 'listed' && facts.blocks.devices.length > 1) {
    verdict.note('ambiguous-block-device', `${ns} has ${facts.blocks.devices.length} block devices: ${blockNames.join(', ')}.`);
  }

  return { namespace: ns, mode, namespaceUuid, region, block, unsupported: verdict.reason };
}

function readBlock(
  facts: NamespaceFacts,
  verdict: FirstReason,
  ns: string,
  dataOwner: string,
  dataStart: bigint | null,
  dataSize: bigint | null,
): PmemBlockDevice | null {
  const listing = facts.blocks;
  switch (listing.state) {
    case 'owner-gone':
      verdict.note('device-vanished', `${listing.owner} disappeared while ${ns} was being read.`);
      return null;
    case 'unreadable':
      verdict.note('attribute-unreadable', `Listing the block devices of ${listing.owner} failed with ${listing.errno}.`);
      return null;
    case 'not-applicable':
      verdict.note('no-block-device', `${ns} has no block device in its mode.`);
      return null;
    case 'listed':
      break;
  }
  const [device, ...others] = listing.devices;
  if (device === undefined) {
    verdict.note('no-block-device', `${dataOwner} has no block device: it is disabled or not yet bound to its driver.`);
    return null;
  }
  if (others.length > 0) {
    const names = listing.devices.map((each) => each.name).join(', ');
    verdict.note('ambiguous-block-device', `${dataOwner} has ${listing.devices.length} block devices: ${names}.`);
    return null;
  }
  return blockModel(device, verdict, dataOwner, dataStart, dataSize);
}

function blockModel(
  device: BlockFacts,
  verdict: FirstReason,
  dataOwner: string,
  dataStart: bigint | null,
  dataSize: bigint | null,
): PmemBlockDevice | null {
  const sectors = verdict.take(parseDecimal(device.name, 'size', device.size));
  const logicalBlockSize = verdict.take(parseLogicalBlockSize(device.name, device.logicalBlockSize));
  if (sectors === null || logicalBlockSize === null) return null;
  const size = sectors * SECTOR_BYTES;
  if (dataSize !== null && sectors !== dataSize / SECTOR_BYTES) {
    verdict.note(
      'size-mismatch',
      `Block device ${device.name} holds ${hex(size)} bytes (${hex(sectors)} sectors) ` +
        `but ${dataOwner} holds ${hex(dataSize)} bytes.`,
    );
  }
  return {
    name: device.name,
    devPath: device.devPath,
    syspath: device.syspath,
    size,
    logicalBlockSize,
    physStart: dataStart,
  };
}
