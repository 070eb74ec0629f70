import { EventEmitter } from 'node:events';
import { type Candidate, type IceParameters, formatJingleLine, iceToJingle, jingleToIce, parseJingleLine } from '@natkit/ice';
import { type CandidateMessage, type PeerLeftReason, type PeerMessage, SignalClient, type SignalClientOptions } from '@natkit/signal';

/**
 * The two ways p2pdemo talks to its peer through a signalling server, behind one interface:
 *
 *  - rooms (signalserver's JSON protocol): `credentials` (or `restart`) with the session's
 *    ufrag and pwd, then each `candidate` with its fields and the session's `ufrag`, then
 *    `end-of-candidates`; `app` carries the peer's NAT report. The server says who came
 *    first (`initiator`), and when the peer joins, leaves or comes back.
 *  - plain (the libjingle tutorial's pipe): nothing but its candidate lines,
 *    "address port protocol preference type username password\n", the session's ufrag and
 *    pwd on every line. No end-of-candidates, no NAT report, no word of the peer's
 *    arrival: the first line is the first sign of it.
 */

export interface RemoteCandidate {
  candidate: Candidate;
  /** The session the candidate belongs to: its ufrag (rooms: when the peer gave it; plain: always), and the pwd (plain). */
  parameters?: { ufrag: string; pwd?: string };
}

export interface SignallingEvents {
  /** Joined a room (rooms), or connected (plain); again after a reconnect. */
  joined: [info: { initiator?: boolean; peer?: boolean; reconnected: boolean }];
  'peer-joined': [info: { resumed: boolean }];
  'peer-left': [info: { reason: PeerLeftReason }];
  /** The peer's session parameters (rooms: `credentials` or `restart`). */
  parameters: [parameters: IceParameters];
  candidate: [candidate: RemoteCandidate];
  'end-of-candidates': [info: { ufrag?: string }];
  app: [data: unknown];
  /** Something from the peer that is not the protocol (a bad line); dropped. */
  'bad-input': [info: { text: string; error: string }];
  reconnecting: [info: { attempt: number; delay: number; error?: string }];
  /** A non-fatal error from the server. */
  warning: [message: string];
  /** Closed for good (a final server error, or close()). */
  close: [error?: Error];
}

export interface SignallingOptions {
  host: string;
  port: number;
  /** A room (JSON protocol); undefined: the tutorial's plain pipe. */
  room?: string;
  /** Passed to SignalClient (reconnect, clock, ...). */
  client?: Omit<SignalClientOptions, 'host' | 'port' | 'room'>;
}

export class Signalling extends EventEmitter<SignallingEvents> {
  readonly client: SignalClient;
  readonly plain: boolean;
  private everJoined = false;

  constructor(readonly options: SignallingOptions) {
    super();
    this.plain = options.room === undefined;
    this.client = new SignalClient({ ...options.client, host: options.host, port: options.port, ...(options.room !== undefined ? { room: options.room } : {}) });
    const c = this.client;
    c.on('joined', ({ joined, reconnected }) => {
      this.everJoined = true;
      this.emit('joined', { ...(joined ? { initiator: joined.initiator, peer: joined.peer } : {}), reconnected });
    });
    c.on('peer-joined', (i) => this.emit('peer-joined', i));
    c.on('peer-left', (i) => this.emit('peer-left', i));
    c.on('message', (m) => this.onMessage(m));
    c.on('line', (l) => this.onLine(l));
    c.on('reconnecting', ({ attempt, delay, error }) => this.emit('reconnecting', { attempt, delay, ...(error ? { error: error.message } : {}) }));
    c.on('error', (e) => this.emit('warning', e.message));
    c.on('close', (e) => this.emit('close', e));
  }

  get joinedOnce(): boolean {
    return this.everJoined;
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  /**
   * A session's parameters. Rooms: `credentials` for the first session, `restart` for the
   * next ones (RFC 8445 section 9). Plain: nothing: every candidate line carries them.
   */
  sendParameters(p: IceParameters, restart: boolean): void {
    if (this.plain) return;
    this.client.send(restart ? { type: 'restart', ufrag: p.ufrag, pwd: p.pwd } : { type: 'credentials', ufrag: p.ufrag, pwd: p.pwd });
  }

  /** One local candidate of the session with parameters `p`; returns what went on the wire (for the output). */
  sendCandidate(c: Candidate, p: IceParameters): string {
    if (this.plain) {
      const line = formatJingleLine(iceToJingle(c, p)).replace(/\n$/, '');
      this.client.sendLine(line);
      return line;
    }
    const m: CandidateMessage = {
      type: 'candidate',
      foundation: c.foundation,
      component: c.component,
      transport: c.transport === 'tcp' ? 'tcp' : 'udp',
      priority: c.priority,
      address: c.address,
      port: c.port,
      candidateType: c.type,
      ...(c.relatedAddress !== undefined && c.type !== 'host' ? { relatedAddress: c.relatedAddress, relatedPort: c.relatedPort ?? 0 } : {}),
      ...(c.tcpType ? { tcpType: c.tcpType } : {}),
      ufrag: p.ufrag,
    };
    this.client.send(m);
    return JSON.stringify(m);
  }

  /** End of the session's candidates (RFC 8838); plain lines have no way to say it. */
  sendEndOfCandidates(p: IceParameters): void {
    if (!this.plain) this.client.send({ type: 'end-of-candidates', ufrag: p.ufrag });
  }

  /** Anything else for the peer (rooms only: the NAT report). */
  sendApp(data: unknown): void {
    if (!this.plain) this.client.send({ type: 'app', data });
  }

  /** Leaves (rooms: the peer is told "bye") and closes. */
  async close(): Promise<void> {
    if (this.plain) await this.client.close();
    else await this.client.bye();
  }

  private onMessage(m: PeerMessage): void {
    switch (m.type) {
      case 'credentials':
      case 'restart':
        this.emit('parameters', { ufrag: m.ufrag, pwd: m.pwd });
        break;
      case 'candidate': {
        const candidate: Candidate = {
          foundation: m.foundation,
          component: m.component,
          transport: m.transport,
          priority: m.priority,
          address: m.address,
          port: m.port,
          type: m.candidateType,
          ...(m.relatedAddress !== undefined ? { relatedAddress: m.relatedAddress, relatedPort: m.relatedPort } : {}),
          ...(m.tcpType ? { tcpType: m.tcpType } : {}),
        };
        this.emit('candidate', { candidate, ...(m.ufrag !== undefined ? { parameters: { ufrag: m.ufrag } } : {}) });
        break;
      }
      case 'end-of-candidates':
        this.emit('end-of-candidates', m.ufrag !== undefined ? { ufrag: m.ufrag } : {});
        break;
      case 'app':
        this.emit('app', m.data);
        break;
      default:
        break;
    }
  }

  private onLine(line: string): void {
    const text = line.replace(/\r$/, '');
    if (text.trim() === '') return;
    try {
      const { candidate, parameters } = jingleToIce(parseJingleLine(text));
      this.emit('candidate', { candidate, parameters });
    } catch (err) {
      this.emit('bad-input', { text: text.length > 200 ? `${text.slice(0, 200)}...` : text, error: (err as Error).message });
    }
  }
}
