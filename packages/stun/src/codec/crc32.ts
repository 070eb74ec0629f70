import * as zlib from 'node:zlib';

// CRC-32 (ISO 3309 / ITU-T V.42, the one RFC 8489 section 14.7 names). Node 20.15+ has
// zlib.crc32 in C; older Node 20 releases use this table version.
let table: Uint32Array | undefined;

function crc32Js(data: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

export const crc32: (data: Uint8Array) => number = native ? (d) => native(d) >>> 0 : crc32Js;
export { crc32Js as crc32Portable };
