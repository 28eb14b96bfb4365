/**
 * Handshake probes for the TLS integration tests: build client options straight from the test
 * PKI, connect over real TLS on loopback, and pick out the audit lines that one attempt caused.
 */
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import type tls from 'node:tls';
import { expect } from 'vitest';
import { ErrorCode, FrameReader, FrameType, PREFACE, headers, parseGoAway, requestBlock, settings } from '../adversarial/h2frames.js';
import type { GoAway } from '../adversarial/h2frames.js';
import type { AuditLine } from './audit-sink.js';
import { parseResponses, tryRequest } from './client.js';
import type { HandshakeOutcome } from './client.js';
import type { PkiEntry, TestPki } from './pki.js';
import type { RunningSidecar } from './sidecar.js';

/** Client options that trust the sidecar's server cert (issued by the test root CA). */
export function serverTrust(pki: TestPki): tls.ConnectionOptions {
  return { ca: readFileSync(pki.rootCa.cert), servername: 'localhost' };
}

export interface PresentOptions {
  /** Present the leaf alone even when the entry has a chain file. */
  leafOnly?: boolean;
  /** Extra client-side TLS options (versions, ciphers, security level...). */
  extra?: tls.ConnectionOptions;
}

/** Client options presenting `entry` (leaf followed by its intermediates, unless leafOnly). */
export function presenting(pki: TestPki, entry: PkiEntry, opts: PresentOptions = {}): tls.ConnectionOptions {
  const certFile = opts.leafOnly === true ? entry.cert : (entry.chain ?? entry.cert);
  return {
    ...serverTrust(pki),
    cert: readFileSync(certFile),
    key: readFileSync(entry.key),
    ...opts.extra,
  };
}

/** Lower-case hex SHA-256 of a leaf, as the audit log and XFCC carry it. */
export function hexThumbprint(entry: PkiEntry): string {
  return entry.sha256.replaceAll(':', '').toLowerCase();
}

export interface Attempt {
  readonly outcome: HandshakeOutcome;
  /** Every audit line written from the start of the attempt until it settled. */
  readonly lines: AuditLine[];
  /** The handshake_rejected lines among them. */
  readonly rejections: AuditLine[];
}

/** One connection + `GET /healthz`; collects the audit lines it produced. */
export async function attempt(sc: RunningSidecar, opts: tls.ConnectionOptions, timeoutMs = 5000): Promise<Attempt> {
  const mark = sc.audit.lines.length;
  const outcome = await tryRequest(sc.port, opts, timeoutMs);
  const lines = sc.audit.lines.slice(mark);
  return { outcome, lines, rejections: lines.filter((l) => l.msg === 'handshake_rejected') };
}

/** What a client saw on a connection refused after the handshake (SPEC §4), or how it failed. */
export interface WireRefusal {
  /** The protocol ALPN chose (false: none). */
  readonly alpn: string | false | null;
  /** HTTP/1.1: the response status; HTTP/2: null (no stream is answered). */
  readonly status: number | null;
  /** HTTP/1.1: the response head, lower-cased ('' on HTTP/2). */
  readonly head: string;
  /** The JSON of the HTTP/1.1 body or of the HTTP/2 GOAWAY's debug data. */
  readonly body: Record<string, unknown> | null;
  /** HTTP/2: the frame types received, in order. */
  readonly frames: readonly number[];
  readonly goaway: GoAway | null;
  /**
   * The connection ended ('end'), not with a reset. (Node's client ends the same way whether a
   * close_notify came before the FIN or not: openssl s_client -msg checks that one, in
   * tls-refusal.test.ts.)
   */
  readonly ended: boolean;
  /** The error the client got, if any (a TLS alert during the handshake, a reset). */
  readonly error: string | null;
}

/**
 * Connect with one ALPN protocol, send a request at once (HTTP/1.1: GET /healthz; HTTP/2: the
 * preface, SETTINGS and a GET), and read until the server closes: what a refused client sees.
 */
export function probeRefusal(port: number, opts: tls.ConnectionOptions, alpn: 'http/1.1' | 'h2', timeoutMs = 5000): Promise<WireRefusal> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    let error: string | null = null;
    let settled = false;
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...opts, ALPNProtocols: [alpn] }, () => {
      if (alpn === 'h2') socket.write(Buffer.concat([PREFACE, settings(), headers(1, requestBlock('/healthz'), { endStream: true })]));
      else socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    });
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(readRefusal(Buffer.concat(chunks), socket.alpnProtocol ?? null, ended, error));
    };
    const timer = setTimeout(() => {
      error ??= 'timeout';
      done();
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => {
      ended = true;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on('close', done);
  });
}

function readRefusal(bytes: Buffer, alpn: string | false | null, ended: boolean, error: string | null): WireRefusal {
  const json = (text: string): Record<string, unknown> | null => {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  if (alpn === 'h2') {
    const frames = new FrameReader().push(bytes);
    const g = frames.find((f) => f.type === FrameType.GOAWAY);
    const goaway = g === undefined ? null : parseGoAway(g);
    return { alpn, status: null, head: '', body: goaway === null ? null : json(goaway.debug), frames: frames.map((f) => f.type), goaway, ended, error };
  }
  const [res] = parseResponses(bytes.toString('latin1'));
  return {
    alpn,
    status: res?.status ?? null,
    head: res?.head.toLowerCase() ?? '',
    body: res === undefined ? null : json(res.body),
    frames: [],
    goaway: null,
    ended,
    error,
  };
}

/**
 * A refused attempt: connect (HTTP/1.1 unless told), then wait (bounded) for the
 * handshake_rejected line it caused. Throws at once if the request was served instead, and
 * (with every audit line) if no handshake_rejected line arrives; the caller asserts what the
 * client saw (expectCertificateRefusal) and the reason.
 */
export async function refusedAttempt(
  sc: RunningSidecar,
  opts: tls.ConnectionOptions,
  alpn: 'http/1.1' | 'h2' = 'http/1.1',
  timeoutMs = 5000,
): Promise<{ outcome: WireRefusal; line: AuditLine; raw: string }> {
  const mark = sc.audit.lines.length;
  const outcome = await probeRefusal(sc.port, opts, alpn, timeoutMs);
  if (outcome.status !== null && outcome.status < 400) {
    const since = sc.audit.raw.slice(mark).join('\n');
    throw new Error(`expected the certificate to be refused, but got HTTP ${outcome.status}; audit lines since:\n${since}`);
  }
  const line = await sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && sc.audit.lines.indexOf(l) >= mark);
  const raw = sc.audit.raw[sc.audit.lines.indexOf(line)] ?? '';
  return { outcome, line, raw };
}

/**
 * SPEC §4 on the wire: HTTP/1.1 an unsolicited 400 `{"error":"certificate_refused"}` with
 * `Connection: close`; HTTP/2 SETTINGS then a GOAWAY (no stream, INADEQUATE_SECURITY) whose debug
 * data is that body; both carry the requestId of the audit line and end without a reset.
 */
export function expectCertificateRefusal(r: { outcome: WireRefusal; line: AuditLine }): void {
  const o = r.outcome;
  const requestId = r.line['requestId'];
  expect(typeof requestId).toBe('string');
  expect(o.body).toEqual({ error: 'certificate_refused', requestId });
  expect({ ended: o.ended, error: o.error }).toEqual({ ended: true, error: null });
  if (o.alpn === 'h2') {
    expect(o.frames[0]).toBe(FrameType.SETTINGS);
    expect(o.frames.at(-1)).toBe(FrameType.GOAWAY);
    expect(o.goaway).toMatchObject({ lastStreamId: 0, errorCode: ErrorCode.INADEQUATE_SECURITY });
  } else {
    expect(o.status).toBe(400);
    expect(o.head).toContain('\r\nconnection: close');
    expect(o.head).toContain('\r\ncontent-type: application/json');
    expect(o.head).toContain(`\r\nx-request-id: ${String(requestId)}`);
  }
}

export type Negotiation =
  | { ok: true; protocol: string | null; cipher: tls.CipherNameAndProtocol }
  | { ok: false; error: string };

/** Complete a handshake only (no HTTP) and report what was negotiated, or how it failed. */
export function negotiate(port: number, opts: tls.ConnectionOptions, timeoutMs = 5000): Promise<Negotiation> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (n: Negotiation): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // A clean close after success, so the server sees no aborted handshake.
      if (n.ok) socket.end();
      else socket.destroy();
      resolve(n);
    };
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () =>
      done({ ok: true, protocol: socket.getProtocol(), cipher: socket.getCipher() }),
    );
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeoutMs);
    socket.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
    socket.on('close', () => done({ ok: false, error: 'closed' }));
  });
}
