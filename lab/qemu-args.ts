// The QEMU command line of a lab VM, built from plain data so it can be checked without a VM.
// Facts behind the choices (measured on this machine kind, see docs/lab.md): TCG only, because
// KVM hangs; `qemu64,+x2apic` because `-cpu max` crashes the PV Dom0; Xen is the multiboot
// kernel and the Dom0 kernel plus initramfs are its modules. rdrand seeds the Dom0's random
// pool at once (without it the first getrandom() waited tens of seconds for entropy).

import { MiB } from '../src/core/units.js';
import { LabError } from './errors.js';

export interface NvdimmSpec {
  /** QEMU device id, e.g. `nv0`; the memory backend is named `<id>-mem`. */
  id: string;
  /** Sparse image file on the host; what the guest writes to the pmem device lands here. */
  imagePath: string;
  sizeBytes: bigint;
  /** With a label area the region is labelled (namespaces made by ndctl); without, one raw namespace. */
  labelSizeBytes?: bigint;
  /** Guest physical address of the DIMM (QEMU's `addr`); QEMU picks the next free one when absent. */
  address?: bigint;
}

/**
 * The CPU models the lab boots with. `qemu64`: what a PV Dom0 needs. `svm`: the same with AMD's
 * virtualisation (SVM, nested paging, NRIP save), with which Xen reports SVM and HAP and can run
 * PVH and HVM guests; `-cpu EPYC` panics Xen in mwait_idle and `-cpu max` crashes the PV Dom0.
 */
export const CPU_MODELS = {
  qemu64: 'qemu64,+x2apic,+rdrand',
  svm: 'qemu64,+svm,+npt,+nrip-save,+x2apic,+rdrand',
} as const;
export type CpuModel = keyof typeof CPU_MODELS;

export interface VmConfig {
  qemu: string;
  xenImage: string;
  kernelImage: string;
  initramfs: string;
  /** Host directory of the Dom0's root: `/` (the host's own) or a root file system in the lab cache. */
  rootDir: string;
  /** Host directories (or files) the guest sees at the same path, beside the checkout and the modules. */
  hostPaths?: readonly string[];
  /** QEMU's -cpu value (CPU_MODELS). */
  cpuModel: string;
  /** Host directory of the Dom0 kernel's modules (`.../lib/modules/<release>`). */
  modulesDir: string;
  /** Host directory of the guest scripts and units (`lab/guest`). */
  guestDir: string;
  /** The guest script the lab unit runs. */
  scenarioPath: string;
  /** Host directory shared writable with the guest at /lab/results. */
  resultsDir: string;
  serialLogPath: string;
  qmpSocketPath: string;
  nvdimms: readonly NvdimmSpec[];
  memoryMiB: number;
  dom0MemoryMiB: number;
  cpus: number;
  /** DIMM slots and address space left free for NVDIMMs hotplugged later. */
  hotplugSlots: number;
  hotplugBytes: bigint;
  /** Extra words for the Dom0 kernel command line. */
  kernelArgs?: readonly string[];
  /** Extra words for Xen's command line. */
  xenArgs?: readonly string[];
}

export const LAB_TARGET = 'xen-pmem-lab.target';
export const HOST_ROOT_TAG = 'hostroot';
export const RESULTS_TAG = 'labresults';

/** QEMU option values separate fields with commas; a literal comma is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

const NVDIMM_ID = /^[a-zA-Z][a-zA-Z0-9_-]{0,30}$/;

export function checkNvdimm(spec: NvdimmSpec): void {
  if (!NVDIMM_ID.test(spec.id)) {
    throw new LabError('bad-options', `NVDIMM id "${spec.id}" must be a letter then up to 30 letters, digits, _ or -`);
  }
  if (spec.sizeBytes <= 0n || spec.sizeBytes % (4n * 1024n) !== 0n) {
    throw new LabError('bad-options', `NVDIMM ${spec.id} is ${spec.sizeBytes} bytes; it must be a positive multiple of 4096`);
  }
  if (spec.address !== undefined && (spec.address <= 0n || spec.address % (2n * 1024n * 1024n) !== 0n)) {
    throw new LabError('bad-options', `NVDIMM ${spec.id} address 0x${spec.address.toString(16)} must be a positive multiple of 2 MiB`);
  }
  const label = spec.labelSizeBytes;
  if (label !== undefined && (label < 128n * 1024n || label >= spec.sizeBytes)) {
    throw new LabError('bad-options', `NVDIMM ${spec.id} label-size ${label} must be at least 131072 and below its size ${spec.sizeBytes}`);
  }
}

/** The address space the guest may grow into: RAM, the NVDIMMs at boot, and room for hotplug. */
export function maxMemoryBytes(config: Pick<VmConfig, 'memoryMiB' | 'nvdimms' | 'hotplugBytes'>): bigint {
  const atBoot = config.nvdimms.reduce((sum, nvdimm) => sum + nvdimm.sizeBytes, 0n);
  const total = BigInt(config.memoryMiB) * MiB + atBoot + config.hotplugBytes;
  // QEMU wants maxmem page aligned; round up to 1 GiB to keep the number readable in ps.
  const GiB = 1024n * MiB;
  return ((total + GiB - 1n) / GiB) * GiB;
}

export function dom0CommandLine(config: VmConfig): string[] {
  return [
    'console=hvc0',
    // A Dom0 panic reboots at once; QEMU's -no-reboot then ends the run instead of hanging.
    'panic=-1',
    'loglevel=4',
    `systemd.unit=${LAB_TARGET}`,
    `xen_pmem_lab.modules=${config.modulesDir}`,
    `xen_pmem_lab.guest=${config.guestDir}`,
    `xen_pmem_lab.scenario=${config.scenarioPath}`,
    `xen_pmem_lab.root=${config.rootDir}`,
    ...((config.hostPaths ?? []).length > 0 ? [`xen_pmem_lab.bind=${(config.hostPaths ?? []).join(':')}`] : []),
    ...(config.kernelArgs ?? []),
  ];
}

export function qemuArguments(config: VmConfig): string[] {
  config.nvdimms.forEach(checkNvdimm);
  const ids = new Set<string>();
  for (const nvdimm of config.nvdimms) {
    if (ids.has(nvdimm.id)) throw new LabError('bad-options', `NVDIMM id ${nvdimm.id} is used twice`);
    ids.add(nvdimm.id);
  }
  const paths: Array<readonly [string, string]> = [
    ['modules directory', config.modulesDir], ['guest directory', config.guestDir], ['scenario path', config.scenarioPath], ['root directory', config.rootDir],
    ...(config.hostPaths ?? []).map((path) => ['host path', path] as const),
  ];
  for (const [what, path] of paths) {
    if (/[\s,:]/.test(path)) {
      throw new LabError('bad-options', `the ${what} "${path}" contains a space, comma or colon, which the kernel command line cannot carry`);
    }
    if (!path.startsWith('/')) throw new LabError('bad-options', `the ${what} "${path}" is not absolute`);
  }

  const xenCommandLine = [
    `dom0_mem=${config.dom0MemoryMiB}M,max:${config.dom0MemoryMiB}M`,
    `dom0_max_vcpus=${config.cpus}`,
    'console=com1',
    'com1=115200,8n1',
    // Scrubbing free RAM at boot costs seconds of emulated CPU and protects nothing here.
    'bootscrub=0',
    ...(config.xenArgs ?? []),
  ].join(' ');
  // Multiboot modules: "<file> <its command line>", separated by commas.
  const modules = [
    `${config.kernelImage} ${dom0CommandLine(config).join(' ')}`,
    config.initramfs,
  ].map(escapeOptionValue).join(',');

  const slots = config.nvdimms.length + config.hotplugSlots;
  const args = [
    '-name', 'xen-pmem-lab',
    '-machine', 'pc,nvdimm=on',
    '-accel', 'tcg',
    '-cpu', config.cpuModel,
    '-smp', String(config.cpus),
    '-m', `${config.memoryMiB}M,slots=${slots},maxmem=${maxMemoryBytes(config)}`,
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-serial', `file:${config.serialLogPath}`,
    '-qmp', `unix:${escapeOptionValue(config.qmpSocketPath)},server=on,wait=off`,
    '-kernel', config.xenImage,
    '-append', xenCommandLine,
    '-initrd', modules,
    '-virtfs', `local,path=/,mount_tag=${HOST_ROOT_TAG},security_model=none,readonly=on,multidevs=remap`,
    '-virtfs', `local,path=${escapeOptionValue(config.resultsDir)},mount_tag=${RESULTS_TAG},security_model=none,multidevs=remap`,
  ];
  for (const nvdimm of config.nvdimms) {
    args.push('-object', memoryBackendOption(nvdimm), '-device', nvdimmDeviceOption(nvdimm));
  }
  return args;
}

export function memoryBackendOption(nvdimm: NvdimmSpec): string {
  return `memory-backend-file,id=${nvdimm.id}-mem,share=on,mem-path=${escapeOptionValue(nvdimm.imagePath)},size=${nvdimm.sizeBytes}`;
}

export function nvdimmDeviceOption(nvdimm: NvdimmSpec): string {
  const label = nvdimm.labelSizeBytes === undefined ? '' : `,label-size=${nvdimm.labelSizeBytes}`;
  const address = nvdimm.address === undefined ? '' : `,addr=0x${nvdimm.address.toString(16)}`;
  return `nvdimm,id=${nvdimm.id},memdev=${nvdimm.id}-mem${label}${address}`;
}
