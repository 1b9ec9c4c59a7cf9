// The journal's message catalog for xen-pmemd: one entry per kind of outcome the daemon logs,
// each with a stable 128-bit MESSAGE_ID and an explanation (what happened, what to do). This
// table is the only place the ids live: the status publisher and the reporter put them on their
// journal lines, and the build renders the catalog file from it (packaging/catalog.ts writes
// dist/catalog/xen-pmem.catalog, which the package installs in /usr/lib/systemd/catalog), so a
// line and its explanation cannot drift apart. `journalctl -x` shows the explanation under the
// line; `journalctl MESSAGE_ID=<id>` finds every line of one kind, across forwarded journals too.
//
// An id is never changed or reused once released: fleets filter on it. A new kind of outcome
// gets a new entry with a freshly generated id (`systemd-id128 new`).
//
// The texts follow systemd's catalog format (https://systemd.io/CATALOG/): `@FIELD@` is replaced
// by that field of the journal entry, so an entry names only fields every one of its lines has
// (PMEM_DEVICE, PMEM_STATE and PMEM_REASON on every device line; the layout's fields where a
// layout is known; PMEM_CAPABILITY on the hypervisor's lines).

export interface CatalogEntry {
  /** 32 lowercase hex digits, as MESSAGE_ID= carries it. */
  readonly id: string;
  /** One line, shown by `journalctl -x` and `--list-catalog`. */
  readonly subject: string;
  /** Paragraphs: what happened, then what to do. The renderer wraps them. */
  readonly body: readonly string[];
}

export const CATALOG = {
  'reported': {
    id: 'c1781f91a67c41008c9f47a5f8559437',
    subject: 'pmem region of @PMEM_DEVICE@ reported to Xen',
    body: [
      'Xen accepted the report of @PMEM_DEVICE@: the region at @PMEM_REGION_START@ (size @PMEM_REGION_SIZE@), '
      + 'the area reserved in it for Xen\'s page_info and M2P tables at @PMEM_RESERVED_START@ and the data area at '
      + '@PMEM_DATA_START@. Xen manages this memory until the host reboots. The report is recorded in '
      + '/run/xen-pmem/ledger.jsonl and is never sent again in this boot.',
      'Nothing needs to be done. Do not run xen-pmem setup or wipe on this device before the host reboots: '
      + 'Xen has no way to give the region back.',
    ],
  },
  'reported-before-restart': {
    id: 'f942599871c3435b84a93a41b13bc7bc',
    subject: 'pmem region of @PMEM_DEVICE@ found reported by an earlier run',
    body: [
      'An earlier run of xen-pmemd reported @PMEM_DEVICE@ but stopped (it crashed or was killed) before it '
      + 'recorded Xen\'s answer. This run asked Xen which regions it holds, and Xen lists this one with exactly '
      + 'the same frames (or, when Xen could not be asked, answered the same report with EEXIST already_added), '
      + 'which proves the earlier report. The region is in Xen\'s hands and is now recorded.',
      'Nothing needs to be done for the device. Look for why the earlier run stopped: journalctl -u xen-pmemd -b.',
    ],
  },
  'reported-earlier': {
    id: '1ff33102889340e4ac389d1712d188f5',
    subject: 'pmem region of @PMEM_DEVICE@ already reported in this boot',
    body: [
      'The record in /run/xen-pmem, or Xen\'s own list of the regions it holds, shows that the region of '
      + '@PMEM_DEVICE@, with this very layout, was reported to Xen earlier in this boot by a run of the daemon '
      + 'before a restart or an upgrade. Xen keeps it until reboot, so nothing was sent again.',
      'Nothing needs to be done.',
    ],
  },
  'absent': {
    id: '6656f981372e4f47b647801eaa592d04',
    subject: 'no xen-pmem layout on @PMEM_DEVICE@',
    body: [
      '@PMEM_DEVICE@ carries no xen-pmem super block. It is not reported to Xen and stays an ordinary pmem '
      + 'disk of the Dom0.',
      'To give this memory to Xen, prepare the device with "xen-pmem setup" (this destroys what is on it); '
      + 'the daemon reports it as soon as setup has finished.',
    ],
  },
  'unsupported': {
    id: '464fc9d7c66e4c91b2bf5bbdbd2ccd2c',
    subject: '@PMEM_DEVICE@ is valid, but the hypervisor cannot take it (@PMEM_REASON@)',
    body: [
      'The layout on @PMEM_DEVICE@ is valid, but the hypervisor does not implement the operation pmem is '
      + 'reported with, so nothing was sent (reason @PMEM_REASON@: "enosys" is upstream Xen\'s answer, '
      + '"op-67-is-another-operation" a hypervisor that gives platform op 67 to something else, "not-dom0" '
      + 'means the daemon cannot make hypercalls here, "probe-failed" that the answer was not conclusive, '
      + '"unsupported-caller" that Xen takes pmem only from a PV hardware domain). The hypervisor\'s own '
      + 'line at the daemon\'s start says the same once.',
      'Boot a hypervisor that implements XENPF_pmem (platform op 67) for the device to be reported; until then Dom0 can '
      + 'use the device\'s data partitions itself.',
    ],
  },
  'dry-run': {
    id: '8135324b9b8b46718f56e4a35f83f170',
    subject: 'dry run: @PMEM_DEVICE@ would be reported',
    body: [
      'xen-pmemd runs in dry-run mode ("dryRun" in /etc/xen-pmem/config.json, or --dry-run). @PMEM_DEVICE@ is '
      + 'valid; the message gives the exact report it would get. Nothing reached Xen.',
      'Turn the dry run off and restart xen-pmemd to report the device.',
    ],
  },
  'rejected-superblock': {
    id: '05e1ec509c8e41aeafed450693d8b092',
    subject: 'super block of @PMEM_DEVICE@ rejected (@PMEM_REASON@)',
    body: [
      'The xen-pmem super block of @PMEM_DEVICE@ failed validation with reason @PMEM_REASON@: both copies are '
      + 'damaged, it was written for another device or namespace, or it disagrees with the partition table. '
      + 'Nothing was reported to Xen.',
      '"xen-pmem inspect" on the device names the check that failed. If nothing on the device needs to be '
      + 'kept, prepare it again with "xen-pmem setup --force".',
    ],
  },
  'rejected-device': {
    id: '466bdc07d0e1498384268922916dca60',
    subject: '@PMEM_DEVICE@ cannot be mapped for Xen (@PMEM_REASON@)',
    body: [
      'The kernel\'s description of @PMEM_DEVICE@ in sysfs does not allow a report (reason @PMEM_REASON@): '
      + 'its namespace mode has no block device that maps linearly onto physical memory (sector/BTT and '
      + 'devdax have none), or an attribute the daemon needs is missing, unreadable or inconsistent. The '
      + 'device was not opened.',
      'Configure the namespace in raw mode (ndctl create-namespace --mode=raw), or in fsdax mode where the Dom0 '
      + 'is not a PV guest (fsdax-in-pv-dom0: unbinding its pfn device before the report crashes a PV Dom0\'s '
      + 'kernel), and prepare it with "xen-pmem setup". Reasons such as attribute-unreadable or device-vanished '
      + 'point at the kernel or at a device removed while it was read; "xen-pmem list" shows what the daemon reads.',
    ],
  },
  'rejected-config': {
    id: 'fe2df26bba2544c6aeb3b1d2b461f277',
    subject: '@PMEM_DEVICE@ left out by the configuration',
    body: [
      'The allow and deny lists of /etc/xen-pmem/config.json exclude @PMEM_DEVICE@ (by namespace UUID, region '
      + 'or device name), so it was neither opened nor reported.',
      'Nothing to do if that is intended. Otherwise change the lists (see xen-pmem.json(5)) and restart '
      + 'xen-pmemd.',
    ],
  },
  'rejected-physical-map': {
    id: '54e8d8be1ffa434db7f12d213d3a637e',
    subject: 'physical range of @PMEM_DEVICE@ is unusable for Xen (@PMEM_REASON@)',
    body: [
      '@PMEM_DEVICE@ lies at physical addresses Xen cannot take (reason @PMEM_REASON@): Xen adds memory in '
      + 'whole 2 MiB superpages, the device must lie inside its nd region, and its reserved and data areas '
      + 'must be whole 4 KiB pages. This is a property of the namespace, not of the super block.',
      'Create the namespace again with a 2 MiB alignment (ndctl create-namespace --align=2M) and prepare it '
      + 'with "xen-pmem setup".',
    ],
  },
  'rejected-overlap': {
    id: 'a3edde4ad2a9493586a8134e9d0043b1',
    subject: 'region of @PMEM_DEVICE@ overlaps a region already reported',
    body: [
      'The region of @PMEM_DEVICE@ overlaps a region this host already reported to Xen in this boot under '
      + 'another reservation, usually because the device was prepared again after its report. Xen cannot '
      + 'remove the old region and still uses its reserved area, so the new layout is not reported.',
      'Leave the device alone and reboot the host: the new layout is reported at the next boot.',
    ],
  },
  'rejected-xen-rule': {
    id: 'd8f821c21b184f2cb997e0288ae42c93',
    subject: 'layout of @PMEM_DEVICE@ breaks a rule of the hypervisor (@PMEM_REASON@)',
    body: [
      'Before it reports anything the daemon applies the hypervisor\'s own checks to the request. The '
      + 'layout of @PMEM_DEVICE@ breaks the one the reason names, so Xen would refuse it, and it was not sent.',
      'The message names the rule and the ranges. A reserved area too small for Xen\'s tables means that '
      + 'another tool or an older xen-pmem prepared the device: prepare it again with "xen-pmem setup --force".',
    ],
  },
  'rejected-by-xen': {
    id: '6cf45897604340ec9d113d59056a9be1',
    subject: 'Xen refused the report of @PMEM_DEVICE@ (@PMEM_REASON@)',
    body: [
      'The hypervisor refused the report of @PMEM_DEVICE@ (EINVAL, ENOSPC or EPERM) and said why: the reason '
      + '@PMEM_REASON@ is Xen\'s own (not-pmem, firmware-memory, known-memory, overlaps-added-region, '
      + 'reserved-too-small, reserved-exhausted, not-permitted, ...), as the message explains. Nothing was '
      + 'added, and the namespace was bound to its driver again.',
      'Compare the ranges in the message with the hypervisor\'s log (xl dmesg). A reserved area too small '
      + 'for Xen\'s tables needs "xen-pmem setup" again. The daemon does not send the report again by itself; '
      + 'the device\'s next event or a restart of xen-pmemd does.',
    ],
  },
  'retrying': {
    id: '7591c9469ade43ccaf72040ed08f35b5',
    subject: '@PMEM_DEVICE@ will be tried again (@PMEM_REASON@)',
    body: [
      'A passing problem kept @PMEM_DEVICE@ from being decided or reported (reason @PMEM_REASON@): Xen was '
      + 'busy, a domain still mapped the region, or Xen was short of memory (busy, mapped, other-domain-access, '
      + 'no-memory), the namespace could not be unbound from its driver (unbind-failed), the device could not be read (io-error), another '
      + 'program held it locked while it wrote a layout (device-locked), or the record of reports in '
      + '/run/xen-pmem could not be written (state-unwritable: no report is made without that record). '
      + 'The daemon tries again by itself, each time after a longer pause; "xen-pmem status" shows when.',
      'Usually nothing. If it keeps retrying, check the device with "xen-pmem inspect", the free space of '
      + '/run, and the hypervisor\'s log (xl dmesg).',
    ],
  },
  'failed': {
    id: 'bd82ca944318488ca30ebf20c24fc293',
    subject: 'deciding or reporting @PMEM_DEVICE@ failed (@PMEM_REASON@)',
    body: [
      'The hypervisor answered the report of @PMEM_DEVICE@ with an error the daemon does not expect (the '
      + 'reason is its errno), or the daemon met an internal error (internal-error) while deciding it. The '
      + 'device is not tried again by itself: repeating a request whose answer is not understood could do harm.',
      'Read the message and the hypervisor\'s log (xl dmesg). Once the cause is fixed, "systemctl restart '
      + 'xen-pmemd" decides the device again. An internal error is a bug: report it with this entry '
      + '(journalctl -o verbose).',
    ],
  },
  'removed': {
    id: '96e7f7bb0cd345a7b151dbeb158d2fdd',
    subject: '@PMEM_DEVICE@ removed',
    body: [
      '@PMEM_DEVICE@ went away (its namespace was destroyed or disabled, or the NVDIMM was taken out). It had '
      + 'not been reported to Xen, so nothing else is affected.',
      'Nothing needs to be done.',
    ],
  },
  'removed-after-report': {
    id: '953926e8563c40b9bc9a92f5d51eb0b4',
    subject: '@PMEM_DEVICE@ removed although Xen manages its region',
    body: [
      '@PMEM_DEVICE@ went away after its region at @PMEM_REGION_START@ (size @PMEM_REGION_SIZE@) was reported '
      + 'to Xen. Xen has no remove operation: it keeps its tables in the reserved area of that memory, and '
      + 'guests may still have pages of the data area.',
      'Do not reuse, reconfigure or unplug that NVDIMM; put its namespace back if it was destroyed by '
      + 'mistake. Reboot the host to make Xen forget the region.',
    ],
  },
  'superblock-copy-damaged': {
    id: '30974b0631804838be929c6e85aa1fa9',
    subject: 'a super block copy of @PMEM_DEVICE@ is damaged',
    body: [
      'xen-pmem keeps two copies of its super block, at 1 MiB and near the end of the device. One copy on '
      + '@PMEM_DEVICE@ is damaged or missing, and the other, valid one was used: the device is decided as '
      + 'usual, in the line after this one. The message says which copy and why.',
      'Nothing rewrites a single copy. When the device can be emptied (its data saved, and not reported to '
      + 'Xen in this boot), "xen-pmem setup --force" writes both copies again.',
    ],
  },
  'hypervisor-supported': {
    id: '56b0ec31ca2e4244b5b6f560dd11a502',
    subject: 'Xen accepts pmem reports (@PMEM_CAPABILITY@)',
    body: [
      'The hypervisor, Xen @PMEM_XEN_VERSION@, implements the operation pmem is reported with '
      + '(@PMEM_CAPABILITY@). Every valid pmem device is reported to it, once per boot.',
      'Nothing needs to be done.',
    ],
  },
  'hypervisor-unsupported': {
    id: '411b652547e24b238783281758027164',
    subject: 'Xen cannot take pmem reports (@PMEM_CAPABILITY@)',
    body: [
      'The daemon asked the hypervisor whether it implements XENPF_pmem (platform op 67); it does not (reason '
      + '@PMEM_CAPABILITY@: "enosys" on upstream Xen (4.17, 4.20), "op-67-is-another-operation" where that '
      + 'number is another operation, "not-dom0" outside the control domain or without '
      + '/dev/xen/privcmd, "probe-failed" when the answer was not conclusive, which is asked again later). '
      + 'Valid pmem devices end "unsupported", with one warning each.',
      'Run a hypervisor that implements XENPF_pmem for the devices to be reported; meanwhile Dom0 can '
      + 'use the pmem itself.',
    ],
  },
  'hypervisor-not-asked': {
    id: '9a5161125b3949d8b16e03b6d9c4c537',
    subject: 'dry run: the hypervisor is not asked',
    body: [
      'xen-pmemd runs in dry-run mode and makes no hypercall at all, not even the question of what the '
      + 'hypervisor implements. Each valid device is logged with the report it would get.',
      'Turn the dry run off ("dryRun" in /etc/xen-pmem/config.json, or drop --dry-run) and restart xen-pmemd '
      + 'to report.',
    ],
  },
} as const satisfies Readonly<Record<string, CatalogEntry>>;

/** The name of a catalog entry: what each outcome (src/daemon/decide.ts) says it is. */
export type CatalogName = keyof typeof CATALOG;

/** The MESSAGE_ID= of the lines `name` explains. */
export function messageIdOf(name: CatalogName): string {
  return CATALOG[name].id;
}

/** The file's name in systemd's catalog directories (/usr/lib/systemd/catalog for the package). */
export const CATALOG_FILE_NAME = 'xen-pmem.catalog';

const WIDTH = 76;
const DEFINED_BY = 'xen-pmem';
const DOCUMENTATION = 'man:xen-pmemd(8)';

/** A body line may not look like a comment (`#`) or an entry's start (`-- `) to journalctl. */
const MISREAD = /^(#|--)/;

/** One paragraph in lines of at most WIDTH characters (a longer word keeps its own line). */
function wrap(paragraph: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of paragraph.split(/\s+/).filter((each) => each !== '')) {
    if (line !== '' && line.length + 1 + word.length > WIDTH) {
      // `--dry-run` would open a line: the word before it moves down with it.
      const cut = MISREAD.test(word) ? line.lastIndexOf(' ') : -1;
      lines.push(cut > 0 ? line.slice(0, cut) : line);
      line = cut > 0 ? `${line.slice(cut + 1)} ${word}` : word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The catalog file in systemd's format, every entry of CATALOG in its order. */
export function renderCatalog(catalog: Readonly<Record<string, CatalogEntry>> = CATALOG): string {
  const lines = [
    '# The journal message catalog of xen-pmemd (systemd\'s catalog format).',
    '# Generated from src/daemon/catalog.ts by the build: edit that table, not this file.',
    '',
  ];
  for (const entry of Object.values(catalog)) {
    lines.push(`-- ${entry.id}`, `Subject: ${entry.subject}`, `Defined-By: ${DEFINED_BY}`, `Documentation: ${DOCUMENTATION}`, '');
    for (const paragraph of entry.body) lines.push(...wrap(paragraph), '');
  }
  return lines.join('\n');
}
