import { NatkitError } from '@natkit/stun';

export type CandidateLineErrorCode =
  | 'EMPTY' // nothing but white space
  | 'TOO_LONG' // longer than MAX_LINE_LENGTH
  | 'BAD_CHARACTER' // a control character, a non-ASCII character or a tab
  | 'BAD_SEPARATOR' // fields not separated by exactly one space
  | 'BAD_PREFIX' // "a=" not followed by "candidate:"
  | 'MISSING_FIELD' // the line ends before a required field
  | 'BAD_FOUNDATION' // not 1 to 32 ice-chars
  | 'BAD_COMPONENT' // not an integer 1 to 256
  | 'BAD_TRANSPORT' // not a token
  | 'BAD_PRIORITY' // not an integer 1 to 2^31 - 1
  | 'BAD_ADDRESS' // not an IPv4 address, an IPv6 address or a host name
  | 'BAD_PORT' // not an integer 0 to 65535
  | 'BAD_TYPE' // "typ" missing, or a type other than host, srflx, prflx, relay
  | 'BAD_RELATED_ADDRESS' // raddr without a valid address
  | 'BAD_RELATED_PORT' // rport without a valid port
  | 'MISPLACED_ATTRIBUTE' // raddr/rport after an extension, or repeated
  | 'BAD_TCPTYPE' // tcptype not active, passive or so
  | 'BAD_EXTENSION' // an extension name that is not a token, or without a value
  | 'BAD_PREFERENCE' // libjingle line: not a decimal number 0 to 1
  | 'BAD_CREDENTIAL' // ufrag or password that ICE or the tutorial's client cannot take
  | 'BAD_FIELD_COUNT'; // libjingle line: not exactly seven fields

/**
 * A candidate line (RFC 8839 `candidate` attribute, or the libjingle tutorial's line) that
 * does not follow its grammar, or a candidate that cannot be written as one. `field` names
 * the part that is wrong and `column` is its 0-based character offset in the input line
 * (-1 when writing).
 */
export class CandidateLineError extends NatkitError {
  declare readonly code: CandidateLineErrorCode;
  readonly field: string;
  readonly column: number;
  constructor(code: CandidateLineErrorCode, field: string, message: string, column = -1) {
    super(code, column >= 0 ? `${message} (${field} at column ${column})` : `${message} (${field})`);
    this.field = field;
    this.column = column;
  }
}
