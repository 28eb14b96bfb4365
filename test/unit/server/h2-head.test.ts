/**
 * transport/h2/head.ts on its own: the request-head and trailer checks of the own HTTP/2 server
 * (RFC 9113 8.1, 8.2, 8.3.1), table-driven, no sockets. A head that fails them is refused with
 * RST_STREAM PROTOCOL_ERROR by the session (test/adversarial/h2.test.ts drives that on the wire).
 */
import { describe, expect, it } from 'vitest';
import { readHead, trailersOk } from '../../../src/transport/h2/head.js';
import type { RequestHead } from '../../../src/transport/h2/head.js';

/** As a new stream starts: nothing taken yet, no content-length. */
function fresh(): RequestHead {
  return { method: '', path: '', scheme: '', authority: null, fields: [], contentLength: -1 };
}

/** A valid GET head with `extra` regular fields after the pseudo-headers. */
function get(...extra: string[]): string[] {
  return [':method', 'GET', ':scheme', 'https', ':authority', 'svc.example', ':path', '/orders/1', ...extra];
}

type Refused = [why: string, fields: string[]];

const REFUSED: Refused[] = [
  // pseudo-headers (8.3, 8.3.1)
  ['no :method', [':scheme', 'https', ':path', '/']],
  ['no :scheme', [':method', 'GET', ':path', '/']],
  ['no :path', [':method', 'GET', ':scheme', 'https']],
  ['an empty :path', [':method', 'GET', ':scheme', 'https', ':path', '']],
  ['a pseudo-header after a regular field', [':method', 'GET', ':scheme', 'https', 'accept', '*/*', ':path', '/']],
  ['a duplicate :method', [':method', 'GET', ':method', 'POST', ':scheme', 'https', ':path', '/']],
  ['a duplicate :path', [':method', 'GET', ':scheme', 'https', ':path', '/', ':path', '/admin']],
  ['a duplicate :scheme', [':method', 'GET', ':scheme', 'https', ':scheme', 'http', ':path', '/']],
  ['a duplicate :authority', [':method', 'GET', ':scheme', 'https', ':authority', 'a', ':authority', 'b', ':path', '/']],
  ['a response pseudo-header (:status)', [...get(), ':status', '200']],
  ['an unknown pseudo-header', [':method', 'GET', ':scheme', 'https', ':protocol', 'websocket', ':path', '/']],
  ['CONNECT (not served)', [':method', 'CONNECT', ':authority', 'svc.example:443']],
  ['CONNECT even with :scheme and :path', [':method', 'CONNECT', ':scheme', 'https', ':authority', 'svc.example:443', ':path', '/']],
  ['CONNECT with :scheme and :path (extended CONNECT)', [':method', 'CONNECT', ':scheme', 'https', ':path', '/chat', ':protocol', 'websocket']],
  // :method is a token (RFC 9110 9.1)
  ['an empty method (a token has at least one character)', [':method', '', ':scheme', 'https', ':path', '/']],
  ['a method with a space', [':method', 'GE T', ':scheme', 'https', ':path', '/']],
  ['a method with a separator', [':method', 'GET/1', ':scheme', 'https', ':path', '/']],
  ['a method with a non-ASCII character', [':method', 'GÉT', ':scheme', 'https', ':path', '/']],
  // :path and :authority: visible characters only
  ['a space in :path', [':method', 'GET', ':scheme', 'https', ':path', '/a b']],
  ['a control character in :path', [':method', 'GET', ':scheme', 'https', ':path', '/a\x01b']],
  ['DEL in :path', [':method', 'GET', ':scheme', 'https', ':path', '/a\x7f']],
  ['a space in :authority', [':method', 'GET', ':scheme', 'https', ':authority', 'svc example', ':path', '/']],
  ['a CR in :authority', [':method', 'GET', ':scheme', 'https', ':authority', 'svc\r', ':path', '/']],
  ['DEL in :authority', [':method', 'GET', ':scheme', 'https', ':authority', 'svc\x7f', ':path', '/']],
  // :scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
  ['an empty :scheme', [':method', 'GET', ':scheme', '', ':path', '/']],
  ['a :scheme starting with a digit', [':method', 'GET', ':scheme', '1http', ':path', '/']],
  ['a :scheme with a space', [':method', 'GET', ':scheme', 'ht tp', ':path', '/']],
  ['a :scheme with a colon', [':method', 'GET', ':scheme', 'https:', ':path', '/']],
  // field names (8.2.1): lower-case tokens
  ['an upper-case field name', get('Accept', '*/*')],
  ['a mixed-case field name', get('x-Request-Id', 'r1')],
  ['an empty field name', get('', 'x')],
  ['a space in a field name', get('x y', '1')],
  ['a colon inside a field name', get('x:y', '1')],
  ['a non-ASCII field name', get('x-é', '1')],
  // connection-specific fields (8.2.2)
  ['connection', get('connection', 'keep-alive')],
  ['keep-alive', get('keep-alive', 'timeout=5')],
  ['proxy-connection', get('proxy-connection', 'keep-alive')],
  ['transfer-encoding', get('transfer-encoding', 'chunked')],
  ['upgrade', get('upgrade', 'h2c')],
  ['te other than trailers', get('te', 'gzip')],
  ['te with trailers among others', get('te', 'trailers, gzip')],
  ['te in another case', get('te', 'Trailers')],
  // field values (8.2.1)
  ['a NUL in a value', get('x-a', 'a\x00b')],
  ['a CR in a value', get('x-a', 'a\rb')],
  ['an LF in a value', get('x-a', 'a\nb')],
  ['another control character in a value', get('x-a', 'a\x01b')],
  ['DEL in a value', get('x-a', 'a\x7fb')],
  ['a value starting with a space', get('x-a', ' a')],
  ['a value ending with a tab', get('x-a', 'a\t')],
  ['a value of one space', get('x-a', ' ')],
  // content-length (8.1.1): digits only, and one value
  ['a content-length that is not a number', get('content-length', 'abc')],
  ['a negative content-length', get('content-length', '-1')],
  ['a content-length with a sign', get('content-length', '+5')],
  ['a fractional content-length', get('content-length', '1.0')],
  ['a content-length list', get('content-length', '5, 5')],
  ['an empty content-length', get('content-length', '')],
  ['a content-length of 16 digits', get('content-length', '1234567890123456')],
  ['two content-lengths that disagree', get('content-length', '5', 'content-length', '6')],
  ['content-lengths that disagree once padded', get('content-length', '5', 'content-length', '05', 'content-length', '6')],
];

describe('readHead: request heads refused (RFC 9113 8.1.1, 8.2, 8.3.1)', () => {
  it.each(REFUSED)('%s', (_why, fields) => {
    expect(readHead(fields, fresh())).toBe(false);
  });
});

describe('readHead: request heads taken', () => {
  it('takes the pseudo-headers, and the regular fields in order as received', () => {
    const head = fresh();
    expect(readHead(get('accept', '*/*', 'x-request-id', 'r1'), head)).toBe(true);
    expect(head).toEqual({
      method: 'GET',
      path: '/orders/1',
      scheme: 'https',
      authority: 'svc.example',
      fields: ['accept', '*/*', 'x-request-id', 'r1'],
      contentLength: -1,
    });
  });

  it('pseudo-headers in any order; :authority may be absent', () => {
    const head = fresh();
    expect(readHead([':path', '/', ':scheme', 'http', ':method', 'DELETE'], head)).toBe(true);
    expect(head).toMatchObject({ method: 'DELETE', path: '/', scheme: 'http', authority: null, fields: [] });
  });

  it('cookie crumbs stay separate fields (the header scan joins them for the HTTP/1.1 hop)', () => {
    const head = fresh();
    expect(readHead(get('cookie', 'a=1', 'cookie', 'b=2'), head)).toBe(true);
    expect(head.fields).toEqual(['cookie', 'a=1', 'cookie', 'b=2']);
  });

  type Taken = [why: string, fields: string[], contentLength: number];
  const TAKEN: Taken[] = [
    ['a content-length', get('content-length', '42'), 42],
    ['content-length 0', get('content-length', '0'), 0],
    ['a content-length of 15 digits', get('content-length', '999999999999999'), 999999999999999],
    ['a repeated content-length that agrees', get('content-length', '7', 'content-length', '7'), 7],
    ['repeats that agree as numbers', get('content-length', '7', 'content-length', '007'), 7],
    ['te: trailers', get('te', 'trailers'), -1],
    ['an empty value', get('x-empty', ''), -1],
    ['a tab inside a value', get('x-a', 'a\tb'), -1],
    ['visible non-ASCII in a value', get('x-a', 'café'), -1],
    ['token punctuation in a name', get("x-!#$%&'*+.^_`|~", '1'), -1],
    ['a lower-case method (a token; methods are case-sensitive)', [':method', 'get', ':scheme', 'https', ':path', '/'], -1],
    ['an extension method', [':method', 'PURGE', ':scheme', 'https', ':path', '/'], -1],
    ['an upper-case scheme', [':method', 'GET', ':scheme', 'HTTPS', ':path', '/'], -1],
    ['a scheme with + - .', [':method', 'GET', ':scheme', 'a+b-c.d1', ':path', '/'], -1],
    ['an asterisk-form :path (OPTIONS *)', [':method', 'OPTIONS', ':scheme', 'https', ':path', '*'], -1],
    ['an :authority with a port and userinfo characters', [':method', 'GET', ':scheme', 'https', ':authority', 'u@svc:8443', ':path', '/'], -1],
  ];
  it.each(TAKEN)('%s', (_why, fields, contentLength) => {
    const head = fresh();
    expect(readHead(fields, head)).toBe(true);
    expect(head.contentLength).toBe(contentLength);
  });
});

describe('trailersOk: trailer sections (RFC 9113 8.1)', () => {
  type Case = [why: string, fields: string[], ok: boolean];
  const CASES: Case[] = [
    ['none', [], true],
    ['regular fields', ['grpc-status', '0', 'x-checksum', 'abc'], true],
    ['a pseudo-header', [':status', '200'], false],
    ['a request pseudo-header', [':path', '/'], false],
    ['an upper-case name', ['X-Checksum', 'abc'], false],
    ['a connection-specific field', ['transfer-encoding', 'chunked'], false],
    ['te other than trailers', ['te', 'gzip'], false],
    ['a bad value', ['x-checksum', 'a\nb'], false],
    ['a regular field, then a pseudo-header', ['x-a', '1', ':method', 'GET'], false],
  ];
  it.each(CASES)('%s', (_why, fields, ok) => {
    expect(trailersOk(fields)).toBe(ok);
  });
});
