// apt-get and apt-cache with a configuration of the lab's own: a sources list, package lists and
// archives under a directory of the lab cache. The host's apt sources and lists are never read
// or written, so the lab can download another Debian release's packages (Debian 13's kernel and
// Xen on a Debian 12 host) without changing what the host installs.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { ProgressLog } from './progress.js';
import { runChecked, runCommand } from './run-command.js';

const LISTS_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** Debian's archive, signed by the keyring every Debian host has. */
export function debianSourceLine(suite: string, kind: 'deb' | 'deb-src' = 'deb'): string {
  return `${kind} [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main`;
}

/** `-o` options that give apt a private sources list, lists and archives under `aptDir`. */
export function privateAptOptions(aptDir: string): string[] {
  const options: Record<string, string> = {
    'Dir::Etc::SourceList': join(aptDir, 'sources.list'),
    'Dir::Etc::SourceParts': join(aptDir, 'sources.list.d'),
    'Dir::Etc::Preferences': join(aptDir, 'preferences'),
    'Dir::Etc::PreferencesParts': join(aptDir, 'preferences.d'),
    // Only the signed-by keyring of the source line is trusted.
    'Dir::Etc::Trusted': join(aptDir, 'trusted.gpg'),
    'Dir::Etc::TrustedParts': join(aptDir, 'trusted.gpg.d'),
    'Dir::State::Lists': join(aptDir, 'lists'),
    'Dir::Cache': join(aptDir, 'cache'),
    // The files are root's; apt's download sandbox user could not write them.
    'APT::Sandbox::User': 'root',
  };
  return Object.entries(options).flatMap(([name, value]) => ['-o', `${name}=${value}`]);
}

/** One private apt configuration: `lines` is its whole sources list. */
export class PrivateApt {
  private readonly options: string[];
  private updated = false;

  constructor(readonly aptDir: string, readonly lines: readonly string[], private readonly log: ProgressLog) {
    this.options = privateAptOptions(aptDir);
  }

  private get env(): NodeJS.ProcessEnv {
    return { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  }

  /** Writes the configuration; runs `apt-get update` when the lists are missing or the sources changed. */
  async ready(): Promise<void> {
    for (const dir of ['sources.list.d', 'preferences.d', 'trusted.gpg.d', 'lists/partial', 'cache/archives/partial']) {
      await mkdir(join(this.aptDir, dir), { recursive: true });
    }
    const sources = `${this.lines.join('\n')}\n`;
    const path = join(this.aptDir, 'sources.list');
    const previous = await readFile(path, 'utf8').catch(() => '');
    if (previous !== sources) await writeFile(path, sources);
    const listsDir = join(this.aptDir, 'lists');
    const lists = existsSync(listsDir) ? readdirSync(listsDir).filter((name) => name.includes('_Packages') || name.includes('_Sources')) : [];
    // A point release renames Debian 13's kernel package (linux-image-6.12.N+deb13-amd64) and
    // drops the old one from the archive: lists updated more than a week ago are updated again.
    const updatedAt = existsSync(this.stamp) ? statSync(this.stamp).mtimeMs : 0;
    if (previous !== sources || lists.length === 0 || Date.now() - updatedAt > LISTS_MAX_AGE_MS) await this.update();
  }

  private get stamp(): string {
    return join(this.aptDir, 'updated-at');
  }

  async update(): Promise<void> {
    this.log(`apt-get update (the lab's own list: ${this.lines.join('; ')})`);
    await runChecked('apt-get', [...this.options, 'update'], { env: this.env });
    await writeFile(this.stamp, `${new Date().toISOString()}\n`);
    this.updated = true;
  }

  /** Runs an apt-get or apt-cache command; if it fails on lists older than this run, updates them once and retries. */
  async run(tool: 'apt-get' | 'apt-cache', args: string[], cwd?: string): Promise<string> {
    const first = await runCommand(tool, [...this.options, ...args], { cwd, env: this.env });
    if (first.code === 0) return first.stdout;
    if (this.updated) throw new Error(`${tool} ${args.join(' ')} exited ${first.code}: ${first.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    this.log(`${tool} ${args[0]} failed on the lists as they were; updating them once`);
    await this.update();
    return runChecked(tool, [...this.options, ...args], { cwd, env: this.env });
  }

  /** The candidate version of a package in this configuration's lists (updated once if it has none). */
  async candidate(name: string): Promise<string> {
    const lookUp = async (): Promise<string | undefined> => {
      const version = /Candidate:\s*(\S+)/.exec(await this.run('apt-cache', ['policy', name]))?.[1];
      return version === '(none)' ? undefined : version;
    };
    let version = await lookUp();
    if (version === undefined && !this.updated) {
      await this.update();
      version = await lookUp();
    }
    if (version === undefined) throw new Error(`the lists of ${this.lines.join('; ')} have no candidate for ${name}`);
    return version;
  }

  /** A field of a package's candidate record, e.g. Depends. */
  async field(name: string, fieldName: string): Promise<string> {
    const record = await this.run('apt-cache', ['show', '--no-all-versions', name]);
    const value = new RegExp(`^${fieldName}:\\s*(.*)$`, 'm').exec(record)?.[1];
    if (value === undefined) throw new Error(`apt-cache show ${name} has no ${fieldName}: field`);
    return value.trim();
  }

  /**
   * Downloads a package's .deb into `dir` once; later calls reuse the file there. Lists older than
   * the archive (a point release replaced the version they name) are updated once and the
   * candidate looked up again.
   */
  async download(name: string, dir: string): Promise<{ path: string; version: string }> {
    try {
      return await this.downloadCandidate(name, dir);
    } catch (error) {
      if (this.updated) throw error;
      this.log(`${(error as Error).message.split('\n')[0]}; updating the lists once`);
      await this.update();
      return this.downloadCandidate(name, dir);
    }
  }

  private async downloadCandidate(name: string, dir: string): Promise<{ path: string; version: string }> {
    const version = await this.candidate(name);
    const fileName = `${name}_${version.replace(':', '%3a')}_amd64.deb`;
    const path = join(dir, fileName);
    if (!existsSync(path)) {
      this.log(`apt-get download ${name}=${version}`);
      await runChecked('apt-get', [...this.options, 'download', `${name}=${version}`], { cwd: dir, env: this.env });
      if (!existsSync(path)) throw new Error(`apt-get download ${name} left no ${fileName} in ${dir}`);
    }
    return { path, version };
  }
}
