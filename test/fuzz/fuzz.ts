/**
 * Shared pieces of the seeded fuzz (test/fuzz/): the seed and run counts, a byte-mutation
 * arbitrary, and a model HPACK encoder that uses every representation a client may (indexed,
 * the three literal kinds, name references into both tables, Huffman, table size updates), so the
 * fuzz starts from valid header blocks and mutates them.
 *
 * Seed: FUZZ_SEED if set, else a fresh random one per test file. Each property's title and
 * fast-check's failure message carry it (with the counterexample's path), so a failure replays
 * with `FUZZ_SEED=<seed> npx vitest run test/fuzz` (README, Development). FUZZ_RUNS=N multiplies
 * every property's run count by N for longer local fuzzing.
 */
import fc from 'fast-check';
import { STATIC_TABLE } from '../../src/transport/h2/hpack.js';
import { huffmanEncode } from '../../src/transport/h2/huffman.js';
import { hpackInt } from '../adversarial/h2frames.js';

function envInt(name: string): number | null {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return null;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

export const FUZZ_SEED: number = envInt('FUZZ_SEED') ?? (Math.random() * 2 ** 31) | 0;
/** FUZZ_RUNS (default 1): the factor on every property's run count and time bound. */
export const FUZZ_FACTOR: number = Math.max(1, envInt('FUZZ_RUNS') ?? 1);
/** FUZZ_PATH: with FUZZ_SEED, replays one counterexample directly (fast-check prints both). */
const FUZZ_PATH = process.env['FUZZ_PATH'];

/** A title suffix that names the seed, so even a run that hangs says how to replay it. */
export const SEED_TAG = `FUZZ_SEED=${FUZZ_SEED}`;

/**
 * fast-check parameters for a property run `baseRuns` times by default. Socket properties pass
 * `shrink: false`: each shrinking step is a new connection, and the unshrunk input with its seed
 * is enough to replay.
 */
export function fuzzParams<T>(baseRuns: number, opts: { shrink?: boolean } = {}): fc.Parameters<T> {
  return {
    seed: FUZZ_SEED,
    numRuns: baseRuns * FUZZ_FACTOR,
    ...(FUZZ_PATH !== undefined && FUZZ_PATH !== '' ? { path: FUZZ_PATH } : {}),
    endOnFailure: opts.shrink === false,
    // The assertion that failed, in the message vitest prints, next to seed and path.
    includeErrorInReport: true,
  };
}

/** A vitest timeout for a property whose default runs take about `baseMs` on a busy machine. */
export function fuzzTimeout(baseMs: number): number {
  return baseMs * FUZZ_FACTOR + 60_000;
}

// ---------------------------------------------------------------------------------------------
// Byte mutations

export type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly byte: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly op: 'delete'; readonly at: number; readonly len: number }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'repeat'; readonly at: number; readonly len: number };

/** Bytes that sit on the boundaries of the formats fuzzed here (prefix masks, CR, LF, NUL, SP, HTAB, ':'). */
const EDGE_BYTES = [0x00, 0x01, 0x09, 0x0a, 0x0d, 0x10, 0x1f, 0x20, 0x3a, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];
export const edgeByte = (): fc.Arbitrary<number> => fc.oneof(fc.constantFrom(...EDGE_BYTES), fc.integer({ min: 0, max: 255 }));

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), byte: edgeByte() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }),
);

/** Applies the mutations in order; positions wrap around the current length. */
export function mutate(input: Uint8Array, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    switch (m.op) {
      case 'flip':
        if (b.length > 0) b[at] = (b[at] as number) ^ (1 << m.bit);
        break;
      case 'set':
        if (b.length > 0) b[at] = m.byte;
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'repeat':
        b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)]);
        break;
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// A model HPACK encoder (RFC 7541), with its own copy of the dynamic table

export type Header = readonly [name: string, value: string];

/** How one field is written. `indexed` falls back to a literal with indexing when no entry matches. */
export interface FieldRep {
  readonly kind: 'indexed' | 'incremental' | 'without' | 'never';
  /** Refer to the name by index when one of the tables has it. */
  readonly nameRef: boolean;
  readonly huffName: boolean;
  readonly huffValue: boolean;
}

export const fieldRepArb: fc.Arbitrary<FieldRep> = fc.record({
  kind: fc.constantFrom('indexed', 'incremental', 'without', 'never'),
  nameRef: fc.boolean(),
  huffName: fc.boolean(),
  huffValue: fc.boolean(),
});

const ENTRY_OVERHEAD = 32;

export class ModelEncoder {
  /** Newest first. */
  readonly entries: Header[] = [];
  size = 0;
  max: number;

  constructor(tableSize = 4096) {
    this.max = tableSize;
  }

  #evict(room: number): void {
    while (this.entries.length > 0 && this.size + room > this.max) {
      const [n, v] = this.entries.pop() as Header;
      this.size -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.#evict(size);
    if (size > this.max) return;
    this.entries.unshift([name, value]);
    this.size += size;
  }

  #find(name: string, value: string | null): number {
    for (let i = 1; i < STATIC_TABLE.length; i++) {
      const e = STATIC_TABLE[i] as Header;
      if (e[0] === name && (value === null || e[1] === value)) return i;
    }
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i] as Header;
      if (e[0] === name && (value === null || e[1] === value)) return STATIC_TABLE.length + i;
    }
    return 0;
  }

  /** One header block; `sizeUpdates` (each at most the decoder's limit) go first, as 4.2 requires. */
  block(headers: readonly Header[], reps: readonly FieldRep[], sizeUpdates: readonly number[] = []): Buffer {
    const parts: Buffer[] = [];
    for (const s of sizeUpdates) {
      this.max = s;
      this.#evict(0);
      parts.push(hpackInt(s, 5, 0x20));
    }
    headers.forEach(([name, value], i) => {
      const rep = reps[i % Math.max(1, reps.length)] ?? { kind: 'without', nameRef: false, huffName: false, huffValue: false };
      if (rep.kind === 'indexed') {
        const idx = this.#find(name, value);
        if (idx !== 0) {
          parts.push(hpackInt(idx, 7, 0x80));
          return;
        }
      }
      const kind = rep.kind === 'indexed' ? 'incremental' : rep.kind;
      const [prefix, first] = kind === 'incremental' ? [6, 0x40] : kind === 'never' ? [4, 0x10] : [4, 0x00];
      const nameIdx = rep.nameRef ? this.#find(name, null) : 0;
      parts.push(hpackInt(nameIdx, prefix, first));
      if (nameIdx === 0) parts.push(hpackStr(name, rep.huffName));
      parts.push(hpackStr(value, rep.huffValue));
      if (kind === 'incremental') this.#add(name, value);
    });
    return Buffer.concat(parts);
  }
}

function hpackStr(s: string, huffman: boolean): Buffer {
  const raw = Buffer.from(s, 'latin1');
  const bytes = huffman ? huffmanEncode(raw) : raw;
  return Buffer.concat([hpackInt(bytes.length, 7, huffman ? 0x80 : 0), bytes]);
}

/** Names of the static table (so name references hit), and tokens of our own. */
export const nameArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...STATIC_TABLE.slice(1).map((e) => e[0])),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
);

/** Any latin1 string (HPACK carries octets), often a static-table value so indexed fields hit. */
export const valueArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', 'GET', 'POST', '/', '/index.html', 'https', 'gzip, deflate', '200'),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.string({ maxLength: 20 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
);

export const headerListArb = (maxLength = 12): fc.Arbitrary<Header[]> =>
  fc.array(fc.tuple(nameArb, valueArb), { maxLength }).chain((list) =>
    // Repeats of earlier fields, so the dynamic table gets hits.
    fc.array(fc.nat(), { maxLength: 4 }).map((picks) => (list.length === 0 ? list : [...list, ...picks.map((p) => list[p % list.length] as Header)])),
  );
