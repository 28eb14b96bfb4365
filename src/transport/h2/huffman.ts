/**
 * HPACK's static Huffman code (RFC 7541 Appendix B), decoding only: the sidecar's encoder
 * writes plain literals (transport/h2/hpack.ts says why).
 *
 * The code is canonical, so it is fully given by each symbol's code length: the codes are
 * rebuilt from the lengths below at load time (and a test checks them against the RFC's
 * properties: the lengths fill the code space exactly, EOS is 30 one-bits). Decoding runs a
 * table-driven automaton four bits at a time, built once here, as nghttp2 does: no per-byte
 * branching on the tree and no allocation beyond the output.
 */

/** Code length in bits of each symbol 0..255, then EOS (256). */
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];
const EOS = 256;

/** The canonical codes (right-aligned), rebuilt from LENGTHS: by length, then by symbol. */
export const HUFFMAN_CODES: readonly (readonly [code: number, bits: number])[] = (() => {
  const order = LENGTHS.map((_, s) => s).sort((a, b) => (LENGTHS[a] as number) - (LENGTHS[b] as number) || a - b);
  const codes: [number, number][] = new Array<[number, number]>(LENGTHS.length);
  let code = 0;
  let prev = LENGTHS[order[0] as number] as number;
  for (let k = 0; k < order.length; k++) {
    const s = order[k] as number;
    const bits = LENGTHS[s] as number;
    if (k > 0) code = (code + 1) * 2 ** (bits - prev);
    prev = bits;
    codes[s] = [code, bits];
  }
  return codes;
})();

// The decoding automaton. States are the inner nodes of the code tree (root = 0). For each state
// and nibble: the next state, the symbol emitted on the way (at most one: no code is shorter
// than 5 bits), and whether the string may end there.
const F_EMIT = 1;
/** Ending here is valid padding: the bits since the last symbol are all ones and fewer than 8. */
const F_ACCEPT = 2;
const F_FAIL = 4;

interface Node {
  zero: number;
  one: number;
  /** Leaf: the symbol; inner node: -1. */
  sym: number;
  /** Inner node: its index among the inner nodes (its automaton state). */
  state: number;
  depth: number;
  allOnes: boolean;
}

/** Per (state << 4 | nibble): next state, symbol, flags, packed as state | sym << 8 | flags << 17. */
const AUTOMATON: Uint32Array = (() => {
  const nodes: Node[] = [{ zero: -1, one: -1, sym: -1, state: 0, depth: 0, allOnes: true }];
  let inner = 1;
  for (let s = 0; s < HUFFMAN_CODES.length; s++) {
    const [code, bits] = HUFFMAN_CODES[s] as readonly [number, number];
    let n = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) % 2;
      const cur = nodes[n] as Node;
      let next = bit === 0 ? cur.zero : cur.one;
      if (next === -1) {
        const leaf = i === 0;
        next = nodes.length;
        nodes.push({ zero: -1, one: -1, sym: leaf ? s : -1, state: leaf ? -1 : inner++, depth: cur.depth + 1, allOnes: cur.allOnes && bit === 1 });
        if (bit === 0) cur.zero = next;
        else cur.one = next;
      }
      n = next;
    }
  }
  const byState: Node[] = [];
  for (const node of nodes) if (node.sym === -1) byState[node.state] = node;
  const table = new Uint32Array(byState.length * 16);
  for (let st = 0; st < byState.length; st++) {
    for (let nib = 0; nib < 16; nib++) {
      let n = byState[st] as Node;
      let flags = 0;
      let sym = 0;
      for (let b = 3; b >= 0; b--) {
        const next = nodes[((nib >> b) & 1) === 0 ? n.zero : n.one] as Node;
        if (next.sym === EOS) {
          flags = F_FAIL;
          break;
        }
        if (next.sym >= 0) {
          flags |= F_EMIT;
          sym = next.sym;
          n = nodes[0] as Node;
        } else n = next;
      }
      if (flags !== F_FAIL && n.allOnes && n.depth < 8) flags |= F_ACCEPT;
      table[(st << 4) | nib] = n.state | (sym << 8) | (flags << 17);
    }
  }
  return table;
})();

/**
 * Decodes buf[start, end) into `out` from offset 0 and returns the decoded length, or -1 for a
 * malformed string (an EOS symbol, or padding that is not a prefix of EOS shorter than 8 bits:
 * RFC 7541 5.2). `out` must hold (end - start) * 8 / 5 bytes.
 */
export function huffmanDecode(buf: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let flags = F_ACCEPT;
  let o = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i] as number;
    let t = AUTOMATON[(state << 4) | (byte >> 4)] as number;
    flags = t >>> 17;
    if ((flags & F_FAIL) !== 0) return -1;
    if ((flags & F_EMIT) !== 0) out[o++] = (t >>> 8) & 0xff;
    state = t & 0xff;
    t = AUTOMATON[(state << 4) | (byte & 0xf)] as number;
    flags = t >>> 17;
    if ((flags & F_FAIL) !== 0) return -1;
    if ((flags & F_EMIT) !== 0) out[o++] = (t >>> 8) & 0xff;
    state = t & 0xff;
  }
  return (flags & F_ACCEPT) !== 0 ? o : -1;
}

/** For tests and tools: the Huffman encoding of `bytes` (the sidecar itself sends plain literals). */
export function huffmanEncode(bytes: Uint8Array): Buffer {
  const out: number[] = [];
  let acc = 0;
  let n = 0;
  for (const b of bytes) {
    const [code, bits] = HUFFMAN_CODES[b] as readonly [number, number];
    for (let i = bits - 1; i >= 0; i--) {
      acc = (acc << 1) | (Math.floor(code / 2 ** i) % 2);
      if (++n === 8) {
        out.push(acc);
        acc = 0;
        n = 0;
      }
    }
  }
  if (n > 0) out.push(((acc << (8 - n)) | ((1 << (8 - n)) - 1)) & 0xff);
  return Buffer.from(out);
}
