import { describe, expect, it } from 'vitest';
import { normalizeTarget } from '../../../src/policy/normalize.js';

type Ok = [raw: string, path: string, query?: string];
type Bad = [raw: string, detail: string];

const ACCEPTED: Ok[] = [
  // SPEC §4's examples
  ['/a/../admin', '/admin'],
  ['//admin', '/admin'],
  ['/x/%2e%2e/admin', '/admin'],
  ['/orders?x=1#frag', '/orders', '?x=1'],
  ['/%7Euser', '/~user'],
  ['/caf%c3%a9', '/caf%C3%A9'],
  ['/a;b', '/a;b'],
  // untouched
  ['/', '/'],
  ['/healthz', '/healthz'],
  ['/orders/1', '/orders/1'],
  ['/a/b/', '/a/b/'],
  ['/.well-known/x', '/.well-known/x'],
  ['/a..b/c.d', '/a..b/c.d'],
  ['/a/...', '/a/...'],
  ['/a/.b', '/a/.b'],
  ['/a/b..', '/a/b..'],
  ["/!$&'()*+,;=:@", "/!$&'()*+,;=:@"],
  // dot segments
  ['/a/./b', '/a/b'],
  ['/./a', '/a'],
  ['/.', '/'],
  ['/a/.', '/a/'],
  ['/a/..', '/'],
  ['/a/b/..', '/a/'],
  ['/a/b/../', '/a/'],
  ['/a/b/./', '/a/b/'],
  ['/a/b/../../c', '/c'],
  ['/a/./../b', '/b'],
  ['/x/.%2E/admin', '/admin'],
  ['/x/%2E./admin', '/admin'],
  ['/x/%2e%2E/admin', '/admin'],
  ['/x/%2e/admin', '/x/admin'],
  // repeated slashes: merged, and merged before `..` is applied (nginx merge_slashes)
  ['///', '/'],
  ['/a//b', '/a/b'],
  ['/a///b//', '/a/b/'],
  ['/a//../b', '/b'],
  // percent-encoding
  ['/%41%42%43%61%62%63%30%39%2D%2E%5F%7E', '/ABCabc09-._~'],
  ['/%7e%5f%2d', '/~_-'],
  ['/a%20b', '/a%20b'],
  ['/a%3fb', '/a%3Fb'],
  ['/a%23b', '/a%23b'],
  ['/a%25', '/a%25'],
  ['/%252e%252e/', '/%252e%252e/'],
  ['/%25%32%65', '/%252e'], // %32 -> '2' and %65 -> 'e' are unreserved; %25 stays: still not a dot
  ['/%c0%ae%c0%ae/admin', '/%C0%AE%C0%AE/admin'],
  ['/x/%c0%ae%c0%ae/', '/x/%C0%AE%C0%AE/'],
  ['/%e2%80%ae', '/%E2%80%AE'],
  ['/a%2Cb', '/a%2Cb'],
  ['/%7F', '/%7F'],
  ['/%FF', '/%FF'],
  // query and fragment
  ['/a?', '/a', '?'],
  ['/a?b?c', '/a', '?b?c'],
  ['/a?x=%2F&y=\\..//#f', '/a', '?x=%2F&y=\\..//'],
  ['/a/../b?q=/../', '/b', '?q=/../'],
  ['/a#', '/a'],
  ['/a#x?y', '/a'],
  ['/a#x#y', '/a'],
  ['/a?q#f?g', '/a', '?q'],
];

const refused: Bad[] = [
  ['/%2e%2e/admin', 'dot_dot_above_root'],
  ['/..', 'dot_dot_above_root'],
  ['/../a', 'dot_dot_above_root'],
  ['/a/../..', 'dot_dot_above_root'],
  ['/a/../../b', 'dot_dot_above_root'],
  ['/%2e%2E/', 'dot_dot_above_root'],
  ['/.%2e/', 'dot_dot_above_root'],
  ['/%2E./', 'dot_dot_above_root'],
  ['//..//a', 'dot_dot_above_root'],
  ['/%2e%2e?x#/../..', 'dot_dot_above_root'],
  ['/x%2Fadmin', 'encoded_slash'],
  ['/a%2fb', 'encoded_slash'],
  ['/a/%2F', 'encoded_slash'],
  ['/a%5Cb', 'encoded_backslash'],
  ['/a%5cb', 'encoded_backslash'],
  ['/\\admin', 'backslash'],
  ['/a\\b', 'backslash'],
  ['/a%00', 'nul'],
  ['/a%00b', 'nul'],
  ['/a\u0000b', 'nul'],
  ['/a?x=\u0000', 'nul'],
  ['/%', 'bad_percent'],
  ['/a%', 'bad_percent'],
  ['/a%4', 'bad_percent'],
  ['/a%4/b', 'bad_percent'],
  ['/a%4?x', 'bad_percent'],
  ['/a%zz', 'bad_percent'],
  ['/a%g0', 'bad_percent'],
  ['/a%%41', 'bad_percent'],
  ['/a b', 'bad_char'],
  ['/a\tb', 'bad_char'],
  ['/a\rb', 'bad_char'],
  ['/a\nb', 'bad_char'],
  ['/a\u007fb', 'bad_char'],
  ['/caf\u00e9', 'bad_char'],
  ['/\u2215admin', 'bad_char'],
  ['/a?q=\u00e9', 'bad_char'],
  ['/a#\u00e9', 'bad_char'],
  ['', 'not_origin_form'],
  ['*', 'not_origin_form'],
  ['admin', 'not_origin_form'],
  ['http://example.com/a', 'not_origin_form'],
  ['example.com:443', 'not_origin_form'],
  ['?x=1', 'not_origin_form'],
  ['\\admin', 'not_origin_form'],
];

describe('normalizeTarget', () => {
  it.each(ACCEPTED)('%j -> %j', (raw, path, query = '') => {
    expect(normalizeTarget(raw)).toEqual({ ok: true, path, query });
  });

  it.each(refused)('%j is refused (%s)', (raw, detail) => {
    expect(normalizeTarget(raw)).toEqual({ ok: false, reason: 'bad_path', detail });
  });

  it('returns the very same string for a path that needs no work', () => {
    const raw = '/orders/123/items';
    const r = normalizeTarget(raw);
    expect(r.ok && r.path).toBe(raw);
  });

  it('is idempotent and its output needs no further work', () => {
    for (const [raw] of ACCEPTED) {
      const once = normalizeTarget(raw);
      if (!once.ok) throw new Error(`unexpected refusal of ${raw}`);
      expect(normalizeTarget(once.path)).toEqual({ ok: true, path: once.path, query: '' });
    }
  });

  it('holds its invariants on random targets', () => {
    const alphabet = ['/', '/', '/', '.', '.', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'a', 'b', '~', '?', '#', '\\', '0', '7', ';', '%2e', '%2F', '%2E%2e', '..', '%25', '%c0%ae'];
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let k = 0; k < 5000; k++) {
      let raw = '/';
      const len = rand(14);
      for (let i = 0; i < len; i++) raw += alphabet[rand(alphabet.length)] ?? '';
      const r = normalizeTarget(raw);
      if (!r.ok) continue;
      const p = r.path;
      expect(p.startsWith('/')).toBe(true);
      expect(p).not.toMatch(/\/\//);
      expect(p).not.toMatch(/(^|\/)\.\.?(\/|$)/);
      expect(p).not.toMatch(/\\|#|\?/);
      expect(p).not.toMatch(/%(?![0-9A-F]{2})/);
      expect(p).not.toMatch(/%(?:2F|5C|00|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)/);
      expect(normalizeTarget(p)).toEqual({ ok: true, path: p, query: '' });
    }
  });
});
