// Where the Debian package puts things: Debian 12's system directories (debhelper 13 installs
// units into /lib/systemd/system and udev rules into /lib/udev/rules.d there), never the
// administrator's /etc, except the one conffile. The manual pages name the same paths.

export const PACKAGE_NAME = 'xen-pmem';
export const NODE = '/usr/bin/node';
export const LIB_DIR = '/usr/lib/xen-pmem';
export const SBIN_DIR = '/usr/sbin';
export const UNIT_DIR = '/lib/systemd/system';
export const RULES_DIR = '/lib/udev/rules.d';
/** Under /usr even on Debian 12: systemd's file trigger watches /usr/lib/systemd/catalog. */
export const CATALOG_DIR_PACKAGED = '/usr/lib/systemd/catalog';
/** dh_installudev names the rule <priority>-<package>.rules. */
export const RULE_PRIORITY = 69;
export const CONFFILE = '/etc/xen-pmem/config.json';
export const DOC_DIR = `/usr/share/doc/${PACKAGE_NAME}`;
export const EXAMPLE_CONFIG_PATH = `${DOC_DIR}/examples/config.json`;
