/**
 * A destination's connections: the upstream client on undici's Pool (proxy/undici-upstream.ts:
 * keep-alive, a connection cap, HTTP/2 by ALPN when the destination allows it, the same
 * UpstreamHandler interface and error codes as the app-bound hop), whose every connection is
 * made by a client with the outbound connector, so it is verified before it carries a request.
 *
 * One pool per generation of the destination's TLS settings (`poolKey`): a rotated certificate
 * or a changed `expect`/`trust` gets a new pool, and the old one is closed gracefully (in-flight
 * requests finish, idle connections close).
 */
import type { Client as UndiciClient, Dispatcher } from 'undici';
import { AuditOutboundConn } from '../audit/audit.js';
import type { OutboundDestination, OutboundSettings } from '../config/snapshot.js';
import type { OutboundHandshakeReason } from '../reasons.js';
import { UndiciUpstream, undiciClientParts } from '../proxy/undici-upstream.js';
import type { TaggedDispatchOptions } from '../proxy/undici-upstream.js';
import type { UpstreamHandler, UpstreamOptions, UpstreamRequest } from '../proxy/upstream.js';
import { outboundConnector } from './connector.js';
import type { ConnectorHooks, PeerSlot } from './connector.js';

/** What the connector recorded about a client's current connection. */
export interface ConnectionSlot extends PeerSlot {
  protocol: string | null;
  /** The last connection attempt's server was refused (the requests it failed name the reason). */
  refused: OutboundHandshakeReason | null;
  /** The verified connection's audit fields, serialized once for all its requests (null while none). */
  audit: AuditOutboundConn | null;
}

/** What a request learns about the connection that carried it: the slot of the client that took it. */
export interface OutboundLeg {
  slot: ConnectionSlot | null;
}

/** undici's Client, loaded on first use (as proxy/undici-upstream.ts loads its Pool). */
let parts: ReturnType<typeof undiciClientParts> | null = null;

export class DestinationPool {
  readonly key: string;
  readonly #client: UndiciUpstream;

  constructor(dest: OutboundDestination, settings: OutboundSettings, hooks: ConnectorHooks, now: () => number, onInternalError: UpstreamOptions['onInternalError']) {
    this.key = dest.poolKey;
    parts ??= undiciClientParts();
    const { Client, buildConnector } = parts;
    const m = settings.material;
    const tls = { cert: m.cert.toString('latin1'), key: m.key.toString('latin1'), ca: m.ca.map((b) => b.toString('latin1')), minVersion: settings.minVersion };
    const connectorOptions = { tls, serverName: dest.serverName, expect: dest.expectMatcher, connectTimeoutMs: dest.connectTimeoutMs, allowH2: dest.http2, now };
    // The origin names the target; SNI and the checks come from the destination.
    const origin = `https://${dest.host.includes(':') ? `[${dest.host}]` : dest.host}:${String(dest.port)}`;
    this.#client = new UndiciUpstream(
      { origin, connectTimeoutMs: dest.connectTimeoutMs, timeoutMs: dest.timeoutMs, ...(onInternalError !== undefined ? { onInternalError } : {}) },
      {
        connections: dest.maxConnections,
        allowH2: dest.http2,
        factory: (o, opts) => {
          const slot: ConnectionSlot = { peer: null, protocol: null, refused: null, audit: null };
          const connect = outboundConnector(
            connectorOptions,
            {
              onAccepted: (peer, socket) => {
                slot.protocol = socket.alpnProtocol === 'h2' ? 'HTTP/2' : 'HTTP/1.1';
                slot.refused = null;
                slot.audit = new AuditOutboundConn(dest.name, peer.uri, peer.sha256Hex, slot.protocol);
                hooks.onAccepted(peer, socket);
              },
              onRejected: (reason, peer) => {
                slot.refused = reason;
                slot.audit = null;
                hooks.onRejected(reason, peer);
              },
            },
            slot,
            buildConnector,
          );
          return verifiedClient(Client, String(o), { ...(opts as UndiciClient.Options), connect }, slot);
        },
      },
    );
  }

  /** `leg` learns which server carried the request, and why it was refused if it was. */
  dispatch(req: UpstreamRequest, handler: UpstreamHandler, leg: OutboundLeg): void {
    this.#client.dispatch(req, handler, leg);
  }

  /** In-flight requests finish; nothing new is taken; idle connections close. */
  close(): Promise<void> {
    return this.#client.close();
  }

  destroy(): Promise<void> {
    return this.#client.destroy();
  }
}

/** A Client that hands each request's leg the slot of its connection (outbound/pool.ts's factory). */
type VerifiedClientClass = new (origin: string, options: UndiciClient.Options, slot: ConnectionSlot) => UndiciClient;

/**
 * One class for every verified client of the process, made on first use (undici's Client is
 * loaded lazily). A class made per client would give each client its own hidden class, and
 * undici's client code, which reads and writes the client's fields on every request, would run
 * megamorphic over a pool's clients: it was a tenth of the outbound side's CPU.
 */
let VerifiedClient: VerifiedClientClass | null = null;

function verifiedClientClass(Client: typeof UndiciClient): VerifiedClientClass {
  return class extends Client {
    readonly slot: ConnectionSlot;
    constructor(origin: string, options: UndiciClient.Options, slot: ConnectionSlot) {
      super(origin, options);
      this.slot = slot;
    }
    override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      // The request runs on this client's connection; by the time it is answered (or failed)
      // the connection is up and judged, and the slot names its server.
      const leg = (opts as TaggedDispatchOptions).tag as OutboundLeg | undefined;
      if (leg !== undefined) leg.slot = this.slot;
      return super.dispatch(opts, handler);
    }
  };
}

/** A Client (one connection at a time) whose requests learn the slot of its connection. */
function verifiedClient(Client: typeof UndiciClient, origin: string, options: UndiciClient.Options, slot: ConnectionSlot): UndiciClient {
  VerifiedClient ??= verifiedClientClass(Client);
  return new VerifiedClient(origin, options, slot);
}
