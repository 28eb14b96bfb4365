/**
 * SPEC §4: "A client refused for its certificate learns why, never from a bare reset." A real
 * TLS client presents each kind of refused certificate over HTTP/1.1 and over h2 (ALPN), sends
 * its request at once, and must read the unsolicited 400 (HTTP/1.1) or SETTINGS + GOAWAY whose
 * debug data says certificate_refused (HTTP/2), then close_notify; the app receives nothing; the
 * audit line keeps the precise reason. Handshakes OpenSSL itself refuses (protocol versions,
 * cipher suites) still end in a TLS alert: test/integration/tls-protocol.test.ts.
 */
import { execFile } from 'node:child_process';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PkiEntry } from '../helpers/pki.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt, serverTrust } from '../helpers/tls-probe.js';
import type { WireRefusal } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');
const c = pki.clients;
/** node-forge keys and SHA-1 signatures: let the client side even load and offer them. */
const LOW_SECLEVEL = { ciphers: 'DEFAULT:@SECLEVEL=0' };

let app: Upstream;
/** clientCAs: [root], crls: [root CRL] */
let rootCrl: RunningSidecar;
/** clientCAs: [], pins: [pinned] */
let pinsOnly: RunningSidecar;
/** as rootCrl, on node:http2 (MTLS_SIDECAR_HTTP2=node) */
let nodeEngine: RunningSidecar;
/** as rootCrl, listen.http2: false */
let h1Only: RunningSidecar;
/** clientCAs: [deep root]: chain5 has one CA too many above its leaf */
let deep: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  const withCrl = baseConfig(pki, app.url, { tls: { clientCAs: [pki.rootCa.cert], crls: [pki.crls.root] } });
  [rootCrl, pinsOnly, h1Only, deep] = await Promise.all([
    startSidecar(withCrl),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [], pins: [`sha256:${c.pinned.sha256}`] } })),
    startSidecar({ ...withCrl, listen: { http2: false } }),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.deepRootCa.cert] } })),
  ]);
  // The HTTP/2 engine is chosen when the listener is created.
  const before = process.env['MTLS_SIDECAR_HTTP2'];
  process.env['MTLS_SIDECAR_HTTP2'] = 'node';
  try {
    nodeEngine = await startSidecar(withCrl);
  } finally {
    if (before === undefined) delete process.env['MTLS_SIDECAR_HTTP2'];
    else process.env['MTLS_SIDECAR_HTTP2'] = before;
  }
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([rootCrl, pinsOnly, nodeEngine, h1Only, deep].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

interface Case {
  readonly reason: string;
  readonly sidecar: () => RunningSidecar;
  readonly client: PkiEntry | null;
  readonly extra?: object;
}

const CASES: readonly Case[] = [
  { reason: 'untrusted', sidecar: () => rootCrl, client: c.foreign },
  { reason: 'expired', sidecar: () => rootCrl, client: c.expired },
  { reason: 'not_yet_valid', sidecar: () => rootCrl, client: c.notYetValid },
  { reason: 'revoked', sidecar: () => rootCrl, client: c.revoked },
  { reason: 'bad_eku', sidecar: () => rootCrl, client: c.serverAuthOnly },
  { reason: 'ca_leaf', sidecar: () => rootCrl, client: c.caTrueLeaf },
  { reason: 'weak_key', sidecar: () => rootCrl, client: c.rsa1024, extra: LOW_SECLEVEL },
  { reason: 'weak_signature', sidecar: () => rootCrl, client: c.sha1, extra: LOW_SECLEVEL },
  { reason: 'pin_mismatch', sidecar: () => pinsOnly, client: c.unpinned },
  { reason: 'chain_too_long', sidecar: () => deep, client: c.chain5 },
  { reason: 'no_cert', sidecar: () => rootCrl, client: null },
];

async function refused(sc: RunningSidecar, k: Case, alpn: 'http/1.1' | 'h2'): Promise<{ outcome: WireRefusal; line: Record<string, unknown> }> {
  const opts = k.client === null ? serverTrust(pki) : presenting(pki, k.client, { extra: { ...k.extra } });
  const before = app.seen.length;
  const r = await refusedAttempt(sc, opts, alpn);
  expectCertificateRefusal(r);
  expect(r.outcome.alpn).toBe(alpn);
  expect(r.line).toMatchObject({ msg: 'handshake_rejected', reason: k.reason });
  if (k.client !== null) expect(r.line['certSha256']).toBe(hexThumbprint(k.client));
  expect(app.seen.length - before).toBe(0);
  return r;
}

describe('a refused client is told, in the protocol ALPN chose (own HTTP/2 engine)', () => {
  for (const alpn of ['http/1.1', 'h2'] as const) {
    it.each(CASES.map((k) => [k.reason, k] as const))(`${alpn}: %s`, async (_reason, k) => {
      await refused(k.sidecar(), k, alpn);
    });
  }

  it('the body says only certificate_refused: the precise reason is in the audit line alone', async () => {
    const r = await refused(rootCrl, CASES[1]!, 'http/1.1');
    expect(JSON.stringify(r.outcome.body)).not.toContain('expired');
    expect(r.outcome.head).not.toContain('expired');
  });

  it('HTTP/1.1: a client still uploading its body reads the refusal and the end of the stream, no reset (lingering close)', async () => {
    const before = app.seen.length;
    const mark = rootCrl.audit.lines.length;
    const o = await new Promise<{ text: string; ended: boolean; error: string | null; sent: number }>((resolve) => {
      let text = '';
      let ended = false;
      let error: string | null = null;
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const socket = tlsConnect({ host: '127.0.0.1', port: rootCrl.port, ...presenting(pki, c.foreign), ALPNProtocols: ['http/1.1'] }, () => {
        socket.write('POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 16777216\r\n\r\n');
        // Keep uploading (at most the declared 16 MiB) until the server's end arrives.
        const pump = (): void => {
          if (ended || socket.destroyed || sent >= 16 * 1024 * 1024) return;
          sent += chunk.length;
          socket.write(chunk, pump);
        };
        pump();
      });
      socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
      socket.on('end', () => (ended = true));
      socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
      socket.on('close', () => resolve({ text, ended, error, sent }));
    });
    expect(o.text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(o.text).toContain('{"error":"certificate_refused"');
    expect({ ended: o.ended, error: o.error }).toEqual({ ended: true, error: null });
    await rootCrl.audit.waitFor((l) => l.msg === 'handshake_rejected' && l.reason === 'untrusted' && rootCrl.audit.lines.indexOf(l) >= mark);
    expect(app.seen.length - before).toBe(0);
  });

  it('a trusted client on the same sidecar is still served (h2 and HTTP/1.1)', async () => {
    const o = await new Promise<string>((resolve) => {
      let text = '';
      const socket = tlsConnect({ host: '127.0.0.1', port: rootCrl.port, ...presenting(pki, c.orders), ALPNProtocols: ['http/1.1'] }, () =>
        socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
      );
      socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
      socket.on('close', () => resolve(text));
    });
    expect(o).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('the same on node:http2 (MTLS_SIDECAR_HTTP2=node) and with listen.http2: false', () => {
  it.each(['http/1.1', 'h2'] as const)('node:http2 engine, %s: untrusted and no_cert', async (alpn) => {
    await refused(nodeEngine, CASES[0]!, alpn);
    await refused(nodeEngine, CASES[CASES.length - 1]!, alpn);
  });

  it('http2: false, HTTP/1.1: revoked', async () => {
    await refused(h1Only, CASES[3]!, 'http/1.1');
  });
});

describe('what curl and openssl s_client show (docs/reference.md quotes these)', () => {
  const run = (cmd: string, args: string[], input = ''): Promise<{ out: string; code: number } | null> =>
    new Promise((resolve) => {
      const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
        if (err !== null && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(null);
        else resolve({ out: `${stdout}${stderr}`, code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1 });
      });
      child.stdin?.end(input);
    });
  const curlArgs = (sc: RunningSidecar, e: PkiEntry): string[] => [
    '-sS',
    '--cacert', pki.rootCa.cert,
    '--cert', e.cert,
    '--key', e.key,
    '--resolve', `localhost:${sc.port}:127.0.0.1`,
    `https://localhost:${sc.port}/orders/1`,
  ];

  it('curl over HTTP/1.1 prints the JSON body (exit 0; with --fail, 22)', async (ctx) => {
    const r = await run('curl', ['--http1.1', '-w', '\n%{http_code}', ...curlArgs(rootCrl, c.expired)]);
    if (r === null) return ctx.skip();
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\{"error":"certificate_refused","requestId":"[0-9a-f-]{36}"\}\n400$/);
  });

  it('curl over HTTP/2 exits 16 after the GOAWAY; -v shows it', async (ctx) => {
    const r = await run('curl', ['-v', '--http2', ...curlArgs(rootCrl, c.expired)]);
    if (r === null) return ctx.skip();
    expect(r.code).toBe(16);
    expect(r.out).toMatch(/GOAWAY, error=12, last_stream=0/);
    expect(r.out).toContain('curl: (16)');
  });

  // -msg prints every record; "<<<" lines are what the server sent. Without the close_notify
  // s_client ends with "unexpected eof while reading" and exits 1.
  it.for([
    ['TLS 1.3', 'http/1.1', '-tls1_3'],
    ['TLS 1.2', 'http/1.1', '-tls1_2'],
    ['TLS 1.3', 'h2', '-tls1_3'],
    ['TLS 1.2', 'h2', '-tls1_2'],
  ] as const)('openssl s_client (%s, ALPN %s): the refusal, then close_notify, exit 0', async ([, alpn, version], ctx) => {
    const r = await run('openssl', [
      's_client', version, '-alpn', alpn, '-connect', `127.0.0.1:${rootCrl.port}`, '-servername', 'localhost', '-CAfile', pki.rootCa.cert,
      '-cert', c.foreign.cert, '-key', c.foreign.key, '-quiet', '-ign_eof', '-msg',
    ]);
    if (r === null) return ctx.skip();
    if (alpn === 'http/1.1') expect(r.out).toContain('HTTP/1.1 400 Bad Request');
    expect(r.out).toMatch(/\{"error":"certificate_refused","requestId":"[0-9a-f-]{36}"\}/);
    expect(r.out).toMatch(/^<<< TLS 1\.[23], Alert \[length 0002\], warning close_notify$/m);
    expect(r.out).not.toMatch(/unexpected eof|reset by peer|errno=104/);
    expect(r.code).toBe(0);
  });
});
