// natkit's own ICE agent (`IceAgent` from @natkit/ice, /work/notes/ice-contract.md) as an
// ice-peers peer, in-process: its candidates become RFC 8839 lines, its events the
// protocol's events, so any interop test can pair it with libnice, aioice, werift or
// Chromium exactly as the harnesses are paired with each other.
//
// IceAgent is being built on another branch (issue 6). Until it is on main this adapter
// looks it up at run time (`natkitAgentAvailable`) and is typed by the contract below, so
// that it compiles today; once the agent lands, replace the lookup with a plain import.
import * as natkitIce from '@natkit/ice';
import { EventLog, type IcePeer, type PeerCandidate, type PeerEvent, type PeerState, type Role, describeEvents } from './peer.js';

/** The parts of a natkit candidate the adapter reads (natkit's Candidate / LocalCandidate). */
export interface NatkitCandidateLike {
  foundation: string;
  component: number;
  transport: string;
  priority: number;
  address: string;
  port: number;
  type: string;
  relatedAddress?: string;
  relatedPort?: number;
  tcpType?: string;
  extensions?: Array<[string, string]>;
}

/** The IceAgent of the contract (ice-contract.md, "The IceAgent"). */
export interface IceAgentLike {
  readonly localParameters: { ufrag: string; pwd: string };
  on(event: 'candidate', fn: (c: NatkitCandidateLike) => void): unknown;
  on(event: 'gathering-complete', fn: () => void): unknown;
  on(event: 'state', fn: (s: string) => void): unknown;
  on(event: 'selected-pair', fn: (p: { local: NatkitCandidateLike; remote: NatkitCandidateLike; rtt?: number }) => void): unknown;
  on(event: 'data', fn: (d: Buffer) => void): unknown;
  gather(): Promise<unknown>;
  setRemoteParameters(p: { ufrag: string; pwd: string; lite?: boolean }): void;
  addRemoteCandidate(c: string): void;
  endOfRemoteCandidates(): void;
  connect(): Promise<unknown>;
  send(data: Buffer): void;
  close(): Promise<void>;
}

export interface IceAgentOptionsLike {
  iceServers?: Array<{ urls: string | string[]; username?: string; credential?: string }>;
  controlling?: boolean;
  nomination?: 'regular' | 'aggressive';
  ta?: number;
  addresses?: string[];
  includeLoopback?: boolean;
  families?: Array<'IPv4' | 'IPv6'>;
  policy?: 'all' | 'relay';
  [option: string]: unknown;
}

const mod = natkitIce as unknown as Record<string, unknown>;
const IceAgentClass = mod.IceAgent as (new (o: IceAgentOptionsLike) => IceAgentLike) | undefined;
const formatLine = mod.formatCandidateLine as ((c: NatkitCandidateLike) => string) | undefined;

/** True once @natkit/ice exports IceAgent. */
export const natkitAgentAvailable = typeof IceAgentClass === 'function';

/** RFC 8839 section 5.1 candidate-attribute value, with the "candidate:" prefix. */
export function candidateLine(c: NatkitCandidateLike): string {
  if (formatLine) {
    const line = formatLine(c);
    return line.startsWith('candidate:') ? line : `candidate:${line.replace(/^a=candidate:/, '')}`;
  }
  let s = `candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority >>> 0} ${c.address} ${c.port} typ ${c.type}`;
  if (c.relatedAddress !== undefined) s += ` raddr ${c.relatedAddress} rport ${c.relatedPort ?? 0}`;
  if (c.tcpType) s += ` tcptype ${c.tcpType}`;
  for (const [k, v] of c.extensions ?? []) s += ` ${k} ${v}`;
  return s;
}

const STATES: readonly string[] = ['new', 'checking', 'connected', 'completed', 'disconnected', 'failed', 'closed'];
const peerCandidate = (c: NatkitCandidateLike): PeerCandidate => ({ address: c.address, port: c.port, type: c.type });

export interface NatkitPeerOptions {
  role: Role;
  /** Local addresses to gather on (default ['127.0.0.1']). */
  addresses?: string[];
  /** Anything else for IceAgent (iceServers, policy, nomination, ta...). */
  agent?: IceAgentOptionsLike;
}

export class NatkitPeer implements IcePeer {
  readonly kind = 'natkit';
  readonly log = new EventLog();
  private connecting = false;
  private closing: Promise<void> | undefined;
  private readonly gathered: Promise<unknown>;

  private constructor(
    readonly role: Role,
    readonly agent: IceAgentLike,
  ) {
    const push = (e: PeerEvent) => this.log.push(e);
    agent.on('candidate', (c) => push({ ev: 'candidate', line: candidateLine(c) }));
    agent.on('gathering-complete', () => push({ ev: 'end-of-candidates' }));
    agent.on('state', (s) => push({ ev: 'state', state: (STATES.includes(s) ? s : 'new') as PeerState, native: s }));
    agent.on('selected-pair', (p) => push({ ev: 'selected-pair', local: peerCandidate(p.local), remote: peerCandidate(p.remote) }));
    agent.on('data', (d) => push({ ev: 'data', hex: Buffer.from(d).toString('hex') }));
    push({ ev: 'local-params', ufrag: agent.localParameters.ufrag, pwd: agent.localParameters.pwd });
    this.gathered = agent.gather().catch((e: Error) => push({ ev: 'error', message: `gather: ${e.message}` }));
  }

  static start(o: NatkitPeerOptions): NatkitPeer {
    if (!IceAgentClass) throw new Error('@natkit/ice does not export IceAgent yet (issue 6: the agent is on branch ice)');
    const addresses = o.addresses ?? ['127.0.0.1'];
    const agent = new IceAgentClass({
      iceServers: [],
      controlling: o.role === 'controlling',
      addresses,
      includeLoopback: true,
      ...o.agent,
    });
    return new NatkitPeer(o.role, agent);
  }

  /** Wraps an agent made elsewhere (custom options, a stand-in with the same shape). */
  static wrap(role: Role, agent: IceAgentLike): NatkitPeer {
    return new NatkitPeer(role, agent);
  }

  get events(): readonly PeerEvent[] {
    return this.log.events;
  }
  subscribe(fn: (e: PeerEvent) => void): () => void {
    return this.log.subscribe(fn);
  }

  private guard(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.push({ ev: 'error', message: `${what}: ${(e as Error).message}` });
    }
  }

  setRemoteParameters(p: { ufrag: string; pwd: string }): void {
    this.guard('setRemoteParameters', () => this.agent.setRemoteParameters({ ufrag: p.ufrag, pwd: p.pwd }));
    if (this.connecting) return;
    this.connecting = true;
    void this.gathered
      .then(() => this.agent.connect())
      .catch((e: Error) => {
        if (!this.closing) this.log.push({ ev: 'error', message: `connect: ${e.message}` });
      });
  }
  addRemoteCandidate(line: string): void {
    this.guard('addRemoteCandidate', () => this.agent.addRemoteCandidate(line));
  }
  endOfRemoteCandidates(): void {
    this.guard('endOfRemoteCandidates', () => this.agent.endOfRemoteCandidates());
  }
  send(data: Buffer): void {
    this.guard('send', () => this.agent.send(data));
  }

  close(): Promise<void> {
    this.closing ??= this.agent.close().finally(() => this.log.end('closed'));
    return this.closing;
  }

  diagnostics(): string {
    return `--- natkit (${this.role})\nevents:\n${describeEvents(this.events)}`;
  }
}
