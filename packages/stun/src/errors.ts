/**
 * Every error natkit throws carries a stable `code` (a string that does not change between
 * releases, safe to switch on) and, for decoding, where it failed.
 */
export class NatkitError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type DecodeErrorCode =
  | 'NOT_STUN' // first two bits not zero, or shorter than a header
  | 'TRUNCATED' // fewer bytes than the header's length says
  | 'TRAILING_BYTES' // more bytes than the header's length says
  | 'BAD_LENGTH' // message length not a multiple of 4
  | 'ATTRIBUTE_OVERFLOW' // an attribute runs past the end of the message
  | 'FINGERPRINT_NOT_LAST'
  | 'BAD_ATTRIBUTE_LENGTH' // an attribute's length is wrong for its type
  | 'BAD_ADDRESS_FAMILY'
  | 'BAD_VALUE' // a value out of its range
  | 'BAD_UTF8'
  | 'VALUE_TOO_LONG'
  | 'MISSING_ATTRIBUTE'
  | 'BAD_CHANNEL_DATA';

/** A message or attribute that does not follow the wire format. */
export class StunDecodeError extends NatkitError {
  declare readonly code: DecodeErrorCode;
  /** Byte offset in the message where the problem is. */
  readonly offset: number;
  /** The attribute type being decoded, if any. */
  readonly attribute: number | undefined;
  constructor(code: DecodeErrorCode, message: string, offset: number, attribute?: number) {
    const where =
      attribute === undefined
        ? ` (at byte ${offset})`
        : ` (attribute 0x${attribute.toString(16).padStart(4, '0')} at byte ${offset})`;
    super(code, message + where);
    this.offset = offset;
    this.attribute = attribute;
  }
}

export type EncodeErrorCode = 'BAD_VALUE' | 'VALUE_TOO_LONG' | 'BAD_ADDRESS' | 'BAD_TRANSACTION_ID';

/** A value that cannot be written to the wire. */
export class StunEncodeError extends NatkitError {
  declare readonly code: EncodeErrorCode;
  constructor(code: EncodeErrorCode, message: string) {
    super(code, message);
  }
}

export type CredentialErrorCode =
  | 'PRECIS_DISALLOWED' // OpaqueString refused a code point
  | 'PRECIS_EMPTY'
  | 'SASLPREP_PROHIBITED'
  | 'SASLPREP_BIDI'
  | 'UNSUPPORTED_ALGORITHM';

export class StunCredentialError extends NatkitError {
  declare readonly code: CredentialErrorCode;
  constructor(code: CredentialErrorCode, message: string) {
    super(code, message);
  }
}

export type TransactionErrorCode =
  | 'TIMEOUT'
  | 'ABORTED'
  | 'CLOSED'
  | 'ERROR_RESPONSE'
  | 'BAD_RESPONSE'
  | 'AUTH_FAILED'
  | 'REDIRECT_LOOP'
  | 'SOCKET_ERROR';

/** A client transaction that did not end in a success response. */
export class StunTransactionError extends NatkitError {
  declare readonly code: TransactionErrorCode;
  /** For ERROR_RESPONSE: the STUN error code (e.g. 401) and reason phrase. */
  readonly errorCode: number | undefined;
  readonly reason: string | undefined;
  constructor(
    code: TransactionErrorCode,
    message: string,
    extra: { errorCode?: number; reason?: string; cause?: unknown } = {},
  ) {
    super(code, message, { cause: extra.cause });
    this.errorCode = extra.errorCode;
    this.reason = extra.reason;
  }
}

export type ServerErrorCode =
  | 'CONFIG' // options that do not go together, or a value out of range
  | 'LISTEN' // a listening socket could not be had (see `errno`: EADDRINUSE, EADDRNOTAVAIL, ...)
  | 'RELAY_ADDRESS'; // a relay address could not be bound (not an address of this host?)

/**
 * Why a server (StunServer, TurnServer) could not start: one base class for both, with a
 * stable `code`, and for socket failures the operating system's `errno` and the `cause`.
 */
export class ServerError extends NatkitError {
  declare readonly code: ServerErrorCode;
  /** The system error code behind a LISTEN or RELAY_ADDRESS failure (EADDRINUSE, ...). */
  readonly errno: string | undefined;
  constructor(code: ServerErrorCode, message: string, options: { cause?: unknown; errno?: string } = {}) {
    super(code, message, { cause: options.cause });
    this.errno = options.errno ?? ((options.cause as NodeJS.ErrnoException | undefined)?.code || undefined);
  }
}

/** A StunServer could not start. */
export class StunServerError extends ServerError {}
