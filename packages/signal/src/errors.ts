import { NatkitError } from '@natkit/stun';

export type SignalProtocolErrorCode = 'INVALID_JSON' | 'INVALID_MESSAGE' | 'UNSUPPORTED_VERSION';

/** A line that is not a valid message of the JSON protocol; `field` names the bad field. */
export class SignalProtocolError extends NatkitError {
  declare readonly code: SignalProtocolErrorCode;
  readonly field: string | undefined;
  constructor(code: SignalProtocolErrorCode, message: string, field?: string) {
    super(code, message);
    this.field = field;
  }
}

export type SignalClientErrorCode =
  | 'CLOSED' // the client was closed
  | 'NOT_CONNECTED' // no connection and the queue is full, or a send in plain mode of a message
  | 'SERVER_ERROR' // the server sent a fatal error (see serverCode)
  | 'PROTOCOL' // the server sent something that is not the protocol
  | 'GAVE_UP'; // reconnect attempts exhausted

/** What the client library reports; `serverCode` is the server's error code for SERVER_ERROR. */
export class SignalClientError extends NatkitError {
  declare readonly code: SignalClientErrorCode;
  readonly serverCode: string | undefined;
  constructor(code: SignalClientErrorCode, message: string, serverCode?: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.serverCode = serverCode;
  }
}

/** Bad server options (a limit out of range, a bad Redis URL). */
export class SignalServerError extends NatkitError {}
