// Talks to the service manager of a Type=notify unit: READY=1 once the daemon has done its first
// pass, STATUS= lines for `systemctl status`, WATCHDOG=1 keep-alives and STOPPING=1. Outside
// systemd (no $NOTIFY_SOCKET) every call does nothing, and no call ever throws: losing a status
// line must never take the daemon down.

import { loadLibSystemd } from '../native/libsystemd.js';
import type { NotifySender } from './ports.js';

export interface Notifier {
  /** READY=1 with a status line; systemd starts the units ordered after this one. */
  ready(status: string): void;
  /** STATUS=: the one line `systemctl status xen-pmemd` shows. */
  status(text: string): void;
  /** STOPPING=1: the daemon has begun an orderly shutdown. */
  stopping(): void;
  /** Sends WATCHDOG=1 now and then every half of $WATCHDOG_USEC, if the watchdog is ours. */
  startWatchdog(): void;
  /** Ends the watchdog timer; later calls send nothing. */
  stop(): void;
  /** True when there is a service manager to talk to. */
  readonly active: boolean;
  /** The keep-alive period in milliseconds, or null when no watchdog is asked for. */
  readonly watchdogIntervalMs: number | null;
}

export interface NotifierOptions {
  sender?: NotifySender | null;
  /** Our process id, for the $WATCHDOG_PID check. */
  pid?: number;
  /** Told once per failed send, e.g. to log it; its own failures are swallowed too. */
  onSendFailure?: (state: string, result: number | Error) => void;
}

/**
 * The watchdog period for this process, in microseconds, or null when there is none:
 * $WATCHDOG_USEC must be a positive integer, and $WATCHDOG_PID, when set, must be `pid`
 * (systemd sets it to the main process; a child that inherited the variable must stay quiet).
 */
export function watchdogUsecFor(env: NodeJS.ProcessEnv, pid: number): bigint | null {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return null;
  const usec = BigInt(usecText);
  if (usec === 0n) return null;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && pidText !== '' && pidText !== String(pid)) return null;
  return usec;
}

/**
 * Half the watchdog period in whole milliseconds, at least 1, as systemd recommends.
 * Capped at the largest delay a Node timer accepts (about 24.8 days).
 */
export function keepAliveIntervalMs(watchdogUsec: bigint): number {
  const MAX_TIMER_MS = 2_147_483_647n;
  const halfMs = watchdogUsec / 2000n;
  if (halfMs < 1n) return 1;
  return Number(halfMs > MAX_TIMER_MS ? MAX_TIMER_MS : halfMs);
}

/** A state line never carries a newline: the protocol separates assignments with them. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

/**
 * `env` decides whether there is anything to talk to and what the watchdog is; pass
 * `process.env`. libsystemd's sd_notify reads $NOTIFY_SOCKET from the process environment itself.
 */
export function createNotifier(env: NodeJS.ProcessEnv, options: NotifierOptions = {}): Notifier {
  const socket = env.NOTIFY_SOCKET;
  const active = socket !== undefined && socket !== '';
  const pid = options.pid ?? process.pid;
  const watchdogUsec = active ? watchdogUsecFor(env, pid) : null;
  const watchdogIntervalMs = watchdogUsec === null ? null : keepAliveIntervalMs(watchdogUsec);

  let sender: NotifySender | null = null;
  if (active) {
    try {
      sender = options.sender !== undefined ? options.sender : loadLibSystemd();
    } catch {
      sender = null;
    }
  }

  let stopped = false;
  let timer: NodeJS.Timeout | null = null;

  const report = (state: string, result: number | Error): void => {
    try {
      options.onSendFailure?.(state, result);
    } catch {
      // The callback is the caller's; its failure is not ours to surface.
    }
  };

  const send = (state: string): void => {
    if (!active || stopped || sender === null) return;
    try {
      const result = sender.notify(state);
      if (result < 0) report(state, result);
    } catch (error) {
      report(state, error instanceof Error ? error : new Error(String(error)));
    }
  };

  return {
    active,
    watchdogIntervalMs,
    ready(status) {
      send(`READY=1\nSTATUS=${oneLine(status)}`);
    },
    status(text) {
      send(`STATUS=${oneLine(text)}`);
    },
    stopping() {
      send('STOPPING=1');
    },
    startWatchdog() {
      if (watchdogIntervalMs === null || timer !== null || stopped || sender === null) return;
      send('WATCHDOG=1');
      timer = setInterval(() => send('WATCHDOG=1'), watchdogIntervalMs);
      // The keep-alive alone must not hold the process open once everything else is done.
      timer.unref();
    },
    stop() {
      stopped = true;
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
  };
}
