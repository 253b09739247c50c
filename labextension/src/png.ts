/**
 * Read the text chunks (tEXt, zTXt, iTXt) of a PNG file.
 *
 * Pure code with no JupyterLab imports, so Jest runs it directly.
 */

/** Decompress zlib ("deflate" in the Compression Streams spec) data. */
export type Inflate = (data: Uint8Array) => Promise<Uint8Array>;

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/**
 * Inflate zlib data with the browser's (or Node's) `DecompressionStream`.
 */
export async function inflateZlib(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart])
    .stream()
    .pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function latin1(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    out += String.fromCharCode(bytes[i]);
  }
  return out;
}

function utf8(bytes: Uint8Array): string {
  return new TextDecoder('utf-8').decode(bytes);
}

/** Index of the first zero byte at or after `from`, or -1. */
function nul(data: Uint8Array, from: number): number {
  for (let i = from; i < data.length; i++) {
    if (data[i] === 0) {
      return i;
    }
  }
  return -1;
}

/**
 * Whether the bytes start with the PNG signature.
 */
export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= SIGNATURE.length && SIGNATURE.every((b, i) => bytes[i] === b);
}

/**
 * Read every text chunk of a PNG into a keyword → text map.
 *
 * tEXt is latin-1; zTXt is zlib-compressed latin-1; iTXt is UTF-8, compressed or
 * not. When a keyword repeats, the first chunk wins (as in Pillow). Chunks that are
 * malformed or fail to inflate are skipped; reading stops at IEND or at a truncated
 * chunk.
 *
 * @param bytes - the file's bytes.
 * @param inflate - zlib decompression (defaults to `DecompressionStream`).
 * @returns the text chunks, in file order.
 * @throws Error when the bytes are not a PNG.
 */
export async function readPngText(
  bytes: Uint8Array,
  inflate: Inflate = inflateZlib
): Promise<Map<string, string>> {
  if (!isPng(bytes)) {
    throw new Error('not a PNG file (bad signature)');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<string, string>();
  let pos = SIGNATURE.length;
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = latin1(bytes.subarray(pos + 4, pos + 8));
    const start = pos + 8;
    const end = start + length;
    if (end + 4 > bytes.length) {
      break;
    }
    const data = bytes.subarray(start, end);
    pos = end + 4; // skip the CRC
    if (type === 'IEND') {
      break;
    }
    try {
      const entry = await readChunk(type, data, inflate);
      if (entry && !out.has(entry[0])) {
        out.set(entry[0], entry[1]);
      }
    } catch {
      // A broken chunk does not hide the others.
    }
  }
  return out;
}

async function readChunk(
  type: string,
  data: Uint8Array,
  inflate: Inflate
): Promise<[string, string] | null> {
  if (type !== 'tEXt' && type !== 'zTXt' && type !== 'iTXt') {
    return null;
  }
  const k = nul(data, 0);
  if (k < 1) {
    return null;
  }
  const keyword = latin1(data.subarray(0, k));
  if (type === 'tEXt') {
    return [keyword, latin1(data.subarray(k + 1))];
  }
  if (type === 'zTXt') {
    // keyword \0 method(0 = zlib) compressed-text
    return [keyword, latin1(await inflate(data.subarray(k + 2)))];
  }
  // iTXt: keyword \0 flag method language \0 translated-keyword \0 text
  const compressed = data[k + 1] === 1;
  const lang = nul(data, k + 3);
  const translated = lang < 0 ? -1 : nul(data, lang + 1);
  if (translated < 0) {
    return null;
  }
  const text = data.subarray(translated + 1);
  return [keyword, utf8(compressed ? await inflate(text) : text)];
}
