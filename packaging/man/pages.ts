// The three manual pages: xen-pmem(8) and xen-pmemd(8) from the help texts `--help` prints
// (the CLI's command table, the daemon's DAEMON_HELP), xen-pmem.json(5) from the daemon's config
// schema. What only a manual page says (files, the journal, examples) is written here, once.

import { COMMANDS } from '../../src/cli/xen-pmem.js';
import { EXIT_NOT_VALID, EXIT_OK, EXIT_USAGE_OR_IO } from '../../src/cli/command.js';
import { CATALOG, CATALOG_FILE_NAME, messageIdOf } from '../../src/daemon/catalog.js';
import { LEDGER_FILE } from '../../src/daemon/ledger.js';
import { METRICS_DIR, METRICS_FILE, REFRESH_MS } from '../../src/daemon/metrics.js';
import { DEFAULT_STATE_DIR, STATE_FILE } from '../../src/daemon/state-store.js';
import { DAEMON_HELP, EXIT_CONFIG } from '../../src/daemon/usage.js';
import { RULE_NAME, UNIT_NAME } from '../../src/install/layout.js';
import { CATALOG_DIR_PACKAGED, CONFFILE, EXAMPLE_CONFIG_PATH, RULES_DIR, UNIT_DIR } from '../deb-layout.js';
import { CONFIG_PATH, configFields, configJson, EXAMPLE_CONFIG } from './config-doc.js';
import { parseHelp, type ParsedHelp } from './help-text.js';
import { bold, escape, italic, literal, paragraph, renderPage, tagged, usage, type Page } from './roff.js';

export interface PageContext {
  version: string;
  /** YYYY-MM-DD */
  date: string;
}

export interface RenderedPage {
  /** File name: xen-pmem.8 */
  file: string;
  text: string;
}

const SEE_ALSO_ALL = ['xen-pmem(8)', 'xen-pmemd(8)', 'xen-pmem.json(5)'];

function seeAlso(self: string, others: string[]): string[] {
  const names = [...SEE_ALSO_ALL.filter((name) => name !== self), ...others];
  return [names.map((name) => {
    const [, page, section] = /^(.+)\((\d)\)$/.exec(name)!;
    return `${bold(page!)}(${section})`;
  }).join(', ')];
}

function optionList(help: ParsedHelp): string[] {
  return help.options.flatMap((option) => {
    const flags = option.flags.map((flag) => bold(flag)).join(', ');
    return tagged(option.argument ? `${flags} ${italic(option.argument)}` : flags, option.text);
  });
}

export function cliPage(context: PageContext): RenderedPage {
  const commands = COMMANDS.map((command) => ({ command, help: parseHelp(command.help, `xen-pmem ${command.name} --help`) }));
  const synopsis = [
    `${bold('xen-pmem')} ${italic('COMMAND')} [${italic('ARGS')}...]`,
    ...commands.map(({ help }) => `.br\n${usage(help.usage)}`),
    `.br\n${bold('xen-pmem')} ${bold('--help')} | ${bold('--version')}`,
  ];
  const commandSections = commands.flatMap(({ command, help }) => [
    `.SS ${escape(command.name)}`,
    usage(help.usage),
    ...help.paragraphs.flatMap(paragraph),
    ...optionList(help),
    ...(help.exitCodes ? paragraph(`Exit codes: ${help.exitCodes}`) : []),
  ]);
  const page: Page = {
    name: 'xen-pmem',
    section: 8,
    date: context.date,
    source: `xen-pmem ${context.version}`,
    manual: 'System Administration',
    summary: 'prepare persistent memory for Xen and show what xen-pmemd reported',
    sections: [
      { title: 'Synopsis', body: synopsis },
      {
        title: 'Description',
        body: [
          ...paragraph('Xen keeps a page_info structure and a machine-to-phys entry for every 4 KiB page it manages; for persistent memory (pmem) handed to guests those must live on the pmem itself, in an area reserved before the guest data. xen-pmem prepares a pmem block device for that once, and xen-pmemd(8) reports each prepared device to the hypervisor.'),
          ...paragraph('A prepared device holds a GPT (written by sfdisk), a versioned, checksummed super block at 1 MiB with a backup copy near the end, the area reserved for Xen starting at 2 MiB and sized for its tables wherever the region lies in physical memory (12 MiB for a device of up to 256 MiB), and the data partitions. DEVICE may also be an image file, so every command can be tried on a sparse file made with "truncate -s 1G pmem.img".'),
          ...paragraph('Each command is described below with the text its --help prints; "xen-pmem COMMAND --help" shows the same.'),
        ],
      },
      { title: 'Commands', body: commandSections },
      {
        title: 'Exit status',
        body: [
          ...tagged(bold(String(EXIT_OK)), 'The device is valid, or the command did what was asked.'),
          ...tagged(bold(String(EXIT_NOT_VALID)), 'The device holds no valid super block (absent or invalid), or, for status, the daemon is not running.'),
          ...tagged(bold(String(EXIT_USAGE_OR_IO)), 'Bad usage, or an I/O error that kept the command from reaching a verdict.'),
        ],
      },
      {
        title: 'Files',
        body: [
          ...tagged(bold(`${DEFAULT_STATE_DIR}/${STATE_FILE}`), 'What the running xen-pmemd holds for each device; read by status and list.'),
          ...tagged(bold(CONFFILE), 'The daemon\'s configuration, see xen-pmem.json(5).'),
        ],
      },
      {
        title: 'Examples',
        body: literal([
          'xen-pmem setup /dev/pmem0 --dry-run',
          'xen-pmem setup /dev/pmem0 --partition 10G --partition rest',
          'xen-pmem inspect /dev/pmem0 --json',
          'xen-pmem status',
          'xen-pmem wipe /dev/pmem0 --yes',
        ]),
      },
      { title: 'See also', body: seeAlso('xen-pmem(8)', ['sfdisk(8)', 'blkid(8)', 'ndctl(1)']) },
    ],
  };
  return { file: 'xen-pmem.8', text: renderPage(page) };
}

export function daemonPage(context: PageContext): RenderedPage {
  const help = parseHelp(DAEMON_HELP, 'xen-pmemd --help');
  const exitCodes = help.exitCodes;
  if (!exitCodes) throw new Error('xen-pmemd --help has no "Exit codes:" line');
  const page: Page = {
    name: 'xen-pmemd',
    section: 8,
    date: context.date,
    source: `xen-pmem ${context.version}`,
    manual: 'System Administration',
    summary: 'report prepared persistent memory to the Xen hypervisor',
    sections: [
      { title: 'Synopsis', body: [usage(help.usage)] },
      {
        title: 'Description',
        body: [
          ...help.paragraphs.flatMap(paragraph),
          ...paragraph(`The unit ${UNIT_NAME} runs it in a Xen control domain only (/proc/xen/capabilities says control_d), ordered before xendomains.service, as Type=notify: READY=1 comes once every pmem device present at start has been decided, so guests start after their memory is known to Xen. The udev rule ${RULE_NAME} starts it when a pmem disk appears. It stops on SIGTERM or SIGINT.`),
          ...paragraph('Each device ends in one state with a reason code: absent, rejected, reported, unsupported (the hypervisor cannot take it; upstream Xen has no XENPF_pmem_add), retrying, failed or removed. "xen-pmem status" shows them.'),
          ...paragraph(`A region is reported exactly once per boot: the daemon writes what it is about to report to ${DEFAULT_STATE_DIR}/${LEDGER_FILE} before the hypercall, and a restarted daemon, or a reinstalled one, reads it back. Xen keeps a region until reboot and refuses a second add; ${DEFAULT_STATE_DIR} is emptied at reboot, exactly when Xen forgets too.`),
        ],
      },
      { title: 'Options', body: optionList(help) },
      {
        title: 'Exit status',
        body: [
          ...paragraph(exitCodes),
          ...paragraph(`systemd does not restart the unit after exit status ${EXIT_CONFIG}: a bad configuration would fail the same way again.`),
        ],
      },
      {
        title: 'Journal',
        body: [
          ...paragraph('Under systemd every entry goes to the journal with its fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=xen-pmemd and one PMEM_ field per detail, with addresses in hex. Run by hand, it writes one JSON line per entry to standard output instead.'),
          ...paragraph(`The line of each outcome (a device reported, rejected, unsupported, retrying, failed, removed, and what the hypervisor implements) carries a MESSAGE_ID of its kind, the same on every host and in every release, and the message catalog ${CATALOG_DIR_PACKAGED}/${CATALOG_FILE_NAME} explains each kind: what happened and what to do. journalctl -x shows the explanation under the line; journalctl --list-catalog lists the ${Object.keys(CATALOG).length} kinds. A report to Xen is MESSAGE_ID=${messageIdOf('reported')}.`),
          ...literal([
            'journalctl -u xen-pmemd',
            'journalctl -u xen-pmemd -p err',
            'journalctl -u xen-pmemd PMEM_DEVICE=pmem0',
            'journalctl -x -u xen-pmemd',
            `journalctl MESSAGE_ID=${messageIdOf('reported')}`,
          ]),
        ],
      },
      {
        title: 'Files',
        body: [
          ...tagged(bold(CONFIG_PATH), 'The configuration, see xen-pmem.json(5). Missing means the defaults.'),
          ...tagged(bold(`${DEFAULT_STATE_DIR}/${LEDGER_FILE}`), 'What was reported to Xen this boot; kept when the daemon stops and when the package is removed.'),
          ...tagged(bold(`${DEFAULT_STATE_DIR}/${STATE_FILE}`), 'Each device\'s record, for xen-pmem status.'),
          ...tagged(bold(`${DEFAULT_STATE_DIR}/${METRICS_DIR}/${METRICS_FILE}`), `The daemon's state in Prometheus' text format, for node_exporter's textfile collector (--collector.textfile.directory=${DEFAULT_STATE_DIR}/${METRICS_DIR}): devices by state, rejections by reason, reports, what the hypervisor implements, xen_pmem_up. Rewritten whole after decisions and every ${REFRESH_MS / 1000} s; readable by every user.`),
          ...tagged(bold(`${CATALOG_DIR_PACKAGED}/${CATALOG_FILE_NAME}`), 'The journal message catalog (installing from a checkout puts it in /usr/local/lib/systemd/catalog).'),
          ...tagged(bold(`${UNIT_DIR}/${UNIT_NAME}`), 'The systemd unit, with its sandbox.'),
          ...tagged(bold(`${RULES_DIR}/${RULE_NAME}`), 'The udev rule that starts the unit for a pmem disk.'),
        ],
      },
      { title: 'See also', body: seeAlso('xen-pmemd(8)', ['systemctl(1)', 'journalctl(1)']) },
    ],
  };
  return { file: 'xen-pmemd.8', text: renderPage(page) };
}

export function configPage(context: PageContext): RenderedPage {
  const fields = configFields().flatMap((field) => {
    const facts = [field.type, ...(field.defaultJson === null ? [] : [`default ${field.defaultJson}`])].join('; ');
    return tagged(`${bold(field.path)} (${escape(facts)})`, field.text);
  });
  const page: Page = {
    name: 'xen-pmem.json',
    section: 5,
    date: context.date,
    source: `xen-pmem ${context.version}`,
    manual: 'File Formats',
    summary: 'configuration of xen-pmemd',
    sections: [
      { title: 'Synopsis', body: [bold(CONFIG_PATH)] },
      {
        title: 'Description',
        body: [
          ...paragraph('xen-pmemd(8) reads this JSON object once, at start. Every field is optional and a missing file means the defaults, which report every valid pmem device. Unknown fields are errors.'),
          ...paragraph(`A file that is not valid stops the daemon before it does anything, with one line naming the field, and exit status ${EXIT_CONFIG}, on which systemd does not restart it. Change the file, then run "systemctl restart xen-pmemd".`),
          ...paragraph(`The Debian package installs the file as a conffile with every default written out: an edit survives upgrades. The example below is also in ${EXAMPLE_CONFIG_PATH}.`),
        ],
      },
      { title: 'Fields', body: fields },
      { title: 'Example', body: literal(configJson(EXAMPLE_CONFIG).trimEnd().split('\n')) },
      { title: 'See also', body: seeAlso('xen-pmem.json(5)', ['ndctl(1)']) },
    ],
  };
  return { file: 'xen-pmem.json.5', text: renderPage(page) };
}

export function manPages(context: PageContext): RenderedPage[] {
  return [cliPage(context), daemonPage(context), configPage(context)];
}
