import type { TransportAddress } from '@natkit/stun';

/**
 * The boundary between gathering and the agent. A CandidateBase is a place checks and data
 * go out of and come in at: a bound UDP socket (the base of its host candidate and of the
 * server-reflexive candidates learned through it), or a TURN allocation (the base of its
 * relayed candidate, RFC 8445 section 5.1.1.2). The gatherer owns the bases; the agent sends
 * through them and receives what the gatherer's own transactions (Binding requests to STUN
 * servers, TURN requests) did not consume.
 */
export interface CandidateBase {
  /** Unique within one gatherer; LocalCandidate.baseId refers to it. */
  readonly id: number;
  /** 'host': a socket of this machine; 'relay': a TURN allocation. */
  readonly kind: 'host' | 'relay';
  /** The base address: the socket's local address, or the relayed transport address. */
  readonly address: TransportAddress;
  /**
   * Sends one datagram to a remote transport address. Through a relay this goes to the TURN
   * server (a permission for the peer's IP is installed first, RFC 8656 section 9; ChannelData
   * once a channel is bound). Never throws: a failed send is a lost datagram, as on UDP.
   */
  send(data: Uint8Array, to: TransportAddress): void;
  /**
   * Set by the agent: every datagram that is not an answer to the gatherer's own
   * transactions (ICE checks, responses to checks, application data).
   */
  onPacket: ((data: Buffer, from: TransportAddress) => void) | undefined;
  /** Relay bases: bind a TURN channel to the peer so data flows as ChannelData (RFC 8656 section 12). */
  bindChannel?(peer: TransportAddress): Promise<void>;
  /** Closes the socket, or deletes the allocation. */
  close(): Promise<void>;
}
