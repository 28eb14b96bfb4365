/**
 * Is this connection authoritative for the host a request names (RFC 9110 §4.3.4, §7.4)? The
 * sidecar serves one app under one certificate, so, like nginx with a single `server` block,
 * it only refuses (421) a request whose Host/:authority is neither the SNI name the connection
 * was made for nor a name the serving certificate covers: the client is then talking to the
 * wrong origin (domain fronting, a reused connection). A Host that is an IP address names no
 * virtual host and is not checked: clients that dial 127.0.0.1 with an SNI override are normal.
 */
import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

/** The host part of a Host header value: port and IPv6 brackets removed, lower case. */
export function hostName(hostHeader: string): string {
  let name = hostHeader;
  if (name.charCodeAt(0) === 91 /* '[' IPv6 literal */) {
    const end = name.indexOf(']');
    name = end === -1 ? name : name.slice(1, end);
  } else {
    const colon = name.lastIndexOf(':');
    if (colon !== -1) name = name.slice(0, colon);
  }
  return name.toLowerCase();
}

/** True when the request must be answered 421: Host is a DNS name other than the SNI name, not covered by the certificate. */
export function misdirected(sni: string, hostHeader: string, serverLeaf: X509Certificate | null): boolean {
  const name = hostName(hostHeader);
  if (name === sni) return false;
  if (name.endsWith('.') && name.slice(0, -1) === sni) return false;
  if (isIP(name) !== 0) return false;
  // checkHost applies RFC 6125 rules (DNS SANs, wildcards in the left-most label; CN only without SANs).
  return serverLeaf === null || serverLeaf.checkHost(name) === undefined;
}
