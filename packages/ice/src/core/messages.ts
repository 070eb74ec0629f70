import { Attr, ERROR_REASONS, MessageBuilder, MessageClass, Method, type TransportAddress } from '@natkit/stun';

/**
 * The STUN messages of ICE connectivity checks (RFC 8445 section 7), built with the codec.
 * Every message carries FINGERPRINT (RFC 8445 section 7: it MUST be used for checks).
 */

export interface CheckRequest {
  transactionId: Buffer;
  /** RFC 8445 section 7.2.2: "RFRAG:LFRAG", the peer's ufrag first. */
  username: string;
  /** HMAC key: the peer's password (short-term credential, RFC 8489 section 9.1). */
  key: Buffer;
  /** RFC 8445 section 7.1.1: the priority a peer-reflexive candidate from this check would have. */
  priority: number;
  controlling: boolean;
  tieBreaker: bigint;
  /** RFC 8445 section 7.1.2: nominate the pair. */
  useCandidate: boolean;
}

/** A Binding request for a connectivity check (RFC 8445 section 7.1) or a consent check (RFC 7675). */
export function buildCheck(r: CheckRequest): Buffer {
  const b = new MessageBuilder(Method.Binding, MessageClass.Request, r.transactionId);
  b.add(Attr.Username, r.username);
  b.add(Attr.Priority, r.priority);
  if (r.controlling) b.add(Attr.IceControlling, r.tieBreaker);
  else b.add(Attr.IceControlled, r.tieBreaker);
  if (r.useCandidate) b.add(Attr.UseCandidate, true);
  return b.encode({ integrity: { key: r.key }, fingerprint: true });
}

/**
 * RFC 8445 section 7.3.1 / RFC 8489 section 7.3.1: the success response, with the source of
 * the request in XOR-MAPPED-ADDRESS, signed with this agent's own password.
 */
export function buildSuccess(transactionId: Buffer, mapped: TransportAddress, key: Buffer): Buffer {
  const b = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, transactionId);
  b.add(Attr.XorMappedAddress, mapped);
  return b.encode({ integrity: { key }, fingerprint: true });
}

/**
 * An error response. 400 and 401 go without MESSAGE-INTEGRITY (RFC 8489 section 9.1.3: the
 * request could not be authenticated); 420 and 487 answer authenticated requests and are
 * signed with `key`.
 */
export function buildError(transactionId: Buffer, code: number, key?: Buffer, unknown?: readonly number[]): Buffer {
  const b = new MessageBuilder(Method.Binding, MessageClass.ErrorResponse, transactionId);
  b.add(Attr.ErrorCode, { code, reason: ERROR_REASONS[code] ?? '' });
  if (unknown && unknown.length > 0) b.add(Attr.UnknownAttributes, [...unknown]);
  return b.encode({ integrity: key ? { key } : undefined, fingerprint: true });
}

/** RFC 8445 section 11: a keepalive is a Binding indication, unauthenticated, with FINGERPRINT. */
export function buildIndication(transactionId: Buffer): Buffer {
  return new MessageBuilder(Method.Binding, MessageClass.Indication, transactionId).encode({ fingerprint: true });
}
