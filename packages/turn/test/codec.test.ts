import { describe, expect, it } from 'vitest';
import { type AttributeDef, MessageBuilder, MessageClass, Method, StunDecodeError, StunEncodeError, decodeMessage, stunRegistry } from '@natkit/stun';
import {
  TRANSPORT_UDP,
  TurnAttr,
  TurnAttrType,
  decodeChannelData,
  encodeChannelData,
  isChannelData,
  isValidChannel,
  turnRegistry,
  turnServerRegistry,
} from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

function roundTrip<T>(def: AttributeDef<T>, value: T): { value: T | undefined; length: number } {
  const bytes = new MessageBuilder(Method.Allocate, MessageClass.Request).add(def, value).encode();
  const msg = decodeMessage(bytes, { registry: turnRegistry }).validate();
  return { value: msg.get(def), length: msg.attributes[0]!.length };
}

describe('TURN attributes (RFC 8656 section 18)', () => {
  it('round-trip with their wire lengths', () => {
    expect(roundTrip(TurnAttr.ChannelNumber, 0x4001)).toEqual({ value: 0x4001, length: 4 });
    expect(roundTrip(TurnAttr.Lifetime, 3600)).toEqual({ value: 3600, length: 4 });
    expect(roundTrip(TurnAttr.RequestedTransport, TRANSPORT_UDP)).toEqual({ value: 17, length: 4 });
    expect(roundTrip(TurnAttr.RequestedAddressFamily, 'IPv6')).toEqual({ value: 'IPv6', length: 4 });
    expect(roundTrip(TurnAttr.AdditionalAddressFamily, 'IPv6')).toEqual({ value: 'IPv6', length: 4 });
    expect(roundTrip(TurnAttr.EvenPort, { reserve: true })).toEqual({ value: { reserve: true }, length: 1 });
    expect(roundTrip(TurnAttr.EvenPort, { reserve: false })).toEqual({ value: { reserve: false }, length: 1 });
    expect(roundTrip(TurnAttr.DontFragment, true)).toEqual({ value: true, length: 0 });
    expect(roundTrip(TurnAttr.ReservationToken, Buffer.from('0102030405060708', 'hex')).value).toEqual(Buffer.from('0102030405060708', 'hex'));
    expect(roundTrip(TurnAttr.Data, Buffer.from('abc')).value).toEqual(Buffer.from('abc'));
    expect(roundTrip(TurnAttr.Icmp, { type: 3, code: 4, data: 1400 }).value).toEqual({ type: 3, code: 4, data: 1400 });
    const peer = { family: 'IPv6', address: '2001:db8::7', port: 5000 } as const;
    expect(roundTrip(TurnAttr.XorPeerAddress, peer).value).toEqual(peer);
    expect(roundTrip(TurnAttr.XorRelayedAddress, { family: 'IPv4', address: '198.51.100.9', port: 49152 }).value).toEqual({ family: 'IPv4', address: '198.51.100.9', port: 49152 });
    expect(roundTrip(TurnAttr.AddressErrorCode, { family: 'IPv6', code: 440, reason: 'Address Family not Supported' }).value).toEqual({
      family: 'IPv6',
      code: 440,
      reason: 'Address Family not Supported',
    });
  });

  it('XOR-PEER-ADDRESS is XORed on the wire (not the plain address)', () => {
    const bytes = new MessageBuilder(Method.CreatePermission, MessageClass.Request).add(TurnAttr.XorPeerAddress, { family: 'IPv4', address: '192.0.2.1', port: 32853 }).encode();
    // RFC 5769's XOR-MAPPED-ADDRESS bytes for the same address: XOR-PEER-ADDRESS is coded alike.
    expect(bytes.subarray(24, 32).toString('hex')).toBe('0001a147e112a643');
  });

  it('ADDRESS-ERROR-CODE is checked like ERROR-CODE: range, UTF-8, reason length, family', () => {
    const bad = (hex: string) => {
      const b = new MessageBuilder(Method.Allocate, MessageClass.SuccessResponse).addRaw(TurnAttrType.ADDRESS_ERROR_CODE, Buffer.from(hex, 'hex')).encode();
      return thrown(StunDecodeError, () => decodeMessage(b, { registry: turnRegistry }).validate());
    };
    expect(bad('02000264')).toMatchObject({ code: 'BAD_VALUE', attribute: TurnAttrType.ADDRESS_ERROR_CODE }); // 2xx
    expect(bad('0200040aff')).toMatchObject({ code: 'BAD_UTF8' });
    expect(bad('03000428')).toMatchObject({ code: 'BAD_ADDRESS_FAMILY' });
    const b = new MessageBuilder(Method.Allocate, MessageClass.SuccessResponse);
    expect(thrown(StunEncodeError, () => b.add(TurnAttr.AddressErrorCode, { family: 'IPv6', code: 440, reason: 'x'.repeat(128) }))).toMatchObject({ code: 'VALUE_TOO_LONG' });
    expect(thrown(StunEncodeError, () => b.add(TurnAttr.AddressErrorCode, { family: 'IPv6', code: 200, reason: '' }))).toMatchObject({ code: 'BAD_VALUE' });
  });

  it('registries: TURN types are known to turnRegistry, unknown to STUN; the server leaves DONT-FRAGMENT unknown', () => {
    const bytes = new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, 17).add(TurnAttr.DontFragment, true).encode();
    expect(decodeMessage(bytes, { registry: stunRegistry }).unknownRequired).toEqual([TurnAttrType.REQUESTED_TRANSPORT, TurnAttrType.DONT_FRAGMENT]);
    expect(decodeMessage(bytes, { registry: turnRegistry }).unknownRequired).toEqual([]);
    expect(decodeMessage(bytes, { registry: turnServerRegistry }).unknownRequired).toEqual([TurnAttrType.DONT_FRAGMENT]);
  });
});

describe('ChannelData (RFC 8656 section 12.4)', () => {
  it('encodes the channel, the length and the data; pads to 4 only when asked (streams)', () => {
    expect(encodeChannelData(0x4000, Buffer.from('abcde')).toString('hex')).toBe('400000056162636465');
    expect(encodeChannelData(0x4fff, Buffer.from('abcde'), true).toString('hex')).toBe('4fff00056162636465000000');
    expect(isChannelData(encodeChannelData(0x4000, Buffer.alloc(0)))).toBe(true);
    expect(isChannelData(new MessageBuilder(Method.Binding, MessageClass.Request).encode())).toBe(false);
  });

  it('decodes to a view of the data, with or without stream padding', () => {
    const padded = encodeChannelData(0x4abc, Buffer.from('xyz'), true);
    const v = decodeChannelData(padded);
    expect(v.channel).toBe(0x4abc);
    expect(v.data.toString()).toBe('xyz');
    expect(v.data.buffer).toBe(padded.buffer);
  });

  it('carries what the wire format allows: channels 0x4000-0x7FFF (first bits 01); which may be bound is policy', () => {
    // RFC 5766's range is still a well-formed ChannelData message; RFC 8656 section 12
    // reserves 0x5000-0x7FFF, and the server (not the codec) refuses to bind them.
    expect(encodeChannelData(0x7fff, Buffer.from('a')).toString('hex')).toBe('7fff000161');
    expect(decodeChannelData(Buffer.from('5000000161', 'hex'))).toMatchObject({ channel: 0x5000, data: Buffer.from('a') });
    expect(isValidChannel(0x4fff)).toBe(true);
    expect(isValidChannel(0x5000)).toBe(false);
    expect(isValidChannel(0x3fff)).toBe(false);
  });

  it('refuses channels outside 0x4000-0x7FFF, short frames and lengths past the end', () => {
    expect(thrown(StunEncodeError, () => encodeChannelData(0x8000, Buffer.alloc(1)))).toMatchObject({ code: 'BAD_VALUE' });
    expect(thrown(StunEncodeError, () => encodeChannelData(0x3fff, Buffer.alloc(1)))).toMatchObject({ code: 'BAD_VALUE' });
    expect(thrown(StunDecodeError, () => decodeChannelData(Buffer.from('4000', 'hex')))).toMatchObject({ code: 'BAD_CHANNEL_DATA', offset: 0 });
    expect(thrown(StunDecodeError, () => decodeChannelData(Buffer.from('80000000', 'hex')))).toMatchObject({ code: 'BAD_CHANNEL_DATA', offset: 0 });
    expect(thrown(StunDecodeError, () => decodeChannelData(Buffer.from('3fff0000', 'hex')))).toMatchObject({ code: 'BAD_CHANNEL_DATA', offset: 0 });
    expect(thrown(StunDecodeError, () => decodeChannelData(Buffer.from('4000000561', 'hex')))).toMatchObject({ code: 'BAD_CHANNEL_DATA', offset: 2 });
    // More than 3 bytes after the data cannot be padding.
    expect(thrown(StunDecodeError, () => decodeChannelData(Buffer.from('40000001610000000000', 'hex')))).toMatchObject({ code: 'BAD_CHANNEL_DATA', offset: 5 });
  });
});
