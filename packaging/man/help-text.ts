// Reads a `--help` text (a CLI command's, or the daemon's) into its parts, so the manual pages are
// made from the very text `--help` prints. The shape every help text has:
//
//   Usage: xen-pmem NAME ARGS...          one line
//                                         blank line
//   A paragraph, wrapped at ~90 columns.  one or more, each ended by a blank line
//
//     --option ARG   what it does,        one block: two spaces, the option, its argument in
//                    continued here       capitals, the text; continuations indented further
//
//   Exit codes: 0 …, 1 …, 2 ….            optional, last
//
// Anything else is an error that names the block: test/man.test.ts parses every help text, so a
// help text of another shape fails the tests instead of rendering badly.

export interface HelpOption {
  /** `--partition`, or `--help, -h`. */
  flags: string[];
  /** `SIZE`, or null for a switch. */
  argument: string | null;
  /** The description, its lines joined. */
  text: string;
}

export interface ParsedHelp {
  /** The usage line without `Usage: `. */
  usage: string;
  paragraphs: string[];
  options: HelpOption[];
  /** The exit-code sentence without `Exit codes: `, or null. */
  exitCodes: string | null;
}

export class HelpShapeError extends Error {}

const OPTION_LINE = /^ {2}(-{1,2}[a-z][a-z0-9-]*(?:, -{1,2}[a-z][a-z0-9-]*)*)(?: ([A-Z][A-Z_]*))?(?: +(\S.*))?$/;
const CONTINUATION = /^ {4,}(\S.*)$/;

export function parseHelp(help: string, where: string): ParsedHelp {
  const blocks = help.trim().split(/\n[ \t]*\n/).map((block) => block.split('\n'));
  const [first, ...rest] = blocks;
  if (!first || first.length !== 1 || !first[0]!.startsWith('Usage: ')) {
    throw new HelpShapeError(`${where}: the help text must start with one "Usage: …" line and a blank line`);
  }
  const parsed: ParsedHelp = { usage: first[0]!.slice('Usage: '.length).trim(), paragraphs: [], options: [], exitCodes: null };
  for (const [index, block] of rest.entries()) {
    const head = block[0]!;
    if (parsed.exitCodes !== null) throw new HelpShapeError(`${where}: nothing may follow "Exit codes:" (found "${head}")`);
    if (head.startsWith('Exit codes: ')) {
      parsed.exitCodes = joinLines(block).slice('Exit codes: '.length);
    } else if (OPTION_LINE.test(head)) {
      if (parsed.options.length > 0) throw new HelpShapeError(`${where}: the options must be one block (a second starts at "${head}")`);
      parsed.options = parseOptions(block, where);
    } else if (/^\S/.test(head) && block.every((line) => /^\S/.test(line))) {
      if (parsed.options.length > 0) throw new HelpShapeError(`${where}: a paragraph after the options ("${head}") must start with "Exit codes: "`);
      parsed.paragraphs.push(joinLines(block));
    } else {
      throw new HelpShapeError(`${where}: block ${index + 2} ("${head}") is neither a paragraph, the option list nor "Exit codes: …"`);
    }
  }
  return parsed;
}

function parseOptions(lines: string[], where: string): HelpOption[] {
  const options: HelpOption[] = [];
  for (const line of lines) {
    const option = OPTION_LINE.exec(line);
    if (option) {
      options.push({ flags: option[1]!.split(', '), argument: option[2] ?? null, text: option[3] ?? '' });
      continue;
    }
    const continued = CONTINUATION.exec(line);
    const last = options[options.length - 1];
    if (!continued || !last) throw new HelpShapeError(`${where}: "${line}" is neither an option nor the continuation of one`);
    last.text = `${last.text} ${continued[1]!}`.trim();
  }
  for (const option of options) {
    if (option.text === '') throw new HelpShapeError(`${where}: option ${option.flags.join(', ')} has no description`);
  }
  return options;
}

function joinLines(lines: string[]): string {
  return lines.map((line) => line.trim()).join(' ');
}

/** Every option name a help text offers, such as `--json`. */
export function optionNames(help: ParsedHelp): string[] {
  return help.options.flatMap((option) => option.flags);
}
