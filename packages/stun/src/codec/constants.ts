/** RFC 8489 section 5: the fixed magic cookie, in network byte order at offset 4. */
export const MAGIC_COOKIE = 0x2112a442;
/** RFC 8489 section 5: every STUN message starts with a 20-byte header. */
export const HEADER_LENGTH = 20;
/** RFC 8489 section 14.7: FINGERPRINT is CRC-32 of the message XOR this value. */
export const FINGERPRINT_XOR = 0x5354554e;

/** RFC 8489 section 5: the two class bits C1 C0. */
export const MessageClass = {
  Request: 0b00,
  Indication: 0b01,
  SuccessResponse: 0b10,
  ErrorResponse: 0b11,
} as const;
export type MessageClass = (typeof MessageClass)[keyof typeof MessageClass];

/** STUN methods (IANA "STUN Methods"); TURN's live here too so that names print well. */
export const Method = {
  Binding: 0x001,
  Allocate: 0x003,
  Refresh: 0x004,
  Send: 0x006,
  Data: 0x007,
  CreatePermission: 0x008,
  ChannelBind: 0x009,
} as const;

/** Attribute type numbers (IANA "STUN Attributes"). */
export const AttrType = {
  // RFC 8489 section 18.3.1, comprehension-required
  MAPPED_ADDRESS: 0x0001,
  RESPONSE_ADDRESS: 0x0002, // RFC 3489
  CHANGE_REQUEST: 0x0003, // RFC 5780 (and RFC 3489)
  SOURCE_ADDRESS: 0x0004, // RFC 3489
  CHANGED_ADDRESS: 0x0005, // RFC 3489
  USERNAME: 0x0006,
  PASSWORD: 0x0007, // RFC 3489, reserved since RFC 5389
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REFLECTED_FROM: 0x000b, // RFC 3489
  REALM: 0x0014,
  NONCE: 0x0015,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  PASSWORD_ALGORITHM: 0x001d,
  USERHASH: 0x001e,
  XOR_MAPPED_ADDRESS: 0x0020,
  PADDING: 0x0026, // RFC 5780
  RESPONSE_PORT: 0x0027, // RFC 5780
  PRIORITY: 0x0024, // RFC 8445
  USE_CANDIDATE: 0x0025, // RFC 8445
  // RFC 8489 section 18.3.2, comprehension-optional
  PASSWORD_ALGORITHMS: 0x8002,
  ALTERNATE_DOMAIN: 0x8003,
  SOFTWARE: 0x8022,
  ALTERNATE_SERVER: 0x8023,
  FINGERPRINT: 0x8028,
  ICE_CONTROLLED: 0x8029, // RFC 8445
  ICE_CONTROLLING: 0x802a, // RFC 8445
  RESPONSE_ORIGIN: 0x802b, // RFC 5780
  OTHER_ADDRESS: 0x802c, // RFC 5780
} as const;

/** RFC 8489 section 14.8 and RFC 8656 section 19: error codes and their reason phrases. */
export const ErrorCode = {
  TryAlternate: 300,
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  UnknownAttribute: 420,
  AllocationMismatch: 437,
  StaleNonce: 438,
  AddressFamilyNotSupported: 440,
  WrongCredentials: 441,
  UnsupportedTransportProtocol: 442,
  PeerAddressFamilyMismatch: 443,
  AllocationQuotaReached: 486,
  RoleConflict: 487,
  ServerError: 500,
  InsufficientCapacity: 508,
} as const;

export const ERROR_REASONS: Readonly<Record<number, string>> = {
  300: 'Try Alternate',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  420: 'Unknown Attribute',
  437: 'Allocation Mismatch',
  438: 'Stale Nonce',
  440: 'Address Family not Supported',
  441: 'Wrong Credentials',
  442: 'Unsupported Transport Protocol',
  443: 'Peer Address Family Mismatch',
  486: 'Allocation Quota Reached',
  487: 'Role Conflict',
  500: 'Server Error',
  508: 'Insufficient Capacity',
};

/** RFC 8489 section 18.5: password algorithms. */
export const PasswordAlgorithm = {
  MD5: 0x0001,
  SHA256: 0x0002,
} as const;
export type PasswordAlgorithm = (typeof PasswordAlgorithm)[keyof typeof PasswordAlgorithm];

/** RFC 8489 section 5: encode a method and class into the 14-bit message type. */
export function messageType(method: number, cls: number): number {
  return (
    (method & 0x000f) |
    ((method & 0x0070) << 1) |
    ((method & 0x0f80) << 2) |
    ((cls & 0b01) << 4) |
    ((cls & 0b10) << 7)
  );
}

/** RFC 8489 section 5: the method bits of a message type. */
export function methodOf(type: number): number {
  return (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
}

/** RFC 8489 section 5: the class bits of a message type. */
export function classOf(type: number): MessageClass {
  return (((type >> 4) & 0b01) | ((type >> 7) & 0b10)) as MessageClass;
}

const METHOD_NAMES = new Map<number, string>(Object.entries(Method).map(([k, v]) => [v, k]));
const CLASS_NAMES = ['Request', 'Indication', 'SuccessResponse', 'ErrorResponse'];

export function methodName(method: number): string {
  return METHOD_NAMES.get(method) ?? `0x${method.toString(16).padStart(3, '0')}`;
}
export function className(cls: number): string {
  return CLASS_NAMES[cls & 3]!;
}

/** RFC 8489 section 14: types 0x0000-0x7FFF are comprehension-required. */
export function isComprehensionRequired(type: number): boolean {
  return type < 0x8000;
}
