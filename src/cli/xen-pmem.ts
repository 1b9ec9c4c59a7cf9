#!/usr/bin/env node
// `xen-pmem`: the operator's command. Each sub-command is one file in ./commands; this file is
// the table and the one place that turns failures into a single line on stderr and an exit code.

import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { DeviceOpenError } from '../io/device.js';
import { ToolMissingError } from '../io/tools.js';
import { TOOL_VERSION } from '../version.js';
import { CommandError, EXIT_OK, EXIT_USAGE_OR_IO, type Command, type CommandIO } from './command.js';
import { attachCommand } from './commands/attach.js';
import { guestTablesCommand } from './commands/guest-tables.js';
import { inspectCommand } from './commands/inspect.js';
import { listCommand } from './commands/list.js';
import { setupCommand } from './commands/setup.js';
import { statusCommand } from './commands/status.js';
import { wipeCommand } from './commands/wipe.js';

export const COMMANDS: Command[] = [
  setupCommand, inspectCommand, wipeCommand, listCommand, statusCommand, attachCommand, guestTablesCommand,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: xen-pmem COMMAND [ARGS...]',
    '',
    'Prepares persistent memory for Xen and shows what the xen-pmemd daemon reported.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "xen-pmem COMMAND --help" for the options of a command.',
  ].join('\n');
}

export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return name === undefined ? EXIT_USAGE_OR_IO : EXIT_OK;
  }
  if (name === '--version') {
    io.out(`xen-pmem ${TOOL_VERSION}`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.err(`xen-pmem: unknown command "${name}" (see xen-pmem --help)`);
    return EXIT_USAGE_OR_IO;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(command.help);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    io.err(`xen-pmem ${command.name}: ${failureText(error)}`);
    return error instanceof CommandError ? error.exitCode : EXIT_USAGE_OR_IO;
  }
}

/** The one line a failed command prints after its name. */
function failureText(error: unknown): string {
  if (error instanceof CommandError || error instanceof DeviceOpenError || error instanceof ToolMissingError) return error.message;
  // parseArgs reports unknown options and missing values with a code and a readable message.
  if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
    return `${error.message} (see --help)`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export const processIO: CommandIO = {
  out: (text) => { process.stdout.write(text + '\n'); },
  err: (text) => { process.stderr.write(text + '\n'); },
  async ask(question) {
    if (!process.stdin.isTTY) return null;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return await rl.question(question);
    } finally {
      rl.close();
    }
  },
  env: process.env,
  // The composition root builds the one native port commands use; the commands that never lock
  // a device never load koffi.
  flock: async () => (await import('../native/libc.js')).loadLibc(),
  xencall: async () => {
    const { LIBXENCALL_ENV, openXencall } = await import('../native/libxencall.js');
    const library = process.env[LIBXENCALL_ENV];
    // Outside a Dom0 libxencall would print a line of its own on stderr before failing.
    if (!library && !existsSync('/dev/xen/privcmd')) {
      return { kind: 'unavailable', reason: 'not-dom0', message: 'there is no /dev/xen/privcmd: this is not a Xen Dom0 (or xen-privcmd is not loaded)' };
    }
    return openXencall(library);
  },
};

// Run only when executed, not when the tests import the table.
if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/xen-pmem')) {
  main(process.argv.slice(2), processIO).then((code) => { process.exitCode = code; });
}
