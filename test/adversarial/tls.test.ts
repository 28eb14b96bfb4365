/**
 * TLS (SPEC §4 protective defaults). Most refusals already have real-handshake tests
 * in test/integration; they are listed here rather than repeated:
 *
 *   TLS 1.0 / 1.1 refused ............ integration/tls-protocol.test.ts "protocol versions"
 *   weak / non-ECDHE / CBC suites .... integration/tls-protocol.test.ts "TLS 1.2 cipher suites"
 *   CA:TRUE leaf, RSA-1024, SHA-1 .... integration/tls-trust.test.ts "protective defaults on the leaf"
 *   chain deeper than 4 CAs .......... integration/tls-trust.test.ts "chain depth" (it.skip: KNOWN GAP,
 *                                      Node exposes neither the verified chain nor a verify depth)
 *   resumption (ticket / TLS 1.3 PSK)  integration/reload.test.ts "trust withdrawal"
 *   after the client's CA is withdrawn
 *
 * New here: client-initiated renegotiation, SNI that names another host than the request, and
 * 0-RTT. testssl.sh runs in testssl.test.ts.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tlsOptions } from '../helpers/client.js';
import { orders, pki, rawConnect, startTarget, statusLines } from './harness.js';
import type { Target } from './harness.js';

let t: Target;
beforeAll(async () => {
  t = await startTarget();
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

describe('client-initiated renegotiation is refused (CVE-2009-3555, CVE-2011-1473; RFC 5746; SPEC §4)', () => {
  it('TLS 1.2: socket.renegotiate() gets a no_renegotiation alert and the connection ends; no request is served after it', async () => {
    const c = await rawConnect(t.sc.port, orders(), { maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] });
    const errors: string[] = [];
    c.socket.on('error', (e: Error) => errors.push(e.message));
    const before = t.app.seen.length;
    const outcome = await new Promise<string>((resolve) => {
      const started = c.socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err == null ? 'renegotiated' : 'error'));
      if (!started) resolve('not started');
      c.socket.once('close', () => resolve('closed'));
      setTimeout(() => resolve('no answer'), 1000).unref();
    });
    expect(outcome).not.toBe('renegotiated');
    await c.write('GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    await c.waitClosed(2000);
    expect(statusLines(c.received())).toEqual([]);
    expect(errors.join(' ')).toMatch(/no renegotiation|EPROTO|ECONNRESET/i);
    expect(t.app.seen.length - before).toBe(0);
    c.destroy();
  });

  it('TLS 1.3 has no renegotiation at all (RFC 8446 §4.6.3): the client cannot start one and the connection serves on', async () => {
    const c = await rawConnect(t.sc.port, orders(), { minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] });
    expect(c.socket.getProtocol()).toBe('TLSv1.3');
    expect(c.socket.renegotiate({}, () => undefined)).toBe(false);
    await c.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    await c.waitClosed(2000);
    expect(statusLines(c.received())).toEqual([200]);
  });
});

/**
 * SNI naming another host than the request (RFC 6066 §11.1: a server that relies on the names
 * being the same MUST check that the client did not present a different name in the application
 * protocol; RFC 9110 §15.5.20 421 Misdirected Request, §4.3.4 an https origin is authoritative
 * only under a certificate valid for it; RFC 9113 §9.1.1 connection reuse). Peer behaviour:
 * nginx answers 421 when Host selects another virtual server than SNI did under
 * ssl_verify_client (with one server block it never does); Apache httpd 2.4.64 tightened the same
 * check (CVE-2025-23048). The sidecar has one origin under one certificate: a Host that is the
 * SNI name or a name the certificate covers is served; any other DNS name is refused with 421
 * before it reaches the app; an IP-address Host names no virtual host and is served (clients that
 * dial 127.0.0.1 with an SNI override are the common case for a sidecar).
 */
describe('SNI and Host must name the same host (RFC 6066 §11.1, RFC 9110 §15.5.20 421)', () => {
  async function h1(servername: string | undefined, hostHeader: string): Promise<{ status: number | undefined; forwarded: boolean }> {
    const before = t.app.seen.length;
    const c = await rawConnect(t.sc.port, orders(), {
      ...(servername === undefined ? { servername: '' } : { servername }),
      // The attacker does not care that the certificate is for localhost.
      checkServerIdentity: () => undefined,
      ALPNProtocols: ['http/1.1'],
    });
    await c.write(`GET /orders/1 HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
    await c.waitClosed(2000);
    c.destroy();
    return { status: statusLines(c.received())[0], forwarded: t.app.seen.length > before };
  }

  it('SNI localhost with Host localhost:<port> is served (the port is not part of the name)', async () => {
    expect(await h1('localhost', `localhost:${t.sc.port}`)).toEqual({ status: 200, forwarded: true });
  });

  it('no SNI at all (connected by IP address) is not checked', async () => {
    expect(await h1(undefined, 'localhost')).toEqual({ status: 200, forwarded: true });
  });

  it('HTTP/1.1: SNI localhost with Host admin.internal is refused with 421 and not forwarded', async () => {
    expect(await h1('localhost', 'admin.internal')).toEqual({ status: 421, forwarded: false });
  });

  it('HTTP/1.1: SNI admin.internal with Host localhost (a name the certificate covers) is served', async () => {
    expect(await h1('admin.internal', 'localhost')).toEqual({ status: 200, forwarded: true });
  });

  it('HTTP/1.1: SNI admin.internal with Host api.internal (neither SNI nor covered) is refused with 421', async () => {
    expect(await h1('admin.internal', 'api.internal')).toEqual({ status: 421, forwarded: false });
  });

  it('SNI localhost with an IP-address Host (127.0.0.1:<port>, [::1]) is served', async () => {
    expect(await h1('localhost', `127.0.0.1:${t.sc.port}`)).toEqual({ status: 200, forwarded: true });
    expect(await h1('localhost', '[::1]')).toEqual({ status: 200, forwarded: true });
  });

  it('Host case and a trailing dot do not make a request misdirected', async () => {
    expect(await h1('localhost', `LocalHost.:${t.sc.port}`)).toEqual({ status: 200, forwarded: true });
  });

  it('one keep-alive connection: a served Host does not let a later misdirected one through', async () => {
    const before = t.app.seen.length;
    const c = await rawConnect(t.sc.port, orders(), { servername: 'localhost', checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    await c.write(
      `GET /orders/1 HTTP/1.1\r\nHost: localhost:${t.sc.port}\r\n\r\n` +
        'GET /orders/2 HTTP/1.1\r\nHost: api.internal\r\n\r\n' +
        `GET /orders/3 HTTP/1.1\r\nHost: localhost:${t.sc.port}\r\nConnection: close\r\n\r\n`,
    );
    await c.waitClosed(2000);
    c.destroy();
    expect({ statuses: statusLines(c.received()), forwarded: t.app.seen.length - before }).toEqual({ statuses: [200, 421, 200], forwarded: 2 });
  });

  it('HTTP/2: :authority admin.internal on a connection made for localhost is refused with 421', async () => {
    const before = t.app.seen.length;
    const session = http2.connect(t.sc.origin, { ...tlsOptions(orders()) });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ':path': '/orders/1', ':authority': 'admin.internal' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.end();
      });
      expect({ status, forwarded: t.app.seen.length > before }).toEqual({ status: 421, forwarded: false });
    } finally {
      session.destroy();
    }
  });
});

describe('no 0-RTT (RFC 8446 §8 replay; SPEC §4 "no 0-RTT")', () => {
  const run = (args: string[], input: string): Promise<{ out: string; code: number }> =>
    new Promise((resolve) => {
      const child = execFile('openssl', args, { timeout: 10_000 }, (err, stdout, stderr) =>
        resolve({ out: `${stdout}${stderr}`, code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1 }),
      );
      // s_client may exit (and close its stdin) before it reads the input: its output says what
      // happened, so a write on the closed pipe is not an error of the test.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });

  it('session tickets carry max_early_data 0 and a resumed client cannot send early data (openssl s_client)', async (ctx) => {
    const probe = await run(['version'], '');
    if (probe.code !== 0) ctx.skip();
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-0rtt-'));
    try {
      const sess = path.join(dir, 'sess.pem');
      const req = path.join(dir, 'req.txt');
      const request = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
      await writeFile(req, request);
      const common = ['-connect', `127.0.0.1:${t.sc.port}`, '-servername', 'localhost', '-tls1_3', '-cert', pki.clients.orders.cert, '-key', pki.clients.orders.key, '-CAfile', pki.rootCa.cert];
      const first = await run(['s_client', ...common, '-sess_out', sess, '-ign_eof', '-quiet'], request);
      expect(first.out).toContain('HTTP/1.1 200');
      const text = await run(['sess_id', '-in', sess, '-noout', '-text'], '');
      expect(text.out).toMatch(/Max Early Data: 0\b/);
      const second = await run(['s_client', ...common, '-sess_in', sess, '-early_data', req], '');
      expect(second.out).toMatch(/^Reused, TLSv1\.3/m);
      expect(second.out).toMatch(/Early data was (not sent|rejected)/);
      expect(second.out).not.toMatch(/Early data was accepted/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
