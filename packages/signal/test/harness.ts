// Drives SignalCores without sockets: connections are numbers, what the core writes to
// each is kept as text, time is a ManualClock, the directory is in memory and the bus
// between instances is a queue the test can hold, drop or deliver.
import { ManualClock } from '@natkit/stun';
import { type CoreOptions, Driver, LocalDirectory, type Packet, SignalCore, parseServerMessage, type ServerMessage } from '../src/index.js';

export interface FakeConn {
  id: number;
  instance: number;
  out: Buffer[];
  closed: { graceful: boolean; code: string } | undefined;
}

export class Cluster {
  readonly clock = new ManualClock(1_000_000);
  readonly directory = new LocalDirectory();
  readonly drivers: Driver[] = [];
  readonly conns = new Map<number, FakeConn>();
  /** Packets published and not delivered yet. */
  readonly bus: Array<{ to: string; packet: Packet }> = [];
  /** Deliver published packets at once (default) or hold them in `bus`. */
  autoDeliver = true;
  /** Drop published packets (a bus that loses everything, e.g. Redis down). */
  dropAll = false;
  readonly logs: string[] = [];
  private nextConn = 1;

  constructor(instances = 1, options: CoreOptions = {}) {
    for (let i = 0; i < instances; i++) this.addInstance(options);
  }

  addInstance(options: CoreOptions = {}): number {
    const core = new SignalCore({ ...options, instance: `inst${this.drivers.length}` });
    const d = new Driver(core, this.directory, {
      write: (conn, data) => this.conns.get(conn)!.out.push(typeof data === 'string' ? Buffer.from(data) : Buffer.from(data)),
      close: (conn, graceful, code) => {
        const c = this.conns.get(conn);
        if (c && !c.closed) c.closed = { graceful, code };
      },
      publish: (to, packet) => {
        if (process.env.FUZZ_REPLAY) this.logs.push(`t=${this.clock.now()} ${core.instance} -> ${to} ${this.dropAll ? 'DROPPED ' : ''}${JSON.stringify(packet)}`);
        if (this.dropAll) return;
        // Through JSON, as the Redis bus carries it.
        this.bus.push({ to, packet: JSON.parse(JSON.stringify(packet)) as Packet });
        if (this.autoDeliver) this.deliver();
      },
      log: (level, msg, fields) => this.logs.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`),
    }, this.clock);
    this.drivers.push(d);
    return this.drivers.length - 1;
  }

  core(i = 0): SignalCore {
    return this.drivers[i]!.core;
  }

  /** Delivers the packets on the bus (and those they cause). */
  deliver(): void {
    while (this.bus.length) {
      const { to, packet } = this.bus.shift()!;
      const d = this.drivers.find((x) => x.core.instance === to);
      if (d && !this.directory.dead.has(to)) d.feed({ type: 'packet', packet });
    }
  }

  open(instance = 0, ip = '192.0.2.1'): FakeConn {
    const c: FakeConn = { id: this.nextConn++, instance, out: [], closed: undefined };
    this.conns.set(c.id, c);
    this.drivers[instance]!.feed({ type: 'open', conn: c.id, ip });
    return c;
  }

  send(c: FakeConn, data: string | Buffer): void {
    this.drivers[c.instance]!.feed({ type: 'data', conn: c.id, data: typeof data === 'string' ? Buffer.from(data) : data });
  }

  /** Sends JSON messages, one a line. */
  json(c: FakeConn, ...msgs: object[]): void {
    this.send(c, msgs.map((m) => `${JSON.stringify(m)}\n`).join(''));
  }

  hangUp(c: FakeConn): void {
    this.drivers[c.instance]!.feed({ type: 'closed', conn: c.id });
    c.closed ??= { graceful: true, code: 'client' };
  }

  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /** Everything written to c, as text. */
  text(c: FakeConn): string {
    return Buffer.concat(c.out).toString('utf8');
  }

  /** The JSON messages written to c (consumed: the next call gives only newer ones). */
  take(c: FakeConn): ServerMessage[] {
    const t = this.text(c);
    c.out = [];
    return t
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => parseServerMessage(l));
  }

  /** Opens a JSON connection and joins `room`. */
  join(room: string, instance = 0, extra: object = {}): FakeConn {
    const c = this.open(instance);
    this.json(c, { type: 'join', room, ...extra });
    return c;
  }

  stop(): void {
    for (const d of this.drivers) d.stop();
  }
}
