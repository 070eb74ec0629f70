import {
  type AttributeDef,
  type AttributeRegistry,
  StunDecodeError,
  StunEncodeError,
  type ErrorCodeValue,
  addressAttribute,
  decodeErrorNumber,
  errorNumberSize,
  stunRegistry,
  u32Attribute,
  writeErrorNumber,
} from '@natkit/stun';

/** RFC 8656 section 18 (and RFC 6156): TURN attribute types. */
export const TurnAttrType = {
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_ADDRESS_FAMILY: 0x0017,
  EVEN_PORT: 0x0018,
  REQUESTED_TRANSPORT: 0x0019,
  DONT_FRAGMENT: 0x001a,
  RESERVATION_TOKEN: 0x0022,
  ADDITIONAL_ADDRESS_FAMILY: 0x8000,
  ADDRESS_ERROR_CODE: 0x8001,
  ICMP: 0x8004,
} as const;

/** RFC 8656 section 18.8 / 18.11: address family codes. */
export const AddressFamily = { IPv4: 0x01, IPv6: 0x02 } as const;
/** IANA protocol number for UDP, the only REQUESTED-TRANSPORT RFC 8656 relays. */
export const TRANSPORT_UDP = 17;

/** RFC 8656 section 18.1: a 16-bit channel number then 16 bits RFFU. */
const ChannelNumber: AttributeDef<number> = {
  type: TurnAttrType.CHANNEL_NUMBER,
  name: 'CHANNEL-NUMBER',
  lengths: { min: 4, max: 4 },
  decode: (v) => v.readUInt16BE(0),
  size(value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new StunEncodeError('BAD_VALUE', `CHANNEL-NUMBER ${value} is not 16 bits`);
    return 4;
  },
  write(value, out, at) {
    out.writeUInt16BE(value, at);
    out.writeUInt16BE(0, at + 2);
  },
};

/** RFC 8656 section 18.2: seconds, 32 bits. */
const Lifetime = u32Attribute(TurnAttrType.LIFETIME, 'LIFETIME');

/** RFC 8656 section 18.4: the application data, any length. */
const Data: AttributeDef<Buffer> = {
  type: TurnAttrType.DATA,
  name: 'DATA',
  decode: (v) => v,
  size: (value) => value.length,
  write(value, out, at) {
    value.copy(out, at);
  },
};

function familyAttribute(type: number, name: string): AttributeDef<'IPv4' | 'IPv6'> {
  return {
    type,
    name,
    lengths: { min: 4, max: 4 },
    decode(v, _h, offset) {
      if (v[0] === AddressFamily.IPv4) return 'IPv4';
      if (v[0] === AddressFamily.IPv6) return 'IPv6';
      throw new StunDecodeError('BAD_ADDRESS_FAMILY', `${name} has unknown family 0x${v[0]!.toString(16)}`, offset, type);
    },
    size: () => 4,
    write(value, out, at) {
      out[at] = value === 'IPv6' ? AddressFamily.IPv6 : AddressFamily.IPv4;
      out[at + 1] = 0;
      out.writeUInt16BE(0, at + 2);
    },
  };
}

/** RFC 8656 section 18.6: one byte, the R (reserve next port) flag in its top bit. */
const EvenPort: AttributeDef<{ reserve: boolean }> = {
  type: TurnAttrType.EVEN_PORT,
  name: 'EVEN-PORT',
  // RFC 8656 defines 1 byte; RFC 5766 implementations send 4 (the byte plus padding in the length).
  lengths: { min: 1, max: 4 },
  decode: (v) => ({ reserve: (v[0]! & 0x80) !== 0 }),
  size: () => 1,
  write(value, out, at) {
    out[at] = value.reserve ? 0x80 : 0;
  },
};

/** RFC 8656 section 18.7: the protocol number, then 3 bytes RFFU. */
const RequestedTransport: AttributeDef<number> = {
  type: TurnAttrType.REQUESTED_TRANSPORT,
  name: 'REQUESTED-TRANSPORT',
  lengths: { min: 4, max: 4 },
  decode: (v) => v[0]!,
  size(value) {
    if (!Number.isInteger(value) || value < 0 || value > 255) throw new StunEncodeError('BAD_VALUE', `REQUESTED-TRANSPORT ${value} is not a protocol number`);
    return 4;
  },
  write(value, out, at) {
    out[at] = value;
    out[at + 1] = 0;
    out.writeUInt16BE(0, at + 2);
  },
};

/** RFC 8656 section 18.8: flag, no value. */
const DontFragment: AttributeDef<true> = {
  type: TurnAttrType.DONT_FRAGMENT,
  name: 'DONT-FRAGMENT',
  lengths: { min: 0, max: 0 },
  decode: () => true,
  size: () => 0,
  write() {},
};

/** RFC 8656 section 18.9: 8 opaque bytes. */
const ReservationToken: AttributeDef<Buffer> = {
  type: TurnAttrType.RESERVATION_TOKEN,
  name: 'RESERVATION-TOKEN',
  lengths: { min: 8, max: 8 },
  decode: (v) => v,
  size(value) {
    if (value.length !== 8) throw new StunEncodeError('BAD_VALUE', 'RESERVATION-TOKEN is 8 bytes');
    return 8;
  },
  write(value, out, at) {
    value.copy(out, at);
  },
};

export interface AddressErrorValue extends ErrorCodeValue {
  family: 'IPv4' | 'IPv6';
}

/** RFC 8656 section 18.12: the family, a reserved byte, then ERROR-CODE's number and reason. */
const AddressErrorCode: AttributeDef<AddressErrorValue> = {
  type: TurnAttrType.ADDRESS_ERROR_CODE,
  name: 'ADDRESS-ERROR-CODE',
  lengths: { min: 4, max: 4 + 763 },
  decode(v, _h, offset) {
    const family = v[0] === AddressFamily.IPv6 ? 'IPv6' : v[0] === AddressFamily.IPv4 ? 'IPv4' : undefined;
    if (!family) throw new StunDecodeError('BAD_ADDRESS_FAMILY', 'ADDRESS-ERROR-CODE has an unknown family', offset, TurnAttrType.ADDRESS_ERROR_CODE);
    return { family, ...decodeErrorNumber(v, offset, TurnAttrType.ADDRESS_ERROR_CODE, 'ADDRESS-ERROR-CODE') };
  },
  size: (value) => errorNumberSize(value, 'ADDRESS-ERROR-CODE'),
  write(value, out, at) {
    out[at] = value.family === 'IPv6' ? AddressFamily.IPv6 : AddressFamily.IPv4;
    out[at + 1] = 0;
    writeErrorNumber(value, out, at);
  },
};

/** RFC 8656 section 18.13: ICMP type and code, and error data. */
const Icmp: AttributeDef<{ type: number; code: number; data: number }> = {
  type: TurnAttrType.ICMP,
  name: 'ICMP',
  lengths: { min: 8, max: 8 },
  decode: (v) => ({ type: v[2]!, code: v[3]!, data: v.readUInt32BE(4) }),
  size: () => 8,
  write(value, out, at) {
    out.writeUInt16BE(0, at);
    out[at + 2] = value.type;
    out[at + 3] = value.code;
    out.writeUInt32BE(value.data >>> 0, at + 4);
  },
};

export const TurnAttr = {
  ChannelNumber,
  Lifetime,
  XorPeerAddress: addressAttribute(TurnAttrType.XOR_PEER_ADDRESS, 'XOR-PEER-ADDRESS', true),
  Data,
  XorRelayedAddress: addressAttribute(TurnAttrType.XOR_RELAYED_ADDRESS, 'XOR-RELAYED-ADDRESS', true),
  RequestedAddressFamily: familyAttribute(TurnAttrType.REQUESTED_ADDRESS_FAMILY, 'REQUESTED-ADDRESS-FAMILY'),
  AdditionalAddressFamily: familyAttribute(TurnAttrType.ADDITIONAL_ADDRESS_FAMILY, 'ADDITIONAL-ADDRESS-FAMILY'),
  EvenPort,
  RequestedTransport,
  DontFragment,
  ReservationToken,
  AddressErrorCode,
  Icmp,
} as const;

/**
 * STUN's registry plus TURN's attributes. DONT-FRAGMENT is left out of the server's
 * registry on purpose (see `turnServerRegistry`).
 */
export const turnRegistry: AttributeRegistry = stunRegistry.extend(Object.values(TurnAttr));

/**
 * What the relay server understands. Node cannot set the DF bit on a datagram, so the
 * server cannot honour DONT-FRAGMENT; RFC 8656 section 7.2 (step 4) says such a server
 * treats it as an unknown comprehension-required attribute, which answers 420.
 */
export const turnServerRegistry: AttributeRegistry = stunRegistry.extend(
  Object.values(TurnAttr).filter((d) => d.type !== TurnAttrType.DONT_FRAGMENT),
);
