/**
 * HTTP/1.1 request smuggling and parsing, over real mTLS sockets with raw bytes.
 *
 * What is asserted is what the app actually received. After every exchange:
 *  - every request the app got was audited as `allow` by the sidecar, same path and request id,
 *    and every `allow` that completed (`ok`) reached the app: no request reaches the app that was
 *    not authorized and audited, and none is lost in between (no desync);
 *  - the app never saw /admin (every smuggling payload below tries to reach it; nobody holds the
 *    `admin` scope);
 *  - the bytes the client got back parse as whole responses (no response splitting).
 *
 * Already covered elsewhere (not repeated): duplicate Host / Authorization / same-value duplicate
 * Content-Length, CL+TE with `chunked`, the basic pipelined [200, 403, 200] order, and 100-continue
 * only after authorization — test/integration/proxy.test.ts "request smuggling and ambiguity" and
 * "Expect: 100-continue".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientCreds } from '../helpers/client.js';
import { rawExchange } from '../helpers/client.js';
import type { AuditLine } from '../helpers/audit-sink.js';
import type { SeenRequest } from '../helpers/upstream.js';
import { echo } from '../helpers/upstream.js';
import { billing, orders, parseAll, startTarget, statusLines, until } from './harness.js';
import type { Target } from './harness.js';

let t: Target;
/** Trailers the app received, by request id (the upstream helper does not keep them). */
const trailers = new Map<string, string[]>();

beforeAll(async () => {
  t = await startTarget({ limits: { maxBodySize: '64KiB', headersTimeout: '2s', requestTimeout: '3s' } });
  t.app.handler = (req, res, body) => {
    const id = req.headers['x-request-id'];
    if (typeof id === 'string') trailers.set(id, req.rawTrailers);
    echo(req, res, body);
  };
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

/** A request that must never be executed: it names /admin. */
const SMUGGLED = 'GET /admin/smuggled HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: smuggled\r\n\r\n';

interface Exchange {
  readonly raw: string;
  readonly statuses: number[];
  readonly seen: SeenRequest[];
  readonly allows: AuditLine[];
}

async function exchange(bytes: string, who: ClientCreds = orders()): Promise<Exchange> {
  const seenMark = t.app.seen.length;
  const auditMark = t.sc.audit.lines.length;
  // The window covers the TLS handshake too: 2.5 s leaves room on a loaded 2-core machine.
  const raw = await rawExchange(t.sc.port, who, bytes, 2500);
  // Audit lines are written when each response closes, a tick after the socket may close: wait
  // for one per final response (not asserted here: the invariants below say what is missing).
  const answered = statusLines(raw).filter((status) => status >= 200).length;
  await until(() => t.sc.audit.lines.slice(auditMark).filter((l) => l.msg === 'request').length >= answered, 2000);
  const seen = t.app.seen.slice(seenMark);
  const allows = t.sc.audit.lines.slice(auditMark).filter((l) => l.msg === 'request' && l.decision === 'allow');
  return { raw, statuses: statusLines(raw), seen, allows };
}

/** The invariants every exchange must keep, whatever the sidecar decided. */
function assertNoDesync(x: Exchange): void {
  expect(x.seen.map((s) => s.url).filter((u) => u.includes('admin')), 'the app saw an /admin request').toEqual([]);
  expect(x.seen.length, 'app requests vs audited allow decisions that completed').toBe(x.allows.filter((l) => l.reason === 'ok').length);
  for (const s of x.seen) {
    const line = x.allows.find((l) => l.requestId === s.headers['x-request-id']);
    expect(line, `no allow audit line for the app's request ${s.method} ${s.url}`).toBeDefined();
    expect(line?.path).toBe(s.url.split('?')[0]);
    expect(s.headers['x-forwarded-client-cert']).toMatch(/^Hash=/);
  }
  // Everything the client got back is whole responses, nothing dangling after them.
  expect(parseAll(x.raw).rest, 'bytes after the last whole response').toBe('');
}

const req = (lines: string[], body = ''): string => `${lines.join('\r\n')}\r\n\r\n${body}`;

type Case = [name: string, bytes: string, expect: { statuses?: number[]; forwarded?: number; oneOf?: number[] }];

describe('ambiguous framing is refused before anything is forwarded (RFC 9112 §6.1, §6.3; PortSwigger "HTTP request smuggling")', () => {
  const post = (headers: string[], body: string): string =>
    req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: framing', ...headers, 'Connection: keep-alive'], body);
  const chunkedSmuggle = `0\r\n\r\n${SMUGGLED}`;

  const CASES: Case[] = [
    // CL.TE / TE.CL (RFC 9112 §6.3 item 3: a request with both MUST be treated as an error or TE wins and the connection closed)
    ['CL.TE', post(['Content-Length: 6', 'Transfer-Encoding: chunked'], '0\r\n\r\nG'), { statuses: [400], forwarded: 0 }],
    ['TE.CL', post(['Transfer-Encoding: chunked', 'Content-Length: 3'], `8\r\nSMUGGLED\r\n${chunkedSmuggle}`), { statuses: [400], forwarded: 0 }],
    // TE.TE obfuscations (PortSwigger): one parser sees chunked, another does not
    ['TE: xchunked + CL', post(['Content-Length: 4', 'Transfer-Encoding: xchunked'], `5c\r\n${SMUGGLED}`), { statuses: [400], forwarded: 0 }],
    ['TE with space before colon', post(['Transfer-Encoding : chunked', 'Content-Length: 4'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE with tab value', post(['Transfer-Encoding:\tchunked', 'Content-Length: 4'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE twice (chunked, then x)', post(['Transfer-Encoding: chunked', 'Transfer-encoding: x'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE: chunked, identity', post(['Transfer-Encoding: chunked, identity'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE: identity (obsolete, RFC 9112 §6.1)', post(['Transfer-Encoding: identity', 'Content-Length: 4'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE: "chunked" quoted', post(['Transfer-Encoding: "chunked"'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE folded onto the previous line (obs-fold)', post(['X-A: a', ' Transfer-Encoding: chunked', 'Content-Length: 4'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE name split by bare LF', post(['Transfer-Encoding\n: chunked', 'Content-Length: 4'], chunkedSmuggle), { statuses: [400], forwarded: 0 }],
    ['TE as Transfer_Encoding (underscore)', post(['Transfer_Encoding: chunked', 'Content-Length: 4'], chunkedSmuggle), { oneOf: [200, 400] }],
    // Content-Length variants (RFC 9110 §8.6: a list of identical values MAY be accepted; anything else is an error)
    ['conflicting Content-Length', post(['Content-Length: 1', 'Content-Length: 2'], 'xx'), { statuses: [400], forwarded: 0 }],
    ['Content-Length list "1, 1"', post(['Content-Length: 1, 1'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length list "1, 2"', post(['Content-Length: 1, 2'], 'xx'), { statuses: [400], forwarded: 0 }],
    ['Content-Length: +1', post(['Content-Length: +1'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length: -1', post(['Content-Length: -1'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length: 0x1', post(['Content-Length: 0x1'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length: 1e1', post(['Content-Length: 1e1'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length overflowing 64 bits', post(['Content-Length: 184467440737095516160'], 'x'), { statuses: [400], forwarded: 0 }],
    ['Content-Length with an underscore twin (CGI/WSGI CONTENT_LENGTH)', post(['Content-Length: 1', 'Content_Length: 95'], `x${SMUGGLED}`), { statuses: [200, 403], forwarded: 1 }],
    // Chunked encoding (RFC 9112 §7.1)
    ['chunk size overflowing 64 bits', post(['Transfer-Encoding: chunked'], `1${'0'.repeat(17)}\r\nx\r\n0\r\n\r\n`), { statuses: [400], forwarded: 0 }],
    ['chunk size with bare LF', post(['Transfer-Encoding: chunked'], `1\nx\r\n0\r\n\r\n`), { statuses: [400], forwarded: 0 }],
    ['chunk data longer than its size', post(['Transfer-Encoding: chunked'], `1\r\nxx\r\n0\r\n\r\n`), { statuses: [400], forwarded: 0 }],
    ['chunk extension with bare LF (CVE-2023-30589 class)', post(['Transfer-Encoding: chunked'], `1;a=b\nc\r\nx\r\n0\r\n\r\n`), { statuses: [400], forwarded: 0 }],
  ];

  it.each(CASES)('%s', async (_name, bytes, want) => {
    const x = await exchange(bytes);
    assertNoDesync(x);
    if (want.statuses !== undefined) expect(x.statuses.slice(0, want.statuses.length)).toEqual(want.statuses);
    if (want.oneOf !== undefined) expect(want.oneOf).toContain(x.statuses[0]);
    if (want.forwarded !== undefined) expect(x.seen.length).toBe(want.forwarded);
  });

  it('Content_Length is not forwarded as a second length (regression test for the headers.ts alias fix)', async () => {
    const x = await exchange(post(['Content-Length: 1', 'Content_Length: 95', 'Connection: close'], 'x'));
    assertNoDesync(x);
    expect(x.seen).toHaveLength(1);
    expect(x.seen[0]?.body.toString()).toBe('x');
    const names = (x.seen[0]?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).not.toContain('content_length');
  });
});

describe('Transfer-Encoding is judged before anything reaches the app (RFC 9112 §6.1)', () => {
  const te = (line: string, value: string): string =>
    req([line, 'Host: localhost', 'X-Request-Id: te', `Transfer-Encoding: ${value}`, 'Connection: keep-alive'], `5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`);

  // llhttp refuses the first three only after it has handed the head on, and passes the others.
  it.each([
    ['xchunked', 'POST /orders/1 HTTP/1.1', 'xchunked'],
    ['gzip alone', 'POST /orders/1 HTTP/1.1', 'gzip'],
    ['"chunked" quoted', 'POST /orders/1 HTTP/1.1', '"chunked"'],
    ['gzip, chunked (a coding the re-framed body would lose)', 'POST /orders/1 HTTP/1.1', 'gzip, chunked'],
    ['an empty value', 'POST /orders/1 HTTP/1.1', ''],
    ['chunked on HTTP/1.0 (faulty framing)', 'POST /orders/1 HTTP/1.0', 'chunked'],
  ])('%s: 400 and the connection closes; the one audit line is the refusal, with method and path', async (_name, line, value) => {
    const mark = t.sc.audit.lines.length;
    const x = await exchange(te(line, value));
    assertNoDesync(x);
    expect(x.statuses).toEqual([400]);
    expect(x.raw.toLowerCase()).toContain('connection: close');
    expect(x.seen).toEqual([]);
    await t.sc.audit.waitFor((l) => l.msg === 'request' && l.status === 400 && t.sc.audit.lines.indexOf(l) >= mark);
    const lines = t.sc.audit.lines.slice(mark).filter((l) => l.msg === 'request');
    // Not even its head reached the pipeline: no `allow` (nor a client_aborted) before the 400.
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ decision: 'deny', reason: 'bad_request', status: 400, method: 'POST', path: '/orders/1', protocol: 'HTTP/1.1' });
  });

  it('chunked alone, in any case, is still served', async () => {
    const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: te-ok', 'Transfer-Encoding: Chunked', 'Connection: close'], '5\r\nhello\r\n0\r\n\r\n'));
    assertNoDesync(x);
    expect(x.statuses).toEqual([200]);
    expect(x.seen[0]?.body.toString()).toBe('hello');
  });
});

describe('audit lines of refused heads keep what was parsed', () => {
  async function refusedLine(bytes: string, status: number, timeoutMs = 1500): Promise<Record<string, unknown>> {
    const mark = t.sc.audit.lines.length;
    const raw = await rawExchange(t.sc.port, orders(), bytes, timeoutMs);
    expect(statusLines(raw)).toEqual([status]);
    return t.sc.audit.waitFor((l) => l.msg === 'request' && l.status === status && t.sc.audit.lines.indexOf(l) >= mark);
  }

  it('a bad header after the request line: method and path (without the query)', async () => {
    const line = await refusedLine('GET /orders/7?token=secret HTTP/1.1\r\nHost: localhost\r\nX Bad: 1\r\n\r\n', 400);
    expect(line).toMatchObject({ method: 'GET', path: '/orders/7', reason: 'bad_request', decision: 'deny' });
    expect(JSON.stringify(line)).not.toContain('secret');
  });

  it('a head over maxHeaderSize: method and path', async () => {
    const line = await refusedLine(`PUT /orders/8 HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`, 431);
    expect(line).toMatchObject({ method: 'PUT', path: '/orders/8', reason: 'header_too_large' });
  });

  it('a head that never ends (headersTimeout): method and path', async () => {
    const line = await refusedLine('DELETE /orders/9 HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n', 408, 6000);
    expect(line).toMatchObject({ method: 'DELETE', path: '/orders/9', reason: 'request_timeout' });
  });

  it('a request line that does not parse: neither', async () => {
    const line = await refusedLine('get /orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n', 400);
    expect(line).toMatchObject({ method: '', path: '', reason: 'bad_request' });
  });
});

describe('malformed messages are refused (RFC 9112 §2.2, §3, §5; RFC 9110 §5.1, §5.5)', () => {
  const get = (headers: string[], line = 'GET /orders/1 HTTP/1.1'): string => req([line, 'Host: localhost', 'X-Request-Id: malformed', ...headers, 'Connection: close']);
  const CASES: Case[] = [
    ['obs-fold in a header (RFC 9112 §5.2)', get(['X-A: a', ' b']), { statuses: [400], forwarded: 0 }],
    ['obs-fold continuing Host', req(['GET /orders/1 HTTP/1.1', 'Host: localhost', ' admin.internal', 'Connection: close']), { statuses: [400], forwarded: 0 }],
    ['bare LF line endings throughout (RFC 9112 §2.2)', 'GET /orders/1 HTTP/1.1\nHost: localhost\nConnection: close\n\n', { statuses: [400], forwarded: 0 }],
    ['bare LF after one header', 'GET /orders/1 HTTP/1.1\r\nHost: localhost\nX-A: b\r\nConnection: close\r\n\r\n', { statuses: [400], forwarded: 0 }],
    ['bare CR inside a value', get(['X-A: a\rb']), { statuses: [400], forwarded: 0 }],
    ['NUL inside a value (RFC 9110 §5.5)', get(['X-A: a\x00b']), { statuses: [400], forwarded: 0 }],
    ['space inside a header name', get(['X Client-Identity: admin']), { statuses: [400], forwarded: 0 }],
    ['space before the colon (RFC 9112 §5.1)', get(['X-Client-Identity : admin']), { statuses: [400], forwarded: 0 }],
    ['NUL inside a header name', get(['X-A\x00B: c']), { statuses: [400], forwarded: 0 }],
    ['non-token characters in a name', get(['X(A): c']), { statuses: [400], forwarded: 0 }],
    ['non-ASCII header name', get(['X-\u00e9: c']), { statuses: [400], forwarded: 0 }],
    ['empty header name', get([': c']), { statuses: [400], forwarded: 0 }],
    ['absolute-form target (RFC 9112 §3.2.2)', get([], 'GET http://localhost/orders/1 HTTP/1.1'), { statuses: [400], forwarded: 0 }],
    ['absolute-form naming another host', get([], 'GET https://admin.internal/admin HTTP/1.1'), { statuses: [400], forwarded: 0 }],
    ['authority-form on GET (RFC 9112 §3.2.3)', get([], 'GET localhost:443 HTTP/1.1'), { statuses: [400], forwarded: 0 }],
    ['asterisk-form (RFC 9112 §3.2.4)', get([], 'OPTIONS * HTTP/1.1'), { statuses: [400], forwarded: 0 }],
    ['lower-case method (methods are case-sensitive, RFC 9110 §9.1)', get([], 'get /orders/1 HTTP/1.1'), { statuses: [400], forwarded: 0 }],
    // RFC 9112 §3 lets a recipient split the request line on whitespace; the sidecar re-frames the
    // request for the app, so accepting it cannot desynchronise them.
    ['two spaces in the request line', get([], 'GET  /orders/1 HTTP/1.1'), { oneOf: [200, 400] }],
    ['extra token after the version', get([], 'GET /orders/1 HTTP/1.1 x'), { statuses: [400], forwarded: 0 }],
    ['unknown HTTP version', get([], 'GET /orders/1 HTTP/1.2x'), { statuses: [400], forwarded: 0 }],
    // Accepted by Node's parser and forwarded as HTTP/1.1: harmless for the same reason.
    ['HTTP/2.0 in an HTTP/1.1 request line', get([], 'GET /orders/1 HTTP/2.0'), { oneOf: [200, 400, 505] }],
    ['missing Host on HTTP/1.1 (RFC 9112 §3.2)', req(['GET /orders/1 HTTP/1.1', 'Connection: close']), { statuses: [400], forwarded: 0 }],
    ['Host with a path in it', req(['GET /orders/1 HTTP/1.1', 'Host: localhost/admin', 'Connection: close']), { oneOf: [200, 400] }],
    ['request line over maxHeaderSize (16 KiB)', get([], `GET /orders/${'a'.repeat(20_000)} HTTP/1.1`), { oneOf: [414, 431], forwarded: 0 }],
  ];

  it.each(CASES)('%s', async (_name, bytes, want) => {
    const x = await exchange(bytes);
    assertNoDesync(x);
    if (want.statuses !== undefined) expect(x.statuses.slice(0, want.statuses.length)).toEqual(want.statuses);
    if (want.oneOf !== undefined) expect(want.oneOf).toContain(x.statuses[0]);
    if (want.forwarded !== undefined) expect(x.seen.length).toBe(want.forwarded);
  });
});

describe('CONNECT and upgrades do not open a tunnel past authorization (RFC 9110 §9.3.6; BishopFox h2c smuggling 2020)', () => {
  it('CONNECT is never forwarded and the connection carries nothing after it', async () => {
    const x = await exchange(`CONNECT admin.internal:443 HTTP/1.1\r\nHost: admin.internal:443\r\n\r\n${SMUGGLED}`);
    assertNoDesync(x);
    expect(x.seen).toEqual([]);
    expect(x.statuses.filter((s) => s === 200)).toEqual([]);
  });

  it('Upgrade: h2c is stripped: the app sees a plain request, the client no 101 (and no h2c tunnel)', async () => {
    const x = await exchange(
      req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: h2c', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Connection: Upgrade, HTTP2-Settings, close']),
    );
    assertNoDesync(x);
    expect(x.statuses).toEqual([200]);
    expect(x.seen[0]?.headers['upgrade']).toBeUndefined();
    expect(x.seen[0]?.headers['http2-settings']).toBeUndefined();
    expect(x.seen[0]?.headers['connection']).not.toMatch(/upgrade/i);
  });

  it('Upgrade: websocket is stripped as well; bytes after the request are never tunnelled to the app', async () => {
    const x = await exchange(
      req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: ws', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']) +
        SMUGGLED.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'),
      billing(),
    );
    assertNoDesync(x);
    // Node's parser stops at an Upgrade request (the rest would be the new protocol) and, with no
    // 'upgrade' listener, drops those bytes: either they are ignored or parsed and refused.
    expect([[200], [200, 403]]).toContainEqual(x.statuses);
    expect(x.seen.map((s) => s.headers['x-request-id'])).toEqual(['ws']);
    expect(x.seen[0]?.headers['upgrade']).toBeUndefined();
    expect(x.raw).not.toContain('101 Switching');
  });

  it('Connection naming Content-Length or Transfer-Encoding (hop-by-hop abuse) does not change the framing the app sees', async () => {
    for (const hop of ['Content-Length', 'Transfer-Encoding']) {
      const framing = hop === 'Content-Length' ? ['Content-Length: 5'] : ['Transfer-Encoding: chunked'];
      const body = hop === 'Content-Length' ? 'hello' : '5\r\nhello\r\n0\r\n\r\n';
      const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', `X-Request-Id: hop-${hop}`, ...framing, `Connection: close, ${hop}`], body));
      assertNoDesync(x);
      expect(x.statuses).toEqual([200]);
      expect(x.seen[0]?.body.toString()).toBe('hello');
    }
  });
});

describe('Expect: 100-continue (RFC 9110 §10.1.1)', () => {
  it('a refused request that sends its body anyway is answered 403 with Connection: close; the body is never parsed as a request', async () => {
    const body = SMUGGLED;
    const x = await exchange(
      req(['DELETE /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: expect-refused', 'Expect: 100-continue', `Content-Length: ${body.length}`], body),
      billing(),
    );
    assertNoDesync(x);
    expect(x.statuses).toEqual([403]);
    expect(x.raw).not.toContain('100 Continue');
    expect(x.raw.toLowerCase()).toContain('connection: close');
  });

  it('an unknown expectation is refused (400/417) and nothing is forwarded', async () => {
    const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'Expect: 200-ok', 'Content-Length: 2', 'Connection: close'], '{}'));
    assertNoDesync(x);
    expect([400, 417]).toContain(x.statuses[0]);
    expect(x.seen).toEqual([]);
  });
});

describe('pipelined requests are each authorized, in order, and framed by the sidecar (RFC 9112 §9.3.2)', () => {
  it('allowed, refused, allowed: the app gets exactly the two allowed ones, in order', async () => {
    const x = await exchange(
      req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: p1']) +
        req(['DELETE /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: p2']) +
        req(['GET /orders/3 HTTP/1.1', 'Host: localhost', 'X-Request-Id: p3', 'Connection: close']),
      billing(),
    );
    assertNoDesync(x);
    expect(x.statuses).toEqual([200, 403, 200]);
    expect(x.seen.map((s) => s.headers['x-request-id'])).toEqual(['p1', 'p3']);
  });

  it('a refused request with a body: the body is skipped by its Content-Length, not run as the next request', async () => {
    const body = SMUGGLED;
    const x = await exchange(
      req(['DELETE /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: q1', `Content-Length: ${body.length}`], body) +
        req(['GET /orders/2 HTTP/1.1', 'Host: localhost', 'X-Request-Id: q2', 'Connection: close']),
      billing(),
    );
    assertNoDesync(x);
    // Either the refusal closes the connection, or the next request is served on its own.
    expect([[403], [403, 200]]).toContainEqual(x.statuses);
    expect(x.seen.map((s) => s.headers['x-request-id'])).toEqual(x.statuses.length === 2 ? ['q2'] : []);
  });

  it('an allowed request whose body holds a request: the app gets it as body bytes, not as a second request', async () => {
    const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: b1', `Content-Length: ${SMUGGLED.length}`, 'Connection: close'], SMUGGLED));
    assertNoDesync(x);
    expect(x.statuses).toEqual([200]);
    expect(x.seen).toHaveLength(1);
    expect(x.seen[0]?.body.toString()).toBe(SMUGGLED);
  });

  it('a chunked body followed by a pipelined request for /admin: the second is authorized on its own (403)', async () => {
    const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: c1', 'Transfer-Encoding: chunked'], `3\r\nabc\r\n0\r\n\r\n${SMUGGLED.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}`));
    assertNoDesync(x);
    expect(x.statuses).toEqual([200, 403]);
    expect(x.seen[0]?.body.toString()).toBe('abc');
  });

  it('chunked trailers never reach the app (RFC 9110 §6.5: trailers must not carry identity or routing)', async () => {
    const x = await exchange(
      req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: tr1', 'Transfer-Encoding: chunked', 'Trailer: X-Client-Identity', 'Connection: close'], '3\r\nabc\r\n0\r\nX-Client-Identity: admin\r\nHost: admin.internal\r\n\r\n'),
    );
    assertNoDesync(x);
    expect(x.statuses).toEqual([200]);
    expect(trailers.get('tr1')).toEqual([]);
    expect(x.seen[0]?.headers['x-client-identity']).toBe('orders');
  });
});
