// Where the Debian package puts things: the system directories under /usr, on Debian 12 and 13
// alike (debian/rules moves the unit and the rule there from debhelper 13's /lib: Debian 13's
// lintian counts /lib as an aliased location of merged /usr), never the administrator's /etc,
// except the one conffile. The manual pages name the same paths.

export const PACKAGE_NAME = 'xen-pmem';
export const NODE = '/usr/bin/node';
export const LIB_DIR = '/usr/lib/xen-pmem';
export const SBIN_DIR = '/usr/sbin';
export const UNIT_DIR = '/usr/lib/systemd/system';
export const RULES_DIR = '/usr/lib/udev/rules.d';
/** systemd's file trigger watches /usr/lib/systemd/catalog. */
export const CATALOG_DIR_PACKAGED = '/usr/lib/systemd/catalog';
/** dh_installudev names the rule <priority>-<package>.rules. */
export const RULE_PRIORITY = 69;
export const CONFFILE = '/etc/xen-pmem/config.json';
export const DOC_DIR = `/usr/share/doc/${PACKAGE_NAME}`;
export const EXAMPLE_CONFIG_PATH = `${DOC_DIR}/examples/config.json`;
