import { StunDecodeError } from '../errors.js';

/**
 * Splits a TCP/TLS byte stream into STUN messages and TURN ChannelData frames.
 * RFC 8489 section 6.2.2: STUN over a stream is self-delimiting by the header's length.
 * RFC 8656 section 12.5: a ChannelData frame (first two bits 01) has a 4-byte header and,
 * over a stream, is padded to a multiple of 4; the padding is not in its length field.
 * Any other first two bits mean the stream is out of step: `push` throws and the caller
 * closes the connection.
 */
export class StreamFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Largest frame accepted; bigger length fields are treated as a broken stream. */
  readonly maxFrame: number;
  readonly acceptChannelData: boolean;

  constructor(options: { maxFrame?: number; acceptChannelData?: boolean } = {}) {
    this.maxFrame = options.maxFrame ?? 20 + 0xffff;
    this.acceptChannelData = options.acceptChannelData ?? false;
  }

  /** Bytes held while waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
  }

  /** Feeds a chunk; calls `onFrame` for each complete frame (a view; copy to keep it). */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 4) return;
      const head = this.peek(4);
      const kind = head[0]! >> 6;
      const len = (head[2]! << 8) | head[3]!;
      let total: number;
      if (kind === 0) {
        total = 20 + len;
      } else if (kind === 1 && this.acceptChannelData) {
        total = 4 + ((len + 3) & ~3);
      } else {
        throw new StunDecodeError('NOT_STUN', `stream out of step: first byte 0x${head[0]!.toString(16)} starts neither STUN nor ChannelData`, 0);
      }
      if (total > this.maxFrame) throw new StunDecodeError('BAD_LENGTH', `frame of ${total} bytes is larger than ${this.maxFrame}`, 2);
      if (this.buffered < total) return;
      const frame = this.take(total);
      // A ChannelData frame is handed over without its stream padding.
      onFrame(kind === 1 ? frame.subarray(0, 4 + len) : frame);
    }
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    return Buffer.concat(this.chunks, Math.min(this.buffered, Math.max(n, first.length))).subarray(0, n);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    this.buffered -= n;
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const all = Buffer.concat(this.chunks);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    return all.subarray(0, n);
  }

  reset(): void {
    this.chunks = [];
    this.buffered = 0;
  }
}
