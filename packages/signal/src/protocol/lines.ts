/**
 * Splits a byte stream into lines ending in LF (a CR before the LF is dropped, for `nc -C`
 * and telnet), each at most `maxLine` bytes without its ending. Bytes are held only until
 * their line is complete, so an endless line costs at most `maxLine` bytes: `push` reports
 * it as soon as it passes the limit, and the caller closes the connection.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private held = 0;
  readonly maxLine: number;

  constructor(maxLine: number) {
    this.maxLine = maxLine;
  }

  /** Bytes of an incomplete line held. */
  get pending(): number {
    return this.held;
  }

  /**
   * Feeds a chunk; calls `onLine` with each complete line (a view, without CR LF). Returns
   * false, and stops, when a line is longer than `maxLine` or `onLine` returns false.
   */
  push(chunk: Buffer, onLine: (line: Buffer) => boolean | void): boolean {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        const rest = chunk.length - start;
        if (rest > 0) {
          // The held part may end in the CR of a CR LF split across chunks: allow one byte.
          if (this.held + rest > this.maxLine + 1) return false;
          this.parts.push(start === 0 ? chunk : chunk.subarray(start));
          this.held += rest;
        }
        return true;
      }
      let line: Buffer;
      if (this.held > 0) {
        this.parts.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.parts);
        this.parts = [];
        this.held = 0;
      } else {
        line = chunk.subarray(start, nl);
      }
      if (line.length > 0 && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      if (line.length > this.maxLine) return false;
      start = nl + 1;
      if (onLine(line) === false) return false;
    }
  }
}

/**
 * For a byte stream forwarded as it is (plain mode): tracks the length of the current line
 * so that an over-long line is noticed without holding any bytes.
 */
export class LineMeter {
  private current = 0;
  private lastCr = false;
  readonly maxLine: number;

  constructor(maxLine: number) {
    this.maxLine = maxLine;
  }

  /** Counts a chunk; false when a line (without CR LF) is longer than maxLine. */
  push(chunk: Buffer): boolean {
    if (chunk.length === 0) return true;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) {
        this.current += chunk.length - start;
        this.lastCr = chunk[chunk.length - 1] === 13;
        // Allow one byte more: it may be the CR of a CR LF.
        return this.current <= this.maxLine + 1;
      }
      let len = this.current + (nl - start);
      if (len > 0 && (nl > start ? chunk[nl - 1] === 13 : this.lastCr)) len--;
      if (len > this.maxLine) return false;
      this.current = 0;
      this.lastCr = false;
      start = nl + 1;
    }
  }
}
