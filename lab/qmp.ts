// A small client for QEMU's machine protocol (QMP) on a unix socket: the greeting, capability
// negotiation, commands matched to their answers by id, events kept for whoever waits on them,
// and the three things the lab needs: memory-backend-file, nvdimm hotplug, quit.

import { connect, type Socket } from 'node:net';

import { toSafeNumber } from '../src/core/units.js';
import { LabError } from './errors.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  command: string;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

export class QmpClient {
  readonly events: QmpEvent[] = [];
  private readonly pending = new Map<string, Pending>();
  private readonly eventWaiters = new Set<(event: QmpEvent) => void>();
  private nextId = 1;
  private buffer = '';
  private closedBecause: string | null = null;
  private markGreeted: () => void = () => {};
  private failGreeting: (error: Error) => void = () => {};
  private readonly greeted = new Promise<void>((resolve, reject) => {
    this.markGreeted = resolve;
    this.failGreeting = reject;
  });

  private constructor(private readonly socket: Socket) {
    this.greeted.catch(() => undefined);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => this.failAll('the QMP socket closed'));
    socket.on('error', (error) => this.failAll(`the QMP socket failed: ${error.message}`));
  }

  /**
   * Connects, reads QEMU's greeting and leaves capability negotiation mode. QEMU creates the
   * socket a moment after it starts, so connecting is retried until `timeoutMs` runs out.
   */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    while (Date.now() < deadline) {
      let client: QmpClient | null = null;
      try {
        client = new QmpClient(await openSocket(socketPath));
        await client.greeting(Math.max(1, deadline - Date.now()));
        await client.execute('qmp_capabilities');
        return client;
      } catch (error) {
        client?.close();
        lastError = (error as Error).message;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new LabError('qmp-failed', `no QMP greeting on ${socketPath} within ${timeoutMs} ms (${lastError})`);
  }

  /** Runs one QMP command and resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.closedBecause !== null) {
      return Promise.reject(new LabError('qmp-failed', `QMP ${command}: ${this.closedBecause}`));
    }
    const id = `lab-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LabError('qmp-failed', `QMP ${command} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        command,
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(JSON.stringify(message) + '\n');
    });
  }

  /** Resolves with the first event named `name` that arrives after the call, or one already seen after `since`. */
  waitForEvent(name: string, timeoutMs: number, since = this.events.length): Promise<QmpEvent> {
    const seen = this.events.slice(since).find((event) => event.event === name);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.eventWaiters.delete(waiter);
        reject(new LabError('qmp-failed', `no QMP event ${name} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (event: QmpEvent): void => {
        if (event.event !== name) return;
        clearTimeout(timer);
        this.eventWaiters.delete(waiter);
        resolve(event);
      };
      this.eventWaiters.add(waiter);
    });
  }

  /** `object-add memory-backend-file`: guest memory backed by a host file, shared so writes land in it. */
  async addMemoryBackendFile(id: string, memPath: string, sizeBytes: bigint): Promise<void> {
    await this.execute('object-add', {
      'qom-type': 'memory-backend-file',
      id,
      'mem-path': memPath,
      size: toSafeNumber(sizeBytes),
      share: true,
    });
  }

  /** `device_add nvdimm`: plugs an NVDIMM backed by `memdev` into the running guest. */
  async addNvdimm(id: string, memdev: string, labelSizeBytes?: bigint, address?: bigint): Promise<void> {
    const args: Record<string, unknown> = { driver: 'nvdimm', id, memdev };
    if (labelSizeBytes !== undefined) args['label-size'] = toSafeNumber(labelSizeBytes);
    if (address !== undefined) args.addr = toSafeNumber(address);
    await this.execute('device_add', args);
  }

  /** Asks QEMU to exit; its answer may be lost as the socket closes, which is fine. */
  async quit(timeoutMs = 2_000): Promise<void> {
    await this.execute('quit', undefined, timeoutMs).catch(() => undefined);
  }

  close(): void {
    this.socket.destroy();
  }

  private greeting(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no greeting')), timeoutMs);
      this.greeted.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length > 0) this.dispatch(line);
    }
  }

  private dispatch(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ('QMP' in message) {
      this.markGreeted();
      return;
    }
    if (typeof message.event === 'string') {
      const event = message as unknown as QmpEvent;
      this.events.push(event);
      for (const waiter of [...this.eventWaiters]) waiter(event);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const pending = id === undefined ? undefined : this.pending.get(id);
    if (!pending || id === undefined) return;
    this.pending.delete(id);
    if ('error' in message) {
      const error = message.error as { class?: string; desc?: string };
      pending.reject(new LabError('qmp-failed', `QMP ${pending.command} failed: ${error.class ?? 'Error'}: ${error.desc ?? 'no description'}`));
    } else {
      pending.resolve(message.return);
    }
  }

  private failAll(reason: string): void {
    if (this.closedBecause !== null) return;
    this.closedBecause = reason;
    this.failGreeting(new Error(reason));
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(new LabError('qmp-failed', `QMP ${pending.command}: ${reason}`));
    }
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
