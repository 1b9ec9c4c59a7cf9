// One serializer for a namespace model, shared by `xen-pmem list` and the daemon's logs, in the
// style of `ndctl list`: key names follow ndctl where the meaning is the same (dev, mode, size,
// uuid, blockdev, sector_size, numa_node). Sizes are numbers by default and "256.00 MiB" with
// `human`; addresses are always hex strings, as everywhere in this project.

import { hex, humanSize } from '../core/units.js';
import type { PmemNamespaceModel } from './types.js';

export interface NamespaceJsonOptions {
  human?: boolean;
}

/** A size: a JSON number, or a decimal string when it would lose precision, or human text. */
export type JsonSize = number | string;

export interface NamespaceJson {
  dev: string;
  mode: string;
  /** Bytes the block device exposes (ndctl's "size" for raw and fsdax). */
  size?: JsonSize;
  uuid?: string;
  blockdev?: string;
  sector_size?: number;
  /** Physical address of block byte 0. */
  phys_start?: string;
  region: { dev: string; resource?: string; size?: JsonSize; numa_node?: number };
  supported: boolean;
  unsupported?: { code: string; message: string };
}

function jsonSize(bytes: bigint, human: boolean): JsonSize {
  if (human) return humanSize(bytes);
  return bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : bytes.toString();
}

export function namespaceToJson(model: PmemNamespaceModel, options: NamespaceJsonOptions = {}): NamespaceJson {
  const human = options.human === true;
  const region: NamespaceJson['region'] = { dev: model.region.name };
  if (model.region.start !== null) region.resource = hex(model.region.start);
  if (model.region.size !== null) region.size = jsonSize(model.region.size, human);
  if (model.region.numaNode !== null) region.numa_node = model.region.numaNode;

  // Keys are added in ndctl's order so that the printed JSON reads the same way.
  const json = { dev: model.namespace, mode: model.mode } as NamespaceJson;
  if (model.block !== null) json.size = jsonSize(model.block.size, human);
  if (model.namespaceUuid !== null) json.uuid = model.namespaceUuid;
  if (model.block !== null) {
    json.blockdev = model.block.name;
    json.sector_size = model.block.logicalBlockSize;
    if (model.block.physStart !== null) json.phys_start = hex(model.block.physStart);
  }
  json.region = region;
  json.supported = model.unsupported === null;
  if (model.unsupported !== null) json.unsupported = { ...model.unsupported };
  return json;
}
