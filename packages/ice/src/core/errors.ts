import { NatkitError } from '@natkit/stun';

export type IceErrorCode =
  | 'BAD_CANDIDATE' // a remote candidate the agent cannot use (not an IP address, bad fields)
  | 'BAD_PARAMETERS' // ufrag/pwd that RFC 8839 section 5.4 does not allow
  | 'BAD_OPTION' // an option out of its range
  | 'TOO_MANY_CANDIDATES' // more remote candidates than maxRemoteCandidates
  | 'NOT_CONNECTED' // data sent before a pair is selected
  | 'FAILED' // ICE processing failed (every pair failed, or consent expired)
  | 'CLOSED'; // the agent was closed

/** What the ICE agent refuses or reports, with a stable `code`. */
export class IceError extends NatkitError {
  declare readonly code: IceErrorCode;
  constructor(code: IceErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
