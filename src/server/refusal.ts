/**
 * A client refused for its certificate learns why, never from a bare reset (SPEC §4). The
 * refusal is judged after the TLS handshake (tls/verify.ts), where OpenSSL has no alert left to
 * send, so the sidecar answers in the protocol ALPN chose, without reading a byte the client
 * sent: HTTP/1.1 an unsolicited `400 {"error":"certificate_refused"}` with `Connection: close`
 * (nginx answers its "SSL certificate error" 400 the same way); HTTP/2 its SETTINGS (the server
 * preface must come first, RFC 9113 §3.4) and a GOAWAY naming no stream, whose debug data is
 * the same JSON body. Then close_notify and FIN: a client that checks (openssl s_client, rustls)
 * sees a clean TLS close, not a truncation.
 *
 * Closing a socket with unread input makes the kernel answer with a reset, which can overtake
 * the refusal in the client's receive queue. So whatever arrives after the refusal is read and
 * dropped, unparsed, until the client closes or REFUSAL_LINGER_MS pass (nginx's lingering
 * close), and only then is the socket destroyed.
 */
import type { TLSSocket } from 'node:tls';
import { T_GOAWAY, frame, settingsFrame } from '../transport/h2/frames.js';
import { certificateRefusal, certificateRefusalBody } from './respond.js';

/** How long a refused client has to read the refusal and close. */
export const REFUSAL_LINGER_MS = 2000;

/** RFC 9113 §7: the peer does not meet the minimum security requirements. */
const INADEQUATE_SECURITY = 0xc;

/** SETTINGS (empty: the defaults) then GOAWAY(last stream 0, INADEQUATE_SECURITY, the JSON body as debug data). */
function h2Refusal(body: string): Buffer {
  const debug = Buffer.from(body, 'latin1');
  const payload = Buffer.alloc(8 + debug.length);
  payload.writeUInt32BE(0, 0);
  payload.writeUInt32BE(INADEQUATE_SECURITY, 4);
  debug.copy(payload, 8);
  return Buffer.concat([settingsFrame([]), frame(T_GOAWAY, 0, 0, payload)]);
}

function discard(): void {
  // Lingering close: input is read so the kernel has nothing unread to reset over; never parsed.
}

function destroyRefused(socket: TLSSocket): void {
  socket.destroy();
}

const FLUSH = Buffer.alloc(0);

/** Answer a refused client on its TLS socket and close it (the caller has audited the refusal). */
export function refuseCertificate(socket: TLSSocket, requestId: string, lingerMs = REFUSAL_LINGER_MS): void {
  socket.on('error', discard);
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.on('data', discard);
  const bytes = socket.alpnProtocol === 'h2' ? h2Refusal(certificateRefusalBody(requestId)) : certificateRefusal(requestId);
  // end() only once every record before it is on the wire: Node's TLS socket writes its
  // close_notify at end() only if no other write is in flight (TLS 1.3 session tickets are
  // written right after the handshake, which is where this runs); otherwise the close_notify is
  // queued behind the FIN and lost, and the client sees a bare EOF. An empty write completes
  // only after all pending encrypted output has been written.
  socket.write(bytes, (err) => {
    if (err != null) return socket.destroy();
    socket.write(FLUSH, (e) => (e == null ? socket.end() : socket.destroy()));
  });
  setTimeout(destroyRefused, lingerMs, socket).unref();
}
