import type { CandidateType } from '@natkit/ice';
import { type Dependence, NAT_PRESETS, type NatBehaviour, type NatType } from './nat.js';

// What RFC 4787 says about two peers behind two NATs: can ICE connectivity checks open a
// direct path between them, and if so, which candidate types does each side's selected pair
// have? Written from the behaviours (mapping, filtering), not as a table of NAT names, so that
// it covers custom behaviours too and its reasoning can be read and checked.

/** The NAT in front of one peer: a natlab preset or an RFC 4787 behaviour. */
export type PeerNat = NatType | NatBehaviour;

export interface SidePrediction {
  /** The type of the local candidate of this side's selected pair. */
  local: CandidateType;
  /** The type of the remote candidate of this side's selected pair. */
  remote: CandidateType;
}

export interface PathPrediction {
  path: 'direct' | 'relay';
  /** For a direct path, what each side's selected pair is made of. */
  a?: SidePrediction;
  b?: SidePrediction;
  /** The reasoning, for the test's failure message. */
  why: string;
}

interface Side {
  /** 'none': no translation (no NAT, or a host firewall). */
  mapping: Dependence | 'none';
  /** 'none': nothing filtered (no NAT and no firewall). */
  filtering: Dependence | 'none';
  name: string;
}

function side(nat: PeerNat): Side {
  if (nat === 'none') return { mapping: 'none', filtering: 'none', name: 'no NAT' };
  if (nat === 'firewall') return { mapping: 'none', filtering: 'address-and-port-dependent', name: 'a host firewall' };
  if (typeof nat === 'string') return { ...NAT_PRESETS[nat], name: nat };
  return { mapping: nat.mapping, filtering: nat.filtering, name: `${nat.mapping} mapping + ${nat.filtering} filtering` };
}

/**
 * The reasoning, for peers A and B that each gathered a host candidate and a server-reflexive
 * candidate from a STUN server on the public internet (and a relayed one from a TURN server
 * there), signalled them to each other, and run ICE checks from their host sockets (RFC 8445
 * section 7.2.4: checks go out of the base), both at once and with retransmissions.
 *
 * Terms. A side's mapping is "predictable" without a NAT or with endpoint-independent mapping
 * (RFC 4787 section 4.1): its packets to anyone leave from its signalled public endpoint (host
 * or server-reflexive). Address-dependent and address-and-port-dependent mapping give packets
 * to the peer a new mapping that nobody signalled (a new port: with 'preserve' the local port
 * is already taken by the mapping towards the STUN server). A filter is "open" to a peer's
 * address with no NAT, endpoint-independent filtering, or (once the mapping has sent to that
 * address) address-dependent filtering (RFC 4787 section 5). Two ICE rules matter: a check
 * succeeds only if its answer comes from where the check went (RFC 8445 section 7.2.5.2.1,
 * symmetric transport addresses), and a check from an unknown address makes that address a
 * peer-reflexive candidate the receiver then checks (section 7.3.1.3, 7.3.1.4).
 *
 * First contact, X checking Y's signalled public endpoint T (Y's server-reflexive candidate,
 * or its host candidate without a NAT; host candidates behind NATs are private and do not
 * route). The check arrives on the mapping Y opened towards the STUN server.
 *  (a) If Y is predictable, that mapping is also the one Y's own checks to X leave from, so
 *      its filter has been opened towards X's address and X's signalled endpoint: X's check
 *      gets in if Y's filter is open, or if X is predictable (it then comes from the very
 *      endpoint Y addressed, which even address-and-port-dependent filtering admits). Y
 *      answers from T (predictable): X's check succeeds, and X's filter admits the answer (X
 *      just sent to T). Y's triggered check to where X's check came from goes back the same
 *      way and succeeds too. A direct path: X's local candidate is its signalled one if X is
 *      predictable, else peer-reflexive; Y's is T.
 *  (b) If Y is not predictable, that mapping has only talked to the STUN server: only an
 *      endpoint-independent filter lets X's check in, and Y's answer leaves by Y's new
 *      mapping towards X, not from T, so X's check fails. But Y has learned where X's check
 *      came from (E, peer-reflexive unless X is predictable) and checks it from that new
 *      mapping N. X's filter on E (which has sent to T, at Y's address) admits N if it is
 *      open; X's answer must leave from E, which it does if X's mapping is predictable or
 *      address-dependent (N has Y's address). Then Y's check succeeds, X learns N as
 *      peer-reflexive, and X's triggered check to N leaves from E and is answered from N. A
 *      direct path with Y's local candidate peer-reflexive (N) and X's E.
 * Otherwise nothing gets through and only a relayed pair works: TURN permissions are per IP
 * address (RFC 8656 section 9) and the relay is public. A direct path, when there is one,
 * outranks every relayed pair (type preference 0 for relayed candidates, RFC 8445 section
 * 5.1.2.2), and there is only one: each side has one public endpoint towards the other.
 */
export function predictPath(a: PeerNat, b: PeerNat): PathPrediction {
  const A = side(a);
  const B = side(b);
  const predictable = (s: Side) => s.mapping === 'none' || s.mapping === 'endpoint-independent';
  const open = (s: Side) => s.filtering === 'none' || s.filtering === 'endpoint-independent' || s.filtering === 'address-dependent';
  const signalled = (s: Side): CandidateType => (s.mapping === 'none' ? 'host' : 'srflx');
  /** What each side's selected pair is made of when X's first contact to Y opens the path; undefined if it does not. */
  const via = (x: Side, y: Side): { x: SidePrediction; y: SidePrediction; how: string } | undefined => {
    const ex: CandidateType = predictable(x) ? signalled(x) : 'prflx';
    if (predictable(y)) {
      // (a)
      if (!(open(y) || predictable(x))) return undefined;
      return { x: { local: ex, remote: signalled(y) }, y: { local: signalled(y), remote: ex }, how: `${y.name} admits ${x.name}'s checks and answers from its signalled endpoint` };
    }
    // (b)
    if (y.filtering !== 'endpoint-independent') return undefined;
    if (!open(x) || !(predictable(x) || x.mapping === 'address-dependent')) return undefined;
    const ex2: CandidateType = predictable(x) ? signalled(x) : 'prflx';
    return { x: { local: ex2, remote: 'prflx' }, y: { local: 'prflx', remote: ex2 }, how: `${y.name} lets ${x.name}'s first check in and checks back from a new mapping, which ${x.name}'s filter admits and answers from the same endpoint` };
  };
  const names = `A behind ${A.name}, B behind ${B.name}`;
  const ab = via(A, B);
  if (ab) return { path: 'direct', a: ab.x, b: ab.y, why: `${names}: ${ab.how}: a direct path` };
  const ba = via(B, A);
  if (ba) return { path: 'direct', a: ba.y, b: ba.x, why: `${names}: ${ba.how}: a direct path` };
  const closed = (x: Side, y: Side) =>
    predictable(y)
      ? `${y.name}'s ${y.filtering} filter drops ${x.name}'s checks, which come from ${predictable(x) ? 'its signalled endpoint' : 'a new mapping'}`
      : y.filtering !== 'endpoint-independent'
        ? `${y.name}'s ${y.filtering} filter drops ${x.name}'s checks (they arrive on a mapping that has only talked to the STUN server)`
        : `${x.name} cannot answer ${y.name}'s checks from the endpoint they went to (${x.mapping} mapping, ${x.filtering} filtering)`;
  return { path: 'relay', why: `${names}: no direct path: ${closed(A, B)}; ${closed(B, A)}. So a relayed pair` };
}
