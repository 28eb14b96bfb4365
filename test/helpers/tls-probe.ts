/**
 * Handshake probes for the TLS integration tests: build client options straight from the test
 * PKI, connect over real TLS on loopback, and pick out the audit lines that one attempt caused.
 */
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import type tls from 'node:tls';
import type { AuditLine } from './audit-sink.js';
import { tryRequest } from './client.js';
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

/**
 * A refused attempt: connect, then wait (bounded) for the handshake_rejected line it caused.
 * Throws at once if an HTTP response came back instead, and (with every audit line) if no
 * handshake_rejected line arrives; the caller asserts the outcome and the reason.
 */
export async function refusedAttempt(
  sc: RunningSidecar,
  opts: tls.ConnectionOptions,
  timeoutMs = 5000,
): Promise<{ outcome: HandshakeOutcome; line: AuditLine; raw: string }> {
  const mark = sc.audit.lines.length;
  const outcome = await tryRequest(sc.port, opts, timeoutMs);
  if (outcome.ok) {
    const since = sc.audit.raw.slice(mark).join('\n');
    throw new Error(`expected the handshake to be refused, but got HTTP ${outcome.status}; audit lines since:\n${since}`);
  }
  const line = await sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && sc.audit.lines.indexOf(l) >= mark);
  const raw = sc.audit.raw[sc.audit.lines.indexOf(line)] ?? '';
  return { outcome, line, raw };
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
