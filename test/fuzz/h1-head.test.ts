/**
 * Seeded fuzz of the HTTP/1.1 request head: http1/llhttp.ts (llhttp as the sidecar runs it) on
 * its own, then transport/h1/ behind a real sidecar over mTLS.
 *
 * Each case is a request as a client means it — method, target, header fields, and a body framed
 * by Content-Length or chunked that carries a second, smuggled request — written out with zero or
 * more "dirty" constructs (CR, LF or NUL in a name or value, bare LF, obs-fold, space before the
 * colon, duplicate or signed Content-Length, Content-Length with Transfer-Encoding, Transfer-Encoding
 * spellings, a missing or second Host, oversized heads), and sometimes raw byte mutations.
 *
 * Invariants: the parser never throws and parses the same however the bytes are cut into reads;
 * a request is either refused (400/431, the connection closed, nothing forwarded) or reaches the
 * app exactly as meant (method, target, fields, body); never two requests from one (the smuggled
 * one never reaches the app); a well-behaved request after it on the same connection is served.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HPE_OK, HeaderPairs, RequestParser } from '../../src/http1/llhttp.js';
import type { ParserEvents } from '../../src/http1/llhttp.js';
import { orders, parseAll, rawConnect, startTarget } from '../adversarial/harness.js';
import type { Target } from '../adversarial/harness.js';
import { SEED_TAG, fuzzParams, fuzzTimeout, mutate, mutationArb } from './fuzz.js';
import type { Mutation } from './fuzz.js';

// ---- what a case sends ---------------------------------------------------------------------------

/** Constructs a client may write, each either malformed (RFC 9112) or ambiguous. */
const DIRT = [
  'cr-in-name', 'lf-in-value', 'nul-in-value', 'cr-in-value', 'bare-lf', 'obs-fold', 'space-before-colon', 'empty-name',
  'cl-dup-same', 'cl-dup-other', 'cl-plus', 'cl-hex', 'cl-list', 'cl-ows', 'cl-and-te', 'te-gzip', 'te-xchunked',
  'te-quoted', 'te-chunked-gzip', 'te-upper', 'te-dup', 'host-dup', 'no-host', 'big-head', 'many-fields', 'version-10',
  'version-2', 'lower-method', 'absolute-target', 'space-in-target', 'ctl-in-value', 'obs-text-value', 'tab-in-value',
  'te-chunked-twice', 'chunk-ext', 'chunk-upper', 'chunk-zeros', 'chunk-lf', 'chunk-trailer', 'upgrade', 'expect-continue',
  'leading-crlf', 'double-space', 'te-gzip-chunked', 'te-empty',
] as const;
type Dirt = (typeof DIRT)[number];

/**
 * Constructs RFC 9112 calls malformed, or that the sidecar refuses on purpose (docs/security.md,
 * "Parsing"): each of these must be refused. The others may go either way, but if accepted the
 * request must reach the app as meant.
 */
const MUST_REFUSE: ReadonlySet<Dirt> = new Set<Dirt>([
  'cr-in-name', 'lf-in-value', 'nul-in-value', 'cr-in-value', 'bare-lf', 'obs-fold', 'space-before-colon', 'empty-name',
  'cl-dup-other', 'cl-plus', 'cl-hex', 'cl-and-te', 'te-gzip', 'te-xchunked', 'te-quoted', 'te-chunked-gzip', 'host-dup',
  'no-host', 'big-head', 'many-fields', 'version-2', 'space-in-target', 'chunk-lf', 'te-dup', 'te-chunked-twice',
]);

/** Malformed framing inside the body: seen only after the head went on. */
const BODY_DIRT: ReadonlySet<Dirt> = new Set<Dirt>(['chunk-lf']);

interface H1Spec {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Appended to the case's unique path. */
  readonly suffix: string;
  readonly fields: [string, string][];
  readonly framing: 'none' | 'length' | 'chunked';
  readonly body: string;
  readonly chunks: number[];
  readonly dirt: readonly Dirt[];
  readonly mutations: readonly Mutation[];
}

const fieldArb: fc.Arbitrary<[string, string]> = fc.tuple(
  fc.stringMatching(/^x-[a-z0-9-]{1,10}$/),
  fc.oneof(
    { weight: 6, arbitrary: fc.stringMatching(/^[!-~]([ -~]{0,24}[!-~])?$/) },
    { weight: 1, arbitrary: fc.constant('') },
  ),
);

const specArb: fc.Arbitrary<H1Spec> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
  suffix: fc.constantFrom('', '?q=1', '/a', '?a=%20b'),
  // Distinct names: the app's node:http joins repeats, which would blur the comparison.
  fields: fc.uniqueArray(fieldArb, { maxLength: 6, selector: (f) => f[0] }),
  framing: fc.constantFrom('none', 'length', 'chunked'),
  body: fc.string({ maxLength: 40 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
  chunks: fc.array(fc.integer({ min: 1, max: 16 }), { maxLength: 3 }),
  dirt: fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 3, arbitrary: fc.uniqueArray(fc.constantFrom(...DIRT), { minLength: 1, maxLength: 2 }) }),
  mutations: fc.oneof({ weight: 8, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) }),
});

/** The request smuggled in every body: it reaches the app only if someone reads the framing differently. */
const SMUGGLED = 'GET /orders/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n';

interface Built {
  readonly bytes: Buffer;
  /** What the client means: null when it wrote something it cannot mean (a raw mutation). */
  readonly meant: { method: string; target: string; fields: [string, string][]; body: string } | null;
  readonly mustRefuse: boolean;
  /** Refused for its head: before anything is forwarded. */
  readonly headMustRefuse: boolean;
  /** The dirt that applies to this request's framing. */
  readonly applied: readonly Dirt[];
}

function build(spec: H1Spec, path: string): Built {
  const target = path + spec.suffix;
  const dirt = new Set(spec.dirt);
  const body = spec.framing === 'none' ? '' : spec.body + SMUGGLED;
  const method = dirt.has('lower-method') ? spec.method.toLowerCase() : spec.method;
  let line = `${method} ${dirt.has('absolute-target') ? `https://localhost${target}` : dirt.has('space-in-target') ? `${target} x` : target} `;
  line += dirt.has('version-10') ? 'HTTP/1.0' : dirt.has('version-2') ? 'HTTP/2.0' : 'HTTP/1.1';
  const lines: string[] = [line];
  if (!dirt.has('no-host')) lines.push('Host: localhost');
  if (dirt.has('host-dup')) lines.push('Host: localhost');
  const fields = spec.fields.map(([n, v]) => [n, v] as [string, string]);
  for (const [n, v] of fields) lines.push(`${n}: ${v}`);
  // Framing as the client means it, then the dirt that makes it ambiguous or malformed.
  let framed = '';
  if (spec.framing === 'length') {
    const len = Buffer.byteLength(body, 'latin1');
    lines.push(`Content-Length: ${dirt.has('cl-plus') ? '+' : ''}${dirt.has('cl-hex') ? `0x${len.toString(16)}` : String(len)}${dirt.has('cl-ows') ? ' ' : ''}${dirt.has('cl-list') ? `, ${len}` : ''}`);
    if (dirt.has('cl-dup-same')) lines.push(`Content-Length: ${len}`);
    if (dirt.has('cl-dup-other')) lines.push(`Content-Length: ${len + 1}`);
    if (dirt.has('cl-and-te')) lines.push('Transfer-Encoding: chunked');
    framed = body;
  } else if (spec.framing === 'chunked') {
    const te = dirt.has('te-gzip') ? 'gzip' : dirt.has('te-xchunked') ? 'xchunked' : dirt.has('te-quoted') ? '"chunked"' : dirt.has('te-chunked-gzip') ? 'chunked, gzip' : dirt.has('te-upper') ? 'Chunked' : dirt.has('te-chunked-twice') ? 'chunked, chunked' : dirt.has('te-gzip-chunked') ? 'gzip, chunked' : 'chunked';
    if (dirt.has('te-empty')) lines.push('Transfer-Encoding: ');
    lines.push(`Transfer-Encoding: ${te}`);
    if (dirt.has('te-dup')) lines.push('Transfer-Encoding: chunked');
    if (dirt.has('cl-and-te')) lines.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
    // Chunk-size lines as the dirt asks: extensions, upper-case hex, leading zeros, a bare LF.
    const size = (n: number): string => {
      let hex = n.toString(16);
      if (dirt.has('chunk-upper')) hex = hex.toUpperCase();
      if (dirt.has('chunk-zeros')) hex = `000${hex}`;
      return `${hex}${dirt.has('chunk-ext') ? ';ext="v"' : ''}${dirt.has('chunk-lf') ? '\n' : '\r\n'}`;
    };
    let at = 0;
    const pieces = [...spec.chunks];
    while (at < body.length) {
      const part = body.slice(at, at + (pieces.shift() ?? body.length));
      framed += `${size(part.length)}${part}\r\n`;
      at += part.length;
    }
    framed += `0\r\n${dirt.has('chunk-trailer') ? 'x-trailer: 1\r\n' : ''}\r\n`;
  }
  if (dirt.has('cr-in-name')) lines.push('x-c\rr: 1');
  if (dirt.has('lf-in-value')) lines.push('x-lf: a\nb');
  if (dirt.has('nul-in-value')) lines.push('x-nul: a\0b');
  if (dirt.has('cr-in-value')) lines.push('x-cr: a\rb');
  if (dirt.has('ctl-in-value')) lines.push('x-ctl: a\x01b');
  if (dirt.has('obs-text-value')) lines.push('x-obs: caf\xe9');
  if (dirt.has('tab-in-value')) lines.push('x-tab: a\tb');
  if (dirt.has('upgrade')) lines.push('Connection: Upgrade', 'Upgrade: websocket');
  if (dirt.has('expect-continue')) lines.push('Expect: 100-continue');
  if (dirt.has('space-before-colon')) lines.push('x-sp : 1');
  if (dirt.has('empty-name')) lines.push(': 1');
  if (dirt.has('obs-fold')) lines.push('x-fold: a\r\n b');
  if (dirt.has('big-head')) lines.push(`x-big: ${'b'.repeat(9000)}`);
  if (dirt.has('many-fields')) for (let i = 0; i < 60; i++) lines.push(`x-many-${i}: 1`);
  // A bare LF ends the request line when asked for.
  let head = `${dirt.has('leading-crlf') ? '\r\n' : ''}${lines.map((l, i) => l + (i === 0 && dirt.has('bare-lf') ? '\n' : '\r\n')).join('')}\r\n`;
  if (dirt.has('double-space')) head = head.replace(' ', '  ');
  let bytes: Buffer = Buffer.from(head + framed, 'latin1');
  if (spec.mutations.length > 0) bytes = mutate(bytes, spec.mutations);
  // Framing dirt only applies to a request with that framing.
  const applied = [...dirt].filter((d) =>
    d.startsWith('cl-') && d !== 'cl-and-te'
      ? spec.framing === 'length'
      : d.startsWith('te-') || d.startsWith('chunk-')
        ? spec.framing === 'chunked'
        : d === 'cl-and-te'
          ? spec.framing !== 'none'
          : // Of two request-line variants the first one wins; "no Host" and "a second Host"
            // together write exactly one Host line, a well-formed head.
            (d !== 'version-2' || !dirt.has('version-10')) &&
            (d !== 'space-in-target' || !dirt.has('absolute-target')) &&
            !((d === 'host-dup' || d === 'no-host') && dirt.has('host-dup') && dirt.has('no-host')),
  );
  // HTTP/1.0 may leave out Host (RFC 9112 3.2 requires it of HTTP/1.1).
  const headMustRefuse = applied.some((d) => MUST_REFUSE.has(d) && !BODY_DIRT.has(d) && !(d === 'no-host' && dirt.has('version-10')));
  const mustRefuse = headMustRefuse || applied.some((d) => BODY_DIRT.has(d));
  const meantFields = fields.map(([n, v]) => [n, v] as [string, string]);
  if (dirt.has('obs-text-value')) meantFields.push(['x-obs', 'caf\xe9']);
  if (dirt.has('ctl-in-value')) meantFields.push(['x-ctl', 'a\x01b']);
  if (dirt.has('tab-in-value')) meantFields.push(['x-tab', 'a\tb']);
  return {
    bytes,
    meant: spec.mutations.length > 0 ? null : { method: spec.method, target, fields: meantFields, body },
    mustRefuse,
    headMustRefuse,
    applied,
  };
}

// ---- the parser on its own -------------------------------------------------------------------------

interface Message {
  method: string;
  url: string;
  headers: string[];
  body: string;
  complete: boolean;
}

/** Runs llhttp over `parts` (the reads), as transport/h1/connection.ts does; stops at the first error or upgrade. */
function parse(parts: readonly Buffer[]): { messages: Message[]; rc: number } {
  const messages: Message[] = [];
  const pairs = new HeaderPairs();
  let url = '';
  let cur: Message | null = null;
  const ev: ParserEvents = {
    onMessageBegin: () => {
      url = '';
      pairs.take();
      return 0;
    },
    onUrl: (p) => {
      url += p;
      return 0;
    },
    onHeaderField: (p) => {
      pairs.name(p);
      return 0;
    },
    onHeaderValue: (p) => {
      pairs.value(p);
      return 0;
    },
    onHeadersComplete: () => {
      cur = { method: parser.method(), url, headers: pairs.take(), body: '', complete: false };
      messages.push(cur);
      return 0;
    },
    onBody: (chunk) => {
      if (cur !== null) cur.body += chunk.toString('latin1');
      return 0;
    },
    onMessageComplete: () => {
      if (cur !== null) cur.complete = true;
      return 0;
    },
  };
  const parser = new RequestParser(ev);
  let rc = HPE_OK;
  try {
    for (const part of parts) {
      rc = parser.execute(part);
      if (rc !== HPE_OK) break;
    }
  } finally {
    parser.free();
  }
  return { messages, rc };
}

function cut(bytes: Buffer, at: readonly number[]): Buffer[] {
  const points = [...new Set(at.map((x) => x % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    if (p > prev) parts.push(bytes.subarray(prev, p));
    prev = Math.max(prev, p);
  }
  return parts;
}

describe(`HTTP/1.1 parser fuzz (${SEED_TAG})`, () => {
  it('the same messages and the same verdict however the bytes are cut into reads; never two messages from one request', () => {
    const target = '/orders/fz-0';
    fc.assert(
      fc.property(specArb, fc.array(fc.nat(), { minLength: 1, maxLength: 12 }), (spec, cuts) => {
        const { bytes, meant } = build(spec, target);
        const whole = parse([bytes]);
        const split = parse(cut(bytes, cuts));
        expect(split, `bytes ${JSON.stringify(bytes.toString('latin1'))}`).toEqual(whole);
        if (meant === null) return;
        const complete = whole.messages.filter((m) => m.complete);
        // One request in, at most one message out: the smuggled request never shows as a second.
        expect(whole.messages.length, `two messages from ${JSON.stringify(bytes.toString('latin1'))}`).toBeLessThanOrEqual(1);
        if (whole.rc === HPE_OK && complete.length === 1) {
          const m = complete[0] as Message;
          expect(m.body, JSON.stringify(bytes.toString('latin1'))).toBe(meant.body);
          expect(m.url.endsWith(meant.target)).toBe(true);
          for (const [n, v] of meant.fields) {
            const i = m.headers.findIndex((x, j) => j % 2 === 0 && x === n);
            expect(i, `${n} lost: ${JSON.stringify(m.headers)}`).toBeGreaterThanOrEqual(0);
            expect(m.headers[i + 1], `${n}: ${JSON.stringify(m.headers)}`).toBe(v);
          }
        }
      }),
      fuzzParams(500),
    );
  });
});

// ---- behind a real sidecar ------------------------------------------------------------------------

let t: Target;
beforeAll(async () => {
  t = await startTarget({ limits: { maxHeaderSize: '8KiB', maxHeaders: 50, headersTimeout: '1s', requestTimeout: '2s' } });
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

describe(`HTTP/1.1 request heads fuzz on a real sidecar (${SEED_TAG})`, () => {
  it(
    'each request is refused (400/431, closed, nothing forwarded) or reaches the app as meant; never a second one; the next request is served',
    async () => {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(specArb, async (spec) => {
          const path = `/orders/fz-${++n}`;
          const { bytes, meant, mustRefuse, headMustRefuse, applied } = build(spec, path);
          // A well-behaved request after it on the same connection, which also ends the exchange.
          const sentinel = `GET /healthz?after=fz-${n} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
          const seenMark = t.app.seen.length;
          const auditMark = t.sc.audit.lines.length;
          const c = await rawConnect(t.sc.port, orders());
          let raw: string;
          try {
            await c.write(Buffer.concat([bytes, Buffer.from(sentinel, 'latin1')]));
            expect(await c.waitClosed(8000), `the connection was not closed within 8 s: ${JSON.stringify(bytes.toString('latin1'))}`).toBe(true);
            raw = c.received();
          } finally {
            c.destroy();
          }
          const what = `${JSON.stringify(bytes.toString('latin1'))} -> ${JSON.stringify(raw.slice(0, 600))}`;
          const { responses: all, rest } = parseAll(raw);
          // An interim 100 Continue (Expect: 100-continue) is not an answer.
          const responses = all.filter((r) => r.status !== 100);
          // Whole responses only: nothing dangling, nothing split (no response splitting).
          expect(rest, what).toBe('');
          const seen = t.app.seen.slice(seenMark);
          const audit = t.sc.audit.lines.slice(auditMark);
          const mine = seen.filter((s) => s.url.startsWith(path));
          // Never two requests from one: the request in every body never reaches the app, nor is
          // it read as a request at all. (Raw mutations may really cut the body short: not then.)
          if (meant !== null) {
            expect(seen.filter((s) => s.url.includes('smuggled')).map((s) => s.url), what).toEqual([]);
            expect(audit.filter((l) => String(l['path']).includes('smuggled')).length, what).toBe(0);
          }
          for (const s of seen) {
            expect(TOKEN.test(s.method), what).toBe(true);
            expect(s.url, what).toMatch(/^\/[!-~]*$/);
          }
          const first = responses[0];
          expect(first, `no response: ${what}`).toBeDefined();
          if (first === undefined) return;
          const refused = first.status === 400 || first.status === 431;
          if (refused) {
            expect(first.body, what).toMatch(/^\{"error":"(bad_request|header_too_large)"/);
            // The app never got the refused request whole.
            expect(mine.length, `a refused request reached the app: ${what}`).toBe(0);
            // A bad head is refused before anything is forwarded (a bad body can only show once the
            // head has gone on, as bodies stream: the forwarded request is then cut, never completed).
            // Where a Transfer-Encoding other than chunked alone (te-gzip, te-xchunked, te-quoted,
            // te-chunked-gzip) shows: llhttp refuses it only after the head is complete, so transport/h1/connection.ts
            // must refuse it before handing the head on, or the request is forwarded, then aborted.
            if (meant !== null && headMustRefuse) {
              expect(audit.filter((l) => l['decision'] === 'allow' && String(l['path']).startsWith(path)).length, `a refused request was forwarded before its refusal: ${what}`).toBe(0);
            }
            // A parse error ends the connection; a refusal by the pipeline (bad target, two Hosts) may not.
            if (/\r\nconnection: close/i.test(first.head)) expect(responses.length, `an answer after the refusal: ${what}`).toBe(1);
          }
          if (meant === null) return;
          if (mustRefuse) expect(first.status, `a malformed request was not refused: ${what}`).toBeOneOf([400, 431]);
          if (applied.length === 0) expect(first.status, `an ordinary request was not served: ${what}`).toBe(200);
          if (first.status === 200) {
            expect(mine.length, what).toBe(1);
            const s = mine[0];
            if (s === undefined) return;
            expect({ method: s.method, url: s.url, body: s.body.toString('latin1') }, what).toEqual({ method: meant.method, url: meant.target, body: meant.body });
            for (const [name, value] of meant.fields) expect(s.headers[name], `${name}: ${what}`).toBe(value);
            // The connection goes on: the well-behaved request after it is answered too (HTTP/1.0 closes instead).
            if (!applied.includes('version-10')) expect(responses.map((r) => r.status), what).toEqual([200, 200]);
          } else if (!refused) {
            // Refused by the pipeline, not the parser (an absolute target, a missing scope...): nothing forwarded.
            expect(mine.length, `answered ${first.status} yet forwarded: ${what}`).toBe(0);
          }
        }),
        fuzzParams(30, { shrink: false }),
      );
    },
    fuzzTimeout(20_000),
  );
});
