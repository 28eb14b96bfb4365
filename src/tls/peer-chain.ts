/**
 * The certificates a client presented above its leaf, as the sidecar sees them: the leaf from
 * `getPeerX509Certificate()`, then its `issuerCertificate` links (the peer chain OpenSSL kept,
 * in the order the client sent it).
 *
 * Node reads the peer certificate itself before it emits `secureConnection` (since the TLS 1.3
 * resumption fix, nodejs/node#64677, in 24.x and 26.x), through X509Certificate::GetPeerCert,
 * whose issuer walk takes each intermediate out of OpenSSL's peer chain as it goes
 * (nodejs/node#65579, fixed upstream by #65602). Every later read, `getPeerCertificate(true)`
 * included, then sees the leaf alone. keepPeerChain() makes the read idempotent, as Node's own
 * QUIC code does for the same reason: the first result is kept per TLS handle and handed back
 * on every later call, so the sidecar sees what Node saw. On a Node without the bug it changes
 * nothing. test/integration/tls-trust.test.ts fails if neither Node nor this gives the chain.
 *
 * A kept certificate is the one of the first handshake on that connection: the sidecar refuses
 * renegotiation (tls/context.ts), so there is no second one.
 */
import type { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

/** Longest chain read above a leaf: OpenSSL verified it, this only bounds the walk. */
export const PRESENTED_MAX = 16;

interface PeerCertHandle {
  getPeerX509Certificate?: (this: object) => unknown;
}

let installed: boolean | null = null;

/** Install the idempotent read (once per process); false if Node's internals moved. */
export function keepPeerChain(): boolean {
  if (installed !== null) return installed;
  // Any TLS socket's handle has the TLSWrap prototype; a socket with nothing under it is enough.
  const probe = new tls.TLSSocket(new net.Socket());
  const handle = (probe as unknown as { _handle?: object | null })._handle;
  probe.destroy();
  const proto = handle == null ? null : (Object.getPrototypeOf(handle) as PeerCertHandle | null);
  const read = proto?.getPeerX509Certificate;
  if (proto == null || typeof read !== 'function') return (installed = false);
  const kept = new WeakMap<object, unknown>();
  proto.getPeerX509Certificate = function keptPeerX509Certificate(this: object): unknown {
    const had = kept.get(this);
    if (had !== undefined) return had;
    const cert = read.call(this);
    if (cert != null) kept.set(this, cert);
    return cert;
  };
  return (installed = true);
}

/** What the client sent after its leaf, in its order (unverified: OpenSSL judged the chain). */
export function presentedChain(leaf: X509Certificate): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (let c = leaf.issuerCertificate; c !== undefined && out.length < PRESENTED_MAX; c = c.issuerCertificate) out.push(c);
  return out;
}
