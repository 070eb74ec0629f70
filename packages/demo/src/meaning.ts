import type { DemoPath } from './events.js';

/**
 * What the findings mean for the user, in words. The NAT sentences follow from RFC 4787's
 * behaviours and ICE's rules (RFC 8445: checks from the host socket through the NAT,
 * peer-reflexive candidates, triggered checks): a peer whose NAT maps every destination
 * to the same public port (endpoint-independent mapping: the cones) can be reached at the
 * address the STUN server saw; whether a check gets in depends on the other side's
 * filtering. The same reasoning predicts the NAT lab's 5x5 table (test/natlab/p2p-predict.ts),
 * and the lab checks it against real Linux NATs.
 */
export function natMeaning(classic: string): string {
  switch (classic) {
    case 'Open Internet':
      return 'no NAT and no filter: any peer can reach you directly';
    case 'Full Cone':
      return 'a full-cone NAT: once you have sent anything, anyone can reach your public address; direct paths work with every kind of peer';
    case 'Restricted Cone':
      return 'a restricted-cone NAT: a peer gets in once you have sent to its address; direct paths work with every kind of peer';
    case 'Port Restricted Cone':
      return 'a port-restricted-cone NAT: direct paths work with every peer except one behind a symmetric NAT, which needs a relay';
    case 'Symmetric':
      return 'a symmetric NAT (a new public port for every destination): direct paths work only with peers that have no NAT, a full-cone or a restricted-cone NAT; others need a relay';
    case 'Symmetric UDP Firewall':
      return 'no NAT but a firewall that lets in only answers: like a port-restricted cone, a peer behind a symmetric NAT needs a relay';
    case 'UDP Blocked':
      return 'no answer over UDP: UDP is blocked (or the server is down); only a relay over TCP or TLS (turn:...?transport=tcp, turns:) can work';
    default:
      return 'behaviour not tested: the STUN server has one address (RFC 5780 needs two); the path found below still tells';
  }
}

/** `relayOnly`: which side asked for relayed candidates only (--relay-only), if one did. */
export function pathMeaning(path: DemoPath, relayOnly?: 'local' | 'peer'): string {
  if (path.kind === 'relayed') {
    if (relayOnly === 'local') return 'relayed, as asked (--relay-only): every byte goes through the TURN server';
    if (relayOnly === 'peer') return 'relayed, as the peer asked (--relay-only): every byte goes through the TURN server';
    return 'relayed: no direct path between these two networks was found, so every byte goes through the TURN server (it works, at the relay\'s cost)';
  }
  if (path.local.type === 'host' && path.remote.type === 'host') return 'direct, host to host: no NAT between the peers (the same network, or public addresses)';
  return 'direct: the NATs let the peers reach each other (hole punching worked); no relay needed';
}

export interface FailureFacts {
  /** Relayed candidates on each side. */
  localRelays: number;
  remoteRelays: number;
  /** TURN servers given. */
  turnServers: number;
  /** Why the TURN servers gave no candidate, if they did not. */
  turnErrors: string[];
  peerNat?: string;
  ownNat?: string;
}

export function failureVerdict(f: FailureFacts): { verdict: 'impossible without a relay' | 'no path, not even through the relay'; meaning: string } {
  const nats = f.ownNat && f.peerNat ? ` (you: ${f.ownNat}; the peer: ${f.peerNat})` : '';
  if (f.localRelays === 0 && f.remoteRelays === 0) {
    const why =
      f.turnServers === 0
        ? 'no TURN server was given: run both peers with --turn (and --user/--credential)'
        : f.turnErrors.length
          ? `the TURN server gave no relayed address: ${f.turnErrors.join('; ')}`
          : 'neither peer got a relayed address';
    return { verdict: 'impossible without a relay', meaning: `no direct path between these two networks${nats}, and ${why}` };
  }
  return {
    verdict: 'no path, not even through the relay',
    meaning: `no candidate pair worked${nats}, even with a relayed address on ${f.localRelays && f.remoteRelays ? 'both sides' : f.localRelays ? 'this side' : "the peer's side"}: the relay refused (its peer policy, quotas) or UDP to it is blocked`,
  };
}
