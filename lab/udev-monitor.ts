// Reads what `udevadm monitor --udev --property` printed into a list of events, so tests and
// fixtures can speak of the order of events instead of raw text.

export interface UdevEvent {
  /** Seconds since boot, as udevadm printed it. */
  uptime: number;
  action: string;
  devpath: string;
  subsystem: string;
  /** The udev properties printed after the header line (ACTION, DEVPATH, DEVTYPE, MAJOR, ...). */
  properties: Record<string, string>;
}

const HEADER = /^UDEV\s+\[(\d+\.\d+)\]\s+(\S+)\s+(\S+)\s+\((\S+)\)\s*$/;

export function parseUdevMonitor(text: string): UdevEvent[] {
  const events: UdevEvent[] = [];
  let current: UdevEvent | null = null;
  for (const line of text.split('\n')) {
    const header = HEADER.exec(line);
    if (header) {
      current = {
        uptime: Number(header[1]),
        action: header[2]!,
        devpath: header[3]!,
        subsystem: header[4]!,
        properties: {},
      };
      events.push(current);
      continue;
    }
    if (line.trim() === '') {
      current = null;
      continue;
    }
    const equals = line.indexOf('=');
    if (current && equals > 0) current.properties[line.slice(0, equals)] = line.slice(equals + 1);
  }
  return events;
}

/** `add nmem2`, `add pmem2 (block)`: one short line per event, the device's last path element. */
export function describeEvent(event: UdevEvent): string {
  const name = event.devpath.slice(event.devpath.lastIndexOf('/') + 1);
  return event.subsystem === 'nd' ? `${event.action} ${name}` : `${event.action} ${name} (${event.subsystem})`;
}

/** `add btt2.1` → `add btt`, `add 259:2 (bdi)` → `add N:N (bdi)`: an event without the numbers the kernel picks. */
export function eventKind(event: string): string {
  return event.replace(/\b([a-z]+)\d+(\.\d+)?\b/g, '$1').replace(/\b\d+:\d+\b/g, 'N:N');
}
