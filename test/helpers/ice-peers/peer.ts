// One ICE peer that a test drives, whatever implements it (libnice, aioice, werift in
// child processes; Chromium's RTCPeerConnection in a page; natkit's IceAgent in-process).
// Every peer speaks the same small protocol (README.md in this directory): it announces
// its ufrag/pwd and each local candidate as an RFC 8839 line as found, then
// end-of-candidates; it takes the remote ufrag/pwd, remote candidate lines at any time,
// end-of-candidates and data to send; it reports state changes, the selected pair and
// the data it received. Role (controlling/controlled) is fixed when the peer starts.

/** ICE states as RTCIceConnectionState / natkit name them; each peer maps its own. */
export type PeerState = 'new' | 'checking' | 'connected' | 'completed' | 'disconnected' | 'failed' | 'closed';

export interface PeerCandidate {
  address: string;
  port: number;
  /** RFC 8839 type: host, srflx, prflx, relay */
  type: string;
}

export type PeerEvent =
  | { ev: 'local-params'; ufrag: string; pwd: string }
  | { ev: 'candidate'; line: string }
  | { ev: 'end-of-candidates' }
  | { ev: 'state'; state: PeerState; native: string }
  | { ev: 'selected-pair'; local: PeerCandidate; remote: PeerCandidate }
  | { ev: 'data'; hex: string }
  | { ev: 'error'; message: string }
  | { ev: 'synced'; id: string }
  | { ev: 'closed' };

export type PeerCommand =
  | { cmd: 'remote-params'; ufrag: string; pwd: string }
  | { cmd: 'candidate'; line: string }
  | { cmd: 'end-of-candidates' }
  | { cmd: 'send'; hex: string }
  | { cmd: 'sync'; id: string }
  | { cmd: 'close' };

export type Role = 'controlling' | 'controlled';

export const other = (r: Role): Role => (r === 'controlling' ? 'controlled' : 'controlling');

export interface IcePeer {
  /** 'libnice', 'aioice', 'werift', 'chromium', 'natkit' */
  readonly kind: string;
  readonly role: Role;
  /** Every event so far, in order. */
  readonly events: readonly PeerEvent[];
  /** Called for each event as it comes (after the events so far were replayed). */
  subscribe(fn: (e: PeerEvent) => void): () => void;
  setRemoteParameters(p: { ufrag: string; pwd: string }): void;
  addRemoteCandidate(line: string): void;
  endOfRemoteCandidates(): void;
  send(data: Buffer): void;
  /**
   * Resolves once the peer has handled every command given before it (the protocol's
   * sync command, answered by a synced event): a test that needs the agent to have taken
   * a command before something else happens on the network waits for this.
   */
  sync(): Promise<void>;
  /** Closes the peer and waits until it is gone (idempotent). */
  close(): Promise<void>;
  /** What to print when a test fails: the peer's events, logs, stderr. */
  diagnostics(): string;
}

/**
 * The event log behind every peer: stores events, notifies subscribers, and lets a test
 * wait for an event with a deadline (generous: the machine is shared).
 */
export class EventLog {
  readonly events: PeerEvent[] = [];
  /** When each event came (Date.now()), for the timelines in diagnostics. */
  readonly times: number[] = [];
  private readonly subs = new Set<(e: PeerEvent) => void>();
  /** Set once the peer is gone (process exited, page closed): waits fail at once. */
  private ended: string | undefined;

  push(e: PeerEvent): void {
    this.events.push(e);
    this.times.push(Date.now());
    for (const s of [...this.subs]) s(e);
  }

  end(reason: string): void {
    if (this.ended) return;
    this.ended = reason;
    for (const s of [...this.subs]) s({ ev: 'closed' });
  }

  get endedBecause(): string | undefined {
    return this.ended;
  }

  subscribe(fn: (e: PeerEvent) => void): () => void {
    for (const e of [...this.events]) fn(e);
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
}

/** Waits for the first event (past or future) that `match` accepts (returns a value for); `match` may throw to fail the wait. */
export function waitForEvent<T>(peer: IcePeer, what: string, match: (e: PeerEvent) => T | undefined, ms = 30_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let unsubscribe: () => void = () => {};
    const timer = setTimeout(() => finish(new Error(`${peer.kind} (${peer.role}): no ${what} within ${ms} ms\n${peer.diagnostics()}`)), ms);
    const finish = (err: Error | undefined, value?: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      queueMicrotask(() => unsubscribe());
      if (err) reject(err);
      else resolve(value as T);
    };
    unsubscribe = peer.subscribe((e) => {
      if (done) return;
      let v: T | undefined;
      try {
        v = match(e);
      } catch (err) {
        finish(err as Error);
        return;
      }
      if (v !== undefined) finish(undefined, v);
      else if (e.ev === 'closed') finish(new Error(`${peer.kind} (${peer.role}) closed before ${what}\n${peer.diagnostics()}`));
    });
    if (done) unsubscribe();
  });
}

let syncs = 0;
/** A fresh id for a sync command. */
export const syncId = () => `sync-${process.pid}-${++syncs}`;

/** Waits for the synced event that answers sync command `id`. */
export const synced = (p: IcePeer, id: string, ms?: number) => waitForEvent(p, `synced ${id}`, (e) => (e.ev === 'synced' && e.id === id ? true : undefined), ms);

export const localParams = (p: IcePeer, ms?: number) =>
  waitForEvent(p, 'local ufrag/pwd', (e) => (e.ev === 'local-params' ? { ufrag: e.ufrag, pwd: e.pwd } : undefined), ms);

export const selectedPair = (p: IcePeer, ms?: number) =>
  waitForEvent(p, 'selected pair', (e) => (e.ev === 'selected-pair' ? { local: e.local, remote: e.remote } : undefined), ms);

/** Waits for the state (or any of the states) given; a 'failed' state rejects at once unless asked for. */
export function reachState(p: IcePeer, states: PeerState | PeerState[], ms?: number): Promise<PeerState> {
  const want = Array.isArray(states) ? states : [states];
  return waitForEvent(
    p,
    `state ${want.join('|')}`,
    (e) => {
      if (e.ev !== 'state') return undefined;
      if (want.includes(e.state)) return e.state;
      if (e.state === 'failed' || e.state === 'closed') throw new Error(`${p.kind} (${p.role}) went ${e.state} (${e.native}) waiting for ${want.join('|')}\n${p.diagnostics()}`);
      return undefined;
    },
    ms,
  );
}

/** Data received so far, each datagram as a Buffer. */
export function received(p: IcePeer): Buffer[] {
  return p.events.flatMap((e) => (e.ev === 'data' ? [Buffer.from(e.hex, 'hex')] : []));
}

export const states = (p: IcePeer): PeerState[] => p.events.flatMap((e) => (e.ev === 'state' ? [e.state] : []));
export const errors = (p: IcePeer): string[] => p.events.flatMap((e) => (e.ev === 'error' ? [e.message] : []));
export const localCandidates = (p: IcePeer): string[] => p.events.flatMap((e) => (e.ev === 'candidate' ? [e.line] : []));

/** Wall-clock time of day with milliseconds (the harnesses' logs use the same clock). */
export const clock = (t: number) => new Date(t).toISOString().slice(11, 23);

/** One line per event, each with the time it came when `times` is given (EventLog.times). */
export function describeEvents(events: readonly PeerEvent[], max = 60, times?: readonly number[]): string {
  const lines = events.map((e, i) => `${times?.[i] ? `${clock(times[i]!)} ` : ''}${JSON.stringify(e).slice(0, 300)}`);
  return (lines.length > max ? ['...', ...lines.slice(-max)] : lines).join('\n');
}

/** A failure message's tail: every peer's diagnostics. */
export const infoOf =
  (...peers: IcePeer[]) =>
  (): string =>
    peers.map((p) => p.diagnostics()).join('\n');
