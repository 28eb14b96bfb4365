/** proxy/headers.ts responseHeaders: the upstream client's raw response header strings -> client headers. */
import { describe, expect, it } from 'vitest';
import { responseHeaders } from '../../../src/proxy/headers.js';

const raw = (...pairs: string[]): string[] => pairs;

describe('responseHeaders', () => {
  it('lower-cases names, keeps repeats as separate values, sets the request id and security headers', () => {
    const out = responseHeaders(raw('Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'X-Request-Id', 'from-app'), 'rid-1', true);
    expect(out).toEqual({
      'content-type': 'text/plain',
      'set-cookie': ['a=1', 'b=2'],
      'x-request-id': 'rid-1',
      'strict-transport-security': 'max-age=31536000',
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    });
  });

  it("leaves the app's own security headers alone, and adds none when turned off", () => {
    expect(responseHeaders(raw('X-Frame-Options', 'SAMEORIGIN'), 'r', true)['x-frame-options']).toBe('SAMEORIGIN');
    expect(Object.keys(responseHeaders(raw('a', 'b'), 'r', false))).toEqual(['a', 'x-request-id']);
  });

  it('drops hop-by-hop headers and whatever Connection names, wherever Connection comes', () => {
    const out = responseHeaders(raw('X-Secret-Hop', 's', 'Keep-Alive', 'timeout=5', 'Connection', 'x-secret-hop, close', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c', 'X-Kept', 'k'), 'r', false);
    expect(out).toEqual({ 'x-kept': 'k', 'x-request-id': 'r' });
  });

  it('a header named like an Object.prototype member is a plain header; __proto__ is dropped', () => {
    const out = responseHeaders(raw('Constructor', 'c1', 'constructor', 'c2', 'toString', 't', '__proto__', 'x'), 'r', false);
    expect(out['constructor']).toEqual(['c1', 'c2']);
    expect(out['tostring']).toBe('t');
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.hasOwn(out, '__proto__')).toBe(false);
  });

  it('bytes above 0x7f survive as latin1 (written back out byte for byte)', () => {
    const value = Buffer.from([0x63, 0xe9, 0xff]);
    const out = responseHeaders(['x-bin', value.toString('latin1')], 'r', false);
    expect(Buffer.from(out['x-bin'] as string, 'latin1').equals(value)).toBe(true);
  });
});
