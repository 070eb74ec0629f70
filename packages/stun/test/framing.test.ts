import { describe, expect, it } from 'vitest';
import { MessageBuilder, MessageClass, Method, StreamFramer, StunDecodeError, decodeMessage } from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

const stun = (n: number) => new MessageBuilder(Method.Binding, MessageClass.Request).addRaw(0x8022, Buffer.alloc(n, 0x61)).encode();
const channelData = (len: number) => {
  const b = Buffer.alloc(4 + ((len + 3) & ~3));
  b.writeUInt16BE(0x4001, 0);
  b.writeUInt16BE(len, 2);
  b.fill(0x62, 4, 4 + len);
  return b;
};

function frames(framer: StreamFramer, chunks: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) framer.push(c, (f) => out.push(Buffer.from(f)));
  return out;
}

describe('StreamFramer (RFC 8489 section 6.2.2, RFC 8656 section 12.5)', () => {
  it('splits back-to-back STUN messages and ChannelData, whatever the chunking', () => {
    const parts = [stun(3), channelData(5), stun(0), channelData(0), channelData(8)];
    const stream = Buffer.concat(parts);
    // ChannelData frames come out without their stream padding.
    const want = parts.map((b) => ((b[0]! & 0xc0) === 0x40 ? b.subarray(0, 4 + b.readUInt16BE(2)) : b));
    for (const size of [1, 2, 3, 7, 24, stream.length]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size) chunks.push(stream.subarray(i, i + size));
      const framer = new StreamFramer({ acceptChannelData: true });
      const got = frames(framer, chunks);
      expect(got.map((b) => b.toString('hex')), `chunks of ${size}`).toEqual(want.map((b) => b.toString('hex')));
      expect(framer.pending).toBe(0);
    }
    expect(decodeMessage(want[0]!).attributes).toHaveLength(1);
  });

  it('holds a partial frame until the rest arrives', () => {
    const framer = new StreamFramer();
    const m = stun(9);
    expect(frames(framer, [m.subarray(0, 21)])).toEqual([]);
    expect(framer.pending).toBe(21);
    expect(frames(framer, [m.subarray(21)]).map((b) => b.toString('hex'))).toEqual([m.toString('hex')]);
  });

  it('throws on a stream out of step: ChannelData where only STUN is expected, or top bits 10/11', () => {
    expect(thrown(StunDecodeError, () => frames(new StreamFramer(), [channelData(4)]))).toMatchObject({ code: 'NOT_STUN' });
    expect(thrown(StunDecodeError, () => frames(new StreamFramer({ acceptChannelData: true }), [Buffer.from('80000000', 'hex')]))).toMatchObject({ code: 'NOT_STUN' });
  });

  it('refuses a frame larger than maxFrame before buffering it', () => {
    const framer = new StreamFramer({ maxFrame: 100 });
    expect(thrown(StunDecodeError, () => frames(framer, [stun(200).subarray(0, 4)]))).toMatchObject({ code: 'BAD_LENGTH' });
  });
});
