/**
 * http1/llhttp.ts against the llhttp wasm of the undici that is installed: requests parsed
 * through the callbacks bound by name, so an undici upgrade that renames the
 * wasm's imports, reorders a callback's arguments or changes what an export returns fails here
 * (package.json pins undici exactly; this is what an upgrade has to pass).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { HPE_OK, HPE_PAUSED_UPGRADE, HeaderPairs, RequestParser, llhttpErrorName, llhttpMismatch } from '../../../src/http1/llhttp.js';
import type { ParserEvents } from '../../../src/http1/llhttp.js';

interface Head {
  upgrade: boolean;
  keepAlive: boolean;
  method: string;
  version: string;
}

interface Message {
  url: string;
  head: Head | null;
  headers: string[];
  body: string;
}

/** Records what the parser reports, message by message. */
class Recorder implements ParserEvents {
  readonly messages: Message[] = [];
  readonly completed: number[] = [];
  headers = new HeaderPairs();
  /** The parser, for method() and the HTTP version, valid inside onHeadersComplete. */
  request: RequestParser | null = null;

  get current(): Message {
    const m = this.messages[this.messages.length - 1];
    if (m === undefined) throw new Error('no message begun');
    return m;
  }
  onMessageBegin(): number {
    this.messages.push({ url: '', head: null, headers: [], body: '' });
    return 0;
  }
  onUrl(part: string): number {
    this.current.url += part;
    return 0;
  }
  onHeaderField(part: string): number {
    this.headers.name(part);
    return 0;
  }
  onHeaderValue(part: string): number {
    this.headers.value(part);
    return 0;
  }
  onHeadersComplete(upgrade: boolean, keepAlive: boolean): number {
    const p = this.request;
    this.current.head = {
      upgrade,
      keepAlive,
      method: p?.method() ?? '',
      version: p === null ? '' : `${p.httpMajor()}.${p.httpMinor()}`,
    };
    this.current.headers = this.headers.take();
    return 0;
  }
  onBody(chunk: Buffer): number {
    this.current.body += chunk.toString('latin1');
    return 0;
  }
  onMessageComplete(): number {
    this.completed.push(this.messages.length);
    return 0;
  }
}

function requestParser(): { parser: RequestParser; rec: Recorder } {
  const rec = new Recorder();
  const parser = new RequestParser(rec);
  rec.request = parser;
  return { parser, rec };
}

describe('RequestParser (llhttp wasm, request mode)', () => {
  it('a chunked POST split across reads inside a header name: method, URL, version, headers, body, keep-alive', () => {
    const { parser, rec } = requestParser();
    const wire = 'POST /orders/7?q=1 HTTP/1.1\r\nHost: shop\r\nX-Trace-Id: a b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    const cut = wire.indexOf('Trace');
    expect(parser.execute(Buffer.from(wire.slice(0, cut), 'latin1'))).toBe(HPE_OK);
    expect(parser.execute(Buffer.from(wire.slice(cut), 'latin1'))).toBe(HPE_OK);
    expect(rec.messages).toEqual([
      {
        url: '/orders/7?q=1',
        head: { upgrade: false, keepAlive: true, method: 'POST', version: '1.1' },
        headers: ['Host', 'shop', 'X-Trace-Id', 'a b', 'Transfer-Encoding', 'chunked'],
        body: 'hello world',
      },
    ]);
    expect(rec.completed).toEqual([1]);
    parser.free();
  });

  it('HTTP/1.0 without keep-alive: no keep-alive, and bytes after it are refused (strict, no lenient flags)', () => {
    const { parser, rec } = requestParser();
    expect(parser.execute(Buffer.from('GET /a HTTP/1.0\r\n\r\n'))).toBe(HPE_OK);
    expect(rec.messages.map((m) => [m.url, m.head])).toEqual([['/a', { upgrade: false, keepAlive: false, method: 'GET', version: '1.0' }]]);
    expect(llhttpErrorName(parser.execute(Buffer.from('GET /b HTTP/1.0\r\n\r\n')))).toBe('HPE_CLOSED_CONNECTION');
    parser.free();
  });

  it('an Upgrade request: the parse pauses after the head, and resumeAfterUpgrade() goes on', () => {
    const { parser, rec } = requestParser();
    const head = 'GET /ws HTTP/1.1\r\nHost: shop\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n';
    const chunk = Buffer.from(`${head}DELETE /orders/1 HTTP/1.1\r\nHost: shop\r\n\r\n`);
    expect(parser.execute(chunk)).toBe(HPE_PAUSED_UPGRADE);
    expect(parser.consumed).toBe(head.length);
    parser.resumeAfterUpgrade();
    expect(parser.execute(chunk.subarray(parser.consumed))).toBe(HPE_OK);
    expect(rec.messages.map((m) => [m.url, m.head])).toEqual([
      ['/ws', { upgrade: true, keepAlive: true, method: 'GET', version: '1.1' }],
      ['/orders/1', { upgrade: false, keepAlive: true, method: 'DELETE', version: '1.1' }],
    ]);
    parser.free();
  });

  it('a malformed request: llhttp\'s error, by name, and how far it read', () => {
    const { parser } = requestParser();
    const rc = parser.execute(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'));
    expect(rc).not.toBe(HPE_OK);
    expect(llhttpErrorName(rc)).toBe('HPE_INVALID_TRANSFER_ENCODING');
    expect(parser.consumed).toBeGreaterThan(0);
    parser.free();
  });
});

/** The slice of the WebAssembly global the test needs (the project's lib settings do not declare it). */
const { Module } = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object } }).WebAssembly;

/** A wasm module that imports the given `env` functions (all `() -> i32`) and exports nothing. */
function moduleImporting(names: string[]): object {
  const str = (s: string): number[] => [s.length, ...Buffer.from(s)];
  const section = (id: number, body: number[]): number[] => [id, body.length, ...body];
  const types = section(1, [1, 0x60, 0, 1, 0x7f]);
  const imports = section(2, [names.length, ...names.flatMap((n) => [...str('env'), ...str(n), 0x00, 0x00])]);
  return new Module(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...types, ...imports]));
}

describe('the start-up check of the wasm (ERR_LLHTTP_WASM)', () => {
  const require = createRequire(import.meta.url);

  it.each(['llhttp_simd-wasm.js', 'llhttp-wasm.js'])('undici\'s %s fits the bindings', (file) => {
    expect(llhttpMismatch(new Module(require(`undici/lib/llhttp/${file}`) as Buffer))).toBeNull();
  });

  it('a wasm with an import not bound here, callbacks it no longer imports and exports gone is described by name', () => {
    const problem = llhttpMismatch(moduleImporting(['wasm_on_url', 'wasm_on_telemetry']));
    expect(problem).toContain('imports env.wasm_on_telemetry, which it does not bind');
    expect(problem).toContain('no longer imports wasm_on_message_begin, wasm_on_status,');
    expect(problem).not.toMatch(/no longer imports [^;]*wasm_on_url/);
    expect(problem).toContain('does not export memory, llhttp_alloc,');
  });
});
