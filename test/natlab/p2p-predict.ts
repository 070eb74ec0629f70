// Which path two ICE peers behind two NATs of the lab (test/helpers/natlab.ts) end up on:
// direct, or through the TURN relay. Derived here from the behaviours of RFC 4787 (mapping,
// section 4.1; filtering, section 5) and the rules of ICE (RFC 8445), for the lab's NATs; the
// virtual network's predictPath (test/helpers/vnet/predict.ts) derives the same thing its own
// way, and p2p-predict.test.ts holds the two to each other on every pair of behaviours.
import type { CandidateType } from '@natkit/ice';
import { type Dependence, type NatBehaviour, type NatType, natBehaviour } from '../helpers/natlab.js';

export type CellNat = NatType | NatBehaviour;

export interface CellPrediction {
  path: 'direct' | 'relayed';
  /** For a direct path: the candidate types of each peer's selected pair (local, remote). */
  a?: { local: CandidateType; remote: CandidateType };
  b?: { local: CandidateType; remote: CandidateType };
  /** The reasoning, for a failure message and the results table. */
  why: string;
}

interface Side {
  name: string;
  mapping: Dependence | 'none';
  filtering: Dependence | 'none';
}

/*
 * The setting. Each peer P runs its ICE agent on a host socket b_P inside its namespace and
 * gathers: its host candidate (the private 10.0.n.2 behind a router, which the other peer
 * cannot reach: the routers have no route to each other's private side; the public address
 * itself without a NAT), its server-reflexive candidate s_P (the mapping of b_P towards the
 * STUN server, 203.0.113.1:3478), and a relayed one from the TURN server (203.0.113.3). The
 * peers exchange them through the signalling server and both check every pair at once,
 * retransmitting (RFC 8445 section 6.1.4, 14.3); checks always leave from the base b_P
 * (section 7.2.4), through the NAT. The NATs' public addresses differ from each other and from
 * the servers'. The NATs do not hairpin, and nothing here needs them to: the peers are
 * behind different NATs, so no packet is ever addressed from inside a NAT to its own public
 * address (that is what hairpinning serves).
 *
 * Where P's packets towards an endpoint D leave from, m_P(D):
 *   no NAT (or a host firewall): b_P itself, which is P's signalled host candidate;
 *   EIM: s_P, whatever D is;                                        } "predictable": P's
 *   ADM: s_P for the STUN server's address, a new port n_P for the  } checks come from the
 *        other peer's address (one for all its ports);              } endpoint it signalled
 *   APDM: a new random port for every new (address, port) D.         (none, EIM) or not
 * Which packets a mapping M of P's NAT lets in, from E:
 *   no NAT: all; EIF: all; ADF: if M has sent to E's address; APDF: if M has sent to E.
 * ICE's rules that decide it: a check succeeds only if its answer comes from the address the
 * check went to (RFC 8445 section 7.2.5.2.1); a check from an address the receiver does not
 * know makes a peer-reflexive candidate of it, which the receiver then checks at once, a
 * triggered check (sections 7.3.1.3, 7.3.1.4).
 *
 * Q's signalled public endpoint T_Q is s_Q (Q's host candidate without a NAT). P's check to
 * T_Q leaves from E = m_P(T_Q) and lands on the mapping Q made towards the STUN server.
 *
 * 1. Q predictable. That mapping is also where Q's own checks to P leave from, so it has sent
 *    to P's signalled endpoint (s_P or P's host address), hence to P's address. P's check
 *    gets in if Q's filtering is none, EIF or ADF (same address), or, under APDF, if E is
 *    exactly what Q addressed, i.e. if P is predictable. Q answers from b_Q, which leaves from
 *    m_Q(E) = T_Q: the check succeeds, P's filter admits the answer (E has just sent to T_Q).
 *    Q's triggered check to E goes the same way back and succeeds. A direct path; P's local
 *    candidate is its signalled one if P is predictable, else peer-reflexive (the mapped
 *    address in Q's answer is new to P), and Q's remote candidate is the same endpoint.
 *    Example: restricted cone (EIM+ADF) with symmetric: the symmetric peer's check comes from
 *    a new port, but the cone's filter has sent to the symmetric NAT's address: admitted.
 *    Port-restricted (EIM+APDF) with symmetric: not admitted (a port it never addressed).
 * 2. Q not predictable (ADM or APDM). The mapping P's check lands on has only talked to the
 *    STUN server: only EIF lets it in. Q then answers from a new mapping R = m_Q(E), not T_Q:
 *    P's check fails. But Q has learned E (peer-reflexive) and checks it from R. P's mapping E
 *    has sent to T_Q, at Q's address: R (same address, other port) gets in under none, EIF or
 *    ADF. P answers from b_P, leaving from m_P(R), which is E again if P's mapping is none, EIM
 *    or ADM (R has Q's address). Then Q's check succeeds, P learns R and its triggered check
 *    from E to R is answered from R. A direct path; Q's local candidate is peer-reflexive (R).
 * Either peer may be P: the path is direct if case 1 or 2 holds one way or the other.
 * Otherwise every check dies in a filter, and only pairs with a relayed candidate work: the
 * relay is public, and a TURN permission is per peer address (RFC 8656 section 9), so when P
 * pairs its relayed candidate with s_Q it lets in everything from Q's NAT, including Q's
 * checks from new mappings, which Q's filter lets answers back to (they went to the relay).
 * (The relay will not relay between two of its own relayed addresses, natkit's default peer
 * policy; one relayed candidate on the path is enough.) A direct pair, when there is one,
 * outranks every relayed one (type preference 0 for relayed candidates, RFC 8445 section
 * 5.1.2.2), so the agent selects it.
 *
 * The five NAT types of issue 8, by these rules: no NAT, full cone and restricted cone connect
 * directly with everything; port-restricted cone with everything but symmetric; symmetric with
 * no NAT, full cone and restricted cone. Relayed: port-restricted/symmetric (both ways) and
 * symmetric/symmetric, 3 of the 25 cells.
 */

function sideOf(nat: CellNat): Side {
  const b = natBehaviour(nat);
  const name = typeof nat === 'string' ? nat : `${nat.mapping} mapping + ${nat.filtering} filtering`;
  return { name, mapping: b.mapping, filtering: b.filtering };
}

const predictable = (s: Side) => s.mapping === 'none' || s.mapping === 'endpoint-independent';
const signalled = (s: Side): CandidateType => (s.mapping === 'none' ? 'host' : 'srflx');
/** Does a mapping of this NAT that has sent to an address let in another port of that address? */
const sameAddressGetsIn = (s: Side) => s.filtering === 'none' || s.filtering === 'endpoint-independent' || s.filtering === 'address-dependent';

/** P checks Q first: does that open a direct path (case 1 or 2 above), and with which candidates? */
function firstContact(p: Side, q: Side): { p: { local: CandidateType; remote: CandidateType }; q: { local: CandidateType; remote: CandidateType }; how: string } | undefined {
  const e: CandidateType = predictable(p) ? signalled(p) : 'prflx';
  if (predictable(q)) {
    // case 1
    if (!(sameAddressGetsIn(q) || predictable(p))) return undefined;
    const how = sameAddressGetsIn(q)
      ? `${q.name}'s ${q.filtering} filter lets ${p.name}'s checks in (its mapping has sent to ${p.name}'s address)`
      : `${p.name}'s checks come from the endpoint ${q.name} addressed`;
    return { p: { local: e, remote: signalled(q) }, q: { local: signalled(q), remote: e }, how: `${how}, and ${q.name} answers from its signalled endpoint` };
  }
  // case 2
  if (q.filtering !== 'endpoint-independent') return undefined;
  if (!sameAddressGetsIn(p)) return undefined;
  if (!(predictable(p) || p.mapping === 'address-dependent')) return undefined;
  return {
    p: { local: e, remote: 'prflx' },
    q: { local: 'prflx', remote: e },
    how: `${q.name}'s endpoint-independent filter lets ${p.name}'s check in; ${q.name} checks back from a new mapping, which ${p.name}'s filter admits and answers from the same endpoint`,
  };
}

/** The path two peers behind `a` and `b` take, and why. */
export function predictCell(a: CellNat, b: CellNat): CellPrediction {
  const A = sideOf(a);
  const B = sideOf(b);
  const names = `${A.name} / ${B.name}`;
  const ab = firstContact(A, B);
  if (ab) return { path: 'direct', a: ab.p, b: ab.q, why: `${names}: ${ab.how}: direct` };
  const ba = firstContact(B, A);
  if (ba) return { path: 'direct', a: ba.q, b: ba.p, why: `${names}: ${ba.how}: direct` };
  const dropped = (p: Side, q: Side) =>
    predictable(q)
      ? `${q.name}'s ${q.filtering} filter drops ${p.name}'s checks (from a port it never addressed)`
      : q.filtering !== 'endpoint-independent'
        ? `${q.name}'s ${q.filtering} filter drops ${p.name}'s checks (its mapping has only talked to the STUN server)`
        : `${p.name} cannot answer ${q.name}'s checks from the endpoint they went to`;
  return { path: 'relayed', why: `${names}: ${dropped(A, B)}; ${dropped(B, A)}: relayed` };
}

/**
 * Does a peer's selected pair (its local and remote candidate types) agree with the
 * prediction for that peer? A predicted srflx may come out prflx: when a check's answer (or a
 * check) arrives before the server-reflexive candidate it matches has been gathered or
 * signalled, ICE takes the address as peer-reflexive (RFC 8445 sections 7.2.5.3.1, 7.3.1.3);
 * the address is the same, only the order of events differs. Anything else is a different path.
 */
export function pairAsPredicted(predicted: { local: CandidateType; remote: CandidateType }, got: { local: CandidateType; remote: CandidateType }): boolean {
  const same = (want: CandidateType, type: CandidateType) => type === want || (want === 'srflx' && type === 'prflx');
  return same(predicted.local, got.local) && same(predicted.remote, got.remote);
}
