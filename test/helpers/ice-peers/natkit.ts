// natkit's own ICE agent (`IceAgent` from @natkit/ice) as an ice-peers peer, in-process: its
// candidates become RFC 8839 lines (natkit's own formatCandidateLine), its events the
// protocol's events, so any interop test can pair it with libnice, aioice, werift or
// Chromium exactly as the harnesses are paired with each other.
import { type Candidate, IceAgent, type IceAgentOptions, formatCandidateLine } from '@natkit/ice';
import { EventLog, type IcePeer, type PeerCandidate, type PeerEvent, type PeerState, type Role, describeEvents } from './peer.js';

/** RFC 8839 section 5.1 candidate-attribute value, with the "candidate:" prefix. */
export function candidateLine(c: Candidate): string {
  const line = formatCandidateLine(c);
  return line.startsWith('candidate:') ? line : `candidate:${line.replace(/^a=candidate:/, '')}`;
}

const STATES: readonly string[] = ['new', 'checking', 'connected', 'completed', 'disconnected', 'failed', 'closed'];
const peerCandidate = (c: Candidate): PeerCandidate => ({ address: c.address, port: c.port, type: c.type });

export interface NatkitPeerOptions {
  role: Role;
  /** Local addresses to gather on (default ['127.0.0.1']). */
  addresses?: string[];
  /** Anything else for IceAgent (iceServers, policy, nomination, ta...). */
  agent?: IceAgentOptions;
}

export class NatkitPeer implements IcePeer {
  readonly kind = 'natkit';
  readonly log = new EventLog();
  private connecting = false;
  private closing: Promise<void> | undefined;
  private readonly gathered: Promise<unknown>;

  private constructor(
    readonly role: Role,
    readonly agent: IceAgent,
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
    const addresses = o.addresses ?? ['127.0.0.1'];
    const agent = new IceAgent({
      iceServers: [],
      controlling: o.role === 'controlling',
      addresses,
      includeLoopback: true,
      ...o.agent,
    });
    return new NatkitPeer(o.role, agent);
  }

  /** Wraps an agent made elsewhere (custom options). */
  static wrap(role: Role, agent: IceAgent): NatkitPeer {
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
  /** IceAgent takes each call synchronously: nothing is pending. */
  async sync(): Promise<void> {}

  close(): Promise<void> {
    this.closing ??= this.agent.close().finally(() => this.log.end('closed'));
    return this.closing;
  }

  diagnostics(): string {
    return `--- natkit (${this.role})\nevents:\n${describeEvents(this.events, 60, this.log.times)}`;
  }
}
