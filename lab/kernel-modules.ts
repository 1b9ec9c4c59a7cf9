// Which kernel modules the lab's initramfs must insmod, and in what order. busybox insmod does
// not resolve dependencies, so the order comes from the kernel's own modules.dep instead of a
// hand-kept list that would silently break when Debian moves a module or builds one in.

/** One module that must be loaded: its name and its path relative to /lib/modules/<release>. */
export interface ModuleToLoad {
  name: string;
  path: string;
}

/** The kernel names modules with `-` and `_` interchangeably; compare them one way. */
export function moduleName(pathOrName: string): string {
  const base = pathOrName.slice(pathOrName.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

/** Parses modules.dep (`kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko ...`) into path → deps. */
export function parseModulesDep(text: string): Map<string, string[]> {
  const dependencies = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter((dep) => dep.length > 0);
    dependencies.set(path, deps);
  }
  return dependencies;
}

/**
 * Orders `wanted` modules and everything they depend on so that each module comes after its
 * dependencies. Modules listed in modules.builtin are skipped: they are already in the kernel.
 * Throws when a wanted module is neither a loadable module nor built in, naming it.
 */
export function moduleLoadOrder(
  modulesDep: string,
  modulesBuiltin: string,
  wanted: readonly string[],
): ModuleToLoad[] {
  const dependencies = parseModulesDep(modulesDep);
  const pathByName = new Map<string, string>();
  for (const path of dependencies.keys()) pathByName.set(moduleName(path), path);
  const builtin = new Set(
    modulesBuiltin.split('\n').filter((line) => line.trim().length > 0).map(moduleName),
  );

  const order: ModuleToLoad[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();

  const visit = (path: string, requiredBy: string): void => {
    const name = moduleName(path);
    if (placed.has(name) || builtin.has(name)) return;
    if (visiting.has(name)) {
      throw new Error(`module ${name} depends on itself through ${requiredBy}`);
    }
    const deps = dependencies.get(path);
    if (deps === undefined) {
      throw new Error(`module ${name}, needed by ${requiredBy}, is missing from modules.dep`);
    }
    visiting.add(name);
    for (const dep of deps) visit(dep, name);
    visiting.delete(name);
    placed.add(name);
    order.push({ name, path });
  };

  for (const want of wanted) {
    const name = moduleName(want);
    if (builtin.has(name)) continue;
    const path = pathByName.get(name);
    if (path === undefined) {
      throw new Error(`module ${name} is neither in modules.dep nor built into the kernel`);
    }
    visit(path, 'the lab');
  }
  return order;
}
