/**
 * A running sidecar: the listener, the current snapshot, the per-connection cache, the
 * upstream pool and the audit sink, wired together. `run` and the tests both start it here.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { UpstreamClient, UpstreamHandler } from '../proxy/upstream.js';
import { UndiciUpstream } from '../proxy/undici-upstream.js';
import { ForwardHandler } from '../proxy/forward.js';
import type { Snapshot } from '../config/snapshot.js';
import type { Audit } from '../audit/audit.js';
import type { Log } from '../log.js';
import { rejudgeCertificate, verifyPeer } from '../tls/verify.js';
import type { PeerJudge } from '../tls/verify.js';
import { ChainMemo } from '../tls/chain.js';
import { keepPeerChain } from '../tls/peer-chain.js';
import { applySecureContext } from '../tls/context.js';
import { REFUSALS } from '../reasons.js';
import type { RequestReason } from '../reasons.js';
import { ConnInfo, attachConn, connOf } from '../server/context.js';
import { PeerMemo } from '../server/peers.js';
import { identityOf, ratePlannerOf } from '../server/decide.js';
import { Metrics } from '../admin/metrics.js';
import { AdminServer } from '../admin/server.js';
import type { AppHealthHandler } from '../admin/app-health.js';
import { Listener } from '../transport/listener.js';
import type { InternalErrorWhere, SidecarServer } from '../transport/listener.js';
import { auditPath, handleRequest } from '../server/pipeline.js';
import type { PipelineHost, RateLimitState } from '../server/pipeline.js';
import { MemoryRateLimiter } from '../ratelimit/memory.js';
import { RedisRateLimiter } from '../ratelimit/redis.js';
import type { RateLimiter } from '../ratelimit/types.js';
import { clientErrorReason, rawRefusal, writeRefusal } from '../server/respond.js';
import { bugFacts } from '../errors.js';
import { refuseCertificate } from '../server/refusal.js';
import { newRequestId } from '../server/request-id.js';
import type { InboundRequest, OutboundResponse } from '../transport/types.js';
import type { JwtVerifier, JwtVerifierOptions } from '../jwt/verify.js';
import type { KeySource } from '../jwt/keys.js';
import { JwksReport } from '../jwt/report.js';
import { Outbound } from '../outbound/outbound.js';

export interface SidecarDeps {
  readonly audit: Audit;
  readonly log: Log;
  readonly metrics?: Metrics;
  /** Wall clock for certificate validity; injected so tests can move it. */
  readonly now?: () => number;
  /** Monotonic clock (ms) of the in-memory rate limiter; injected so tests can step time exactly. */
  readonly rateClock?: () => number;
  /**
   * Deadline of one Redis rate-limit decision, ms (default 75). Tests that assert exact
   * sequences through Redis on a loaded machine raise it, so a slow reply is not `unavailable`.
   */
  readonly redisTimeoutMs?: number;
  /** App probes forwarded on the admin port (from MTLS_SIDECAR_APP_PROBES, set by `inject`). */
  readonly appHealth?: AppHealthHandler | null;
  /** JWT clock, JWKS fetch (a test's, trusting its CA) and cache timings; failures go to the log and metrics. */
  readonly jwt?: Omit<JwtVerifierOptions, 'onError' | 'onRecovered'>;
}

export class Sidecar implements PipelineHost {
  snapshot: Snapshot;
  /** SIGTERM received: /readyz answers 503 (SPEC §7). */
  draining = false;
  /** The listener has closed: HTTP/1.1 responses carry `Connection: close`. */
  closing = false;
  pool: UpstreamClient;
  rate: RateLimitState | null = null;
  #limiterKey = '';
  /** The token check of the current snapshot (null without a `jwt` section); see #jwtFor. */
  jwt: { readonly verifier: JwtVerifier; readonly required: boolean } | null = null;
  #jwtKeys: { readonly key: string; readonly source: KeySource } | null = null;
  #jwtVerifierKey = '';
  readonly #jwtOptions: JwtVerifierOptions;
  readonly audit: Audit;
  readonly log: Log;
  readonly metrics: Metrics;
  readonly server: SidecarServer;
  readonly #listener: Listener;
  readonly admin: AdminServer;
  /** The app's calls out (the `outbound` section); null without one. */
  outbound: Outbound | null = null;
  listening = false;
  readonly appHealth: AppHealthHandler | null;
  readonly #now: () => number;
  readonly #rateClock: (() => number) | undefined;
  readonly #redisTimeoutMs: number | undefined;
  readonly #sockets = new Set<Socket>();
  /** Connections past the handshake check. */
  readonly #accepted = new Set<TLSSocket>();
  /** What each client certificate is, computed once per certificate and config. */
  readonly #peers = new PeerMemo();
  /** Chain paths under the current trust (intermediates seen, CRLs of intermediates). */
  #chains: ChainMemo;
  /** Facts per certificate under the current trust, memoized (one object, not a closure per connection). */
  readonly #judge: PeerJudge = {
    facts: (x509) => this.#peers.entry(x509, this.snapshot.tls.trust).facts,
    chain: (x509) => this.#peers.entry(x509, this.snapshot.tls.trust).chain(x509, this.#chains),
  };

  constructor(snapshot: Snapshot, deps: SidecarDeps) {
    this.snapshot = snapshot;
    this.#chains = new ChainMemo(snapshot.tls.trust);
    this.audit = deps.audit;
    this.log = deps.log;
    this.#now = deps.now ?? Date.now;
    this.#rateClock = deps.rateClock;
    this.#redisTimeoutMs = deps.redisTimeoutMs;
    this.appHealth = deps.appHealth ?? null;
    // The handshake check needs the intermediates each client presented (tls/peer-chain.ts).
    if (!keepPeerChain()) this.log.warn('cannot keep the chain clients present on this Node: clients that chain through intermediates not in tls.clientCAs may be refused (untrusted)');
    this.metrics = deps.metrics ?? new Metrics(() => this.#sockets.size);
    this.metrics.certificates(snapshot.certs);
    this.metrics.auditSink(this.audit);
    this.metrics.crls(snapshot.crlFiles);
    this.rate = this.#rateFor(snapshot);
    const jwksReport = new JwksReport({ log: this.log, count: () => this.metrics.jwksFetchFailure(), ...(deps.jwt?.now !== undefined ? { now: deps.jwt.now } : {}) });
    this.#jwtOptions = { ...deps.jwt, onError: (err) => jwksReport.failure(err), onRecovered: () => jwksReport.recovered() };
    this.jwt = this.#jwtFor(snapshot);
    this.admin = new AdminServer(this);
    this.pool = this.#upstream(snapshot.upstream);
    if (snapshot.outbound !== null) this.outbound = this.#outboundFor(snapshot.outbound, snapshot);
    this.#listener = new Listener(snapshot, {
      onSecureConnection: (socket) => this.#onSecureConnection(socket),
      onTlsClientError: (err, socket) => this.#onTlsClientError(err, socket),
      onRequest: (req, res) => handleRequest(this, req, res),
      onClientError: (err, socket) => this.#onClientError(err, socket),
      onInternalError: (err, where, res) => void this.internalError(err, where, res, null),
      onSession: (session) => {
        const conn = connOf(session.socket);
        if (conn !== undefined) {
          conn.h2 = session;
          // A session opened while draining is told to go away at once.
          if (this.closing) session.close();
        }
      },
    });
    this.server = this.#listener.server;
    this.server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  async listen(): Promise<AddressInfo> {
    const { address, port } = this.snapshot.listen;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, address, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    await this.outbound?.listen();
    this.listening = true;
    return this.server.address() as AddressInfo;
  }

  #outboundFor(settings: NonNullable<Snapshot['outbound']>, s: Snapshot): Outbound {
    return new Outbound(settings, s.limits, {
      audit: this.audit,
      metrics: this.metrics,
      log: this.log,
      now: this.#now,
      internalError: (err, res, requestId) => void this.internalError(err, 'outbound', res, requestId),
    });
  }

  /** The admin port (metrics, health, readiness, config) on admin.address:admin.port. */
  listenAdmin(): Promise<AddressInfo> {
    return this.admin.listen(this.snapshot.admin.address, this.snapshot.admin.port);
  }

  get activeConnections(): number {
    return this.#sockets.size;
  }

  /**
   * Re-judge an open connection against the current snapshot (after a reload). Trust, identity
   * and scopes withdrawn by the reload apply from this very request on.
   */
  refreshConnection(conn: ConnInfo): RequestReason | null {
    const s = this.snapshot;
    const verdict = rejudgeCertificate(conn.x509, conn.trust, s.tls.trust, this.#now(), this.#judge);
    if (!verdict.ok) return 'trust_withdrawn';
    conn.setIdentity(identityOf(s, conn.peer));
    conn.trust = s.tls.trust;
    conn.generation = s.generation;
    return null;
  }

  /**
   * Put a new snapshot in service (a reload). New handshakes get the new certificate and trust
   * through a new secure context (which also brings new session-ticket keys, so tickets issued
   * under the old trust stop resuming); open connections are re-judged on their next request.
   * Listen/admin addresses and the audit destination need a restart: they are kept, and
   * returned as warnings.
   */
  swap(next: Snapshot): string[] {
    const prev = this.snapshot;
    const warnings: string[] = [];
    const keep = { listen: prev.listen, admin: prev.admin, audit: prev.audit };
    if (JSON.stringify(next.listen) !== JSON.stringify(prev.listen)) warnings.push('listen changed: restart to apply');
    if (JSON.stringify(next.admin) !== JSON.stringify(prev.admin)) warnings.push('admin changed: restart to apply');
    if (next.audit.file !== prev.audit.file) warnings.push('audit.file changed: restart to apply');
    if (next.audit.onFull !== prev.audit.onFull) warnings.push('audit.onFull changed: restart to apply');
    // Outbound listeners are bound at start: a section added or removed needs a restart.
    let keepOutbound: Partial<Pick<Snapshot, 'outbound'>> = {};
    if ((next.outbound === null) !== (prev.outbound === null)) {
      warnings.push(`outbound ${next.outbound === null ? 'removed' : 'added'}: restart to apply`);
      keepOutbound = { outbound: prev.outbound };
    } else if (this.outbound !== null && next.outbound !== null) {
      warnings.push(...this.outbound.apply(next.outbound, next.limits));
    }
    const applied: Snapshot = Object.freeze({ ...next, ...keep, ...keepOutbound });
    applySecureContext(this.server, applied);
    if (JSON.stringify(next.upstream) !== JSON.stringify(prev.upstream)) {
      const old = this.pool;
      this.pool = this.#upstream(applied.upstream);
      // In-flight requests finish on the old pool; close() waits for them.
      old.close().catch(() => undefined);
    }
    this.#listener.applyLimits(applied);
    this.rate = this.#rateFor(applied);
    // Requests already past the token check hold their own result; new ones use this verifier.
    this.jwt = this.#jwtFor(applied);
    if (applied.tls.trust !== prev.tls.trust) this.#chains = new ChainMemo(applied.tls.trust);
    this.snapshot = applied;
    this.metrics.certificates(applied.certs);
    this.metrics.crls(applied.crlFiles);
    return warnings;
  }

  /** The upstream client: undici's Pool behind the UpstreamClient interface (docs/performance.md says why). */
  #upstream(u: Snapshot['upstream']): UpstreamClient {
    return new UndiciUpstream({ ...u, onInternalError: this.#onUpstreamBug });
  }

  /**
   * A forward handler threw inside an upstream callback: a bug, reported as a stage's is (where
   * `upstream`). The handler has already been told (its request answered 500 or cut); should it
   * have failed to, its response is answered or cut here.
   */
  readonly #onUpstreamBug = (err: unknown, handler: UpstreamHandler): void => {
    const fwd: ForwardHandler | null = handler instanceof ForwardHandler ? handler : null;
    this.internalError(err, 'upstream', fwd === null ? null : fwd.res, fwd === null ? null : fwd.ctx.requestId);
  };

  /** False when the certificate is refused: the client is told (server/refusal.ts), nothing is served. */
  #onSecureConnection(socket: TLSSocket): boolean {
    const s = this.snapshot;
    const trust = s.tls.trust;
    const verdict = verifyPeer(socket, trust, this.#now(), this.#judge);
    const remote = socket.remoteAddress ?? 'unknown';
    if (!verdict.ok) {
      this.metrics.handshake('rejected', verdict.reason);
      const peer = verdict.x509 === null ? null : this.#peers.entry(verdict.x509, trust).peer;
      const requestId = newRequestId();
      this.audit.handshake({
        reason: verdict.reason,
        remote,
        requestId,
        ...(peer !== null ? { certSha256: peer.sha256Hex, subject: peer.subject } : {}),
      });
      // The handshake is done and nothing the client sent has been read: it gets a generic
      // refusal in its protocol; the precise reason stays in the audit line.
      refuseCertificate(socket, requestId);
      return false;
    }
    this.metrics.handshake('accepted', 'ok');
    const entry = this.#peers.entry(verdict.x509, trust);
    const peer = entry.peer;
    const identity = entry.identity(s.generation, (p) => identityOf(s, p));
    this.#accepted.add(socket);
    socket.on('close', () => this.#accepted.delete(socket));
    const conn = new ConnInfo(s.generation, trust, verdict.x509, peer, identity, remote, socket.getProtocol());
    const sni = (socket as { servername?: string | false | null }).servername;
    conn.sni = typeof sni === 'string' && sni !== '' ? sni.toLowerCase() : null;
    attachConn(socket, conn);
    return true;
  }

  #onTlsClientError(err: Error, socket: TLSSocket): void {
    const code = (err as { code?: string }).code ?? 'unknown';
    this.metrics.handshake('rejected', 'protocol');
    this.audit.handshake({ reason: 'protocol', remote: socket.remoteAddress ?? 'unknown', detail: code });
    socket.destroy();
  }

  /**
   * A bug in request handling, caught by the pipeline (with its request id) or by a transport
   * (`where`): one line on the operational log with the request id and where (the error's name,
   * code and stack frames), a count in mtls_sidecar_internal_errors_total, and the request
   * answered 500 if nothing of its response went out yet, else cut. The process and every other
   * connection go on. Returns the bytes of the 500's body.
   */
  internalError(err: unknown, where: InternalErrorWhere, res: OutboundResponse | null, requestId: string | null): number {
    const id = requestId ?? newRequestId();
    this.metrics.internalError(where);
    this.log.error({ where, requestId: id, ...bugFacts(err) }, 'internal error in request handling');
    if (res === null || res.writableEnded) return 0;
    try {
      if (!res.headersSent) return writeRefusal(res, 'internal_error', id, this.snapshot.securityHeaders, null, true);
      res.destroy();
    } catch {
      res.destroy();
    }
    return 0;
  }

  /** HTTP/1.1 parser errors and timeouts (transport/h1/connection.ts): there is no request object, so answer by hand. */
  #onClientError(err: Error & { code?: string; method?: string; target?: string }, socket: TLSSocket): void {
    const conn = connOf(socket);
    if (conn?.answeredBodyPending === true) {
      // The request was already answered (e.g. refused while its body was still arriving):
      // a second, unsolicited response would desynchronise the client. Just close.
      socket.destroy();
      return;
    }
    const reason = clientErrorReason(err.code);
    const requestId = newRequestId();
    const status = REFUSALS[reason].status;
    if (conn !== undefined) {
      this.metrics.request(conn.identity === null ? 'unknown' : conn.identity.name, 'unknown', err.method || 'OTHER', status, 'deny', 0, null);
      this.audit.request({
        requestId,
        conn: conn.audit,
        // What the request line said, when it was read: the operator sees what was refused.
        method: err.method ?? '',
        path: err.target === undefined || err.target === '' ? '' : auditPath(err.target),
        route: null,
        decision: 'deny',
        reason,
        status,
        durationMs: 0,
        upstreamMs: null,
        bytesIn: 0,
        bytesOut: 0,
        protocol: 'HTTP/1.1',
      });
    }
    if (socket.writable && !socket.destroyed) socket.end(rawRefusal(reason, requestId));
    else socket.destroy();
  }

  /**
   * Stop accepting and drain (SPEC §7): the listener closes; HTTP/2 sessions get GOAWAY and
   * finish their streams; idle HTTP/1.1 connections close now, busy ones after their response
   * (which says `Connection: close`); whatever is still open after `timeoutMs` is cut.
   */
  async close(timeoutMs = 5000): Promise<void> {
    this.draining = true;
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const tlsSocket of this.#accepted) {
      const conn = connOf(tlsSocket);
      if (conn?.h2 != null) conn.h2.close();
      else if (conn === undefined || conn.inflight === 0) tlsSocket.destroy();
    }
    const timer = setTimeout(() => {
      for (const s of this.#sockets) s.destroy();
    }, timeoutMs);
    timer.unref();
    const outbound = this.outbound?.close(timeoutMs);
    await closed;
    clearTimeout(timer);
    await Promise.all([outbound, this.pool.close().catch(() => undefined), this.admin.close(), this.rate?.limiter.close()]);
    this.#jwtKeys?.source.close();
  }

  /**
   * The limiter for a snapshot. Buckets live in the limiter, so it is kept across reloads while
   * the backend is the same (a reload must not hand every identity a fresh burst).
   */
  #rateFor(s: Snapshot): RateLimitState | null {
    const rl = s.rateLimit;
    const planner = ratePlannerOf(s);
    const prev = this.rate;
    if (planner === null) {
      if (prev !== null) void prev.limiter.close();
      this.#limiterKey = '';
      return null;
    }
    const redis = rl?.backend === 'redis' ? rl.redis : undefined;
    const key = redis === undefined ? 'memory' : `redis ${redis.url} ${redis.keyPrefix} cluster=${redis.cluster}`;
    let limiter: RateLimiter;
    if (prev !== null && key === this.#limiterKey) {
      limiter = prev.limiter;
    } else {
      if (prev !== null) void prev.limiter.close();
      limiter = redis === undefined ? new MemoryRateLimiter(this.#rateClock === undefined ? {} : { now: this.#rateClock }) : new RedisRateLimiter({ url: redis.url, keyPrefix: redis.keyPrefix, cluster: redis.cluster, log: this.log, ...(this.#redisTimeoutMs !== undefined ? { timeoutMs: this.#redisTimeoutMs } : {}) });
      this.#limiterKey = key;
    }
    return { planner, limiter, onError: redis?.onError ?? 'allow' };
  }

  /**
   * The token check for a snapshot. Like the rate limiter, its state outlives reloads that do not
   * touch it: the key source (a JWKS URL's cached keys, which serve stale while the issuer is down)
   * is kept while the URL and cache settings are equal, and the verifier (with the per-connection
   * token caches keyed to it) while keys, claim rules and denylist are all equal. A rewritten
   * JWKS file or denylist changes those keys, so its new content applies.
   */
  #jwtFor(s: Snapshot): { readonly verifier: JwtVerifier; readonly required: boolean } | null {
    const j = s.jwt;
    if (j === null) {
      this.#jwtKeys?.source.close();
      this.#jwtKeys = null;
      this.#jwtVerifierKey = '';
      return null;
    }
    const m = j.material;
    const prev = this.jwt;
    if (prev !== null && m.verifierKey === this.#jwtVerifierKey) {
      return prev.required === j.required ? prev : { verifier: prev.verifier, required: j.required };
    }
    let keys = this.#jwtKeys;
    if (keys === null || keys.key !== m.keysKey) {
      keys?.source.close();
      keys = { key: m.keysKey, source: m.keySource(this.#jwtOptions) };
      this.#jwtKeys = keys;
    }
    this.#jwtVerifierKey = m.verifierKey;
    return { verifier: m.verifier(keys.source, this.#jwtOptions), required: j.required };
  }

  /** Called by the pipeline when a request on an HTTP/1.1 connection ends during drain. */
  requestEnded(conn: ConnInfo, socket: { end(): void; destroyed?: boolean } | null): void {
    if (this.closing && conn.h2 === null && conn.inflight === 0 && socket !== null && socket.destroyed !== true) {
      // The response said Connection: close, and the HTTP/1.1 server ends the socket once it is
      // written out (a destroy here cut a slow reader's last bytes). close()'s timer still cuts
      // a client that holds on past the drain timeout.
      socket.end();
    }
  }

  /** For tests and shutdown: destroy every connection now. */
  destroyConnections(): void {
    for (const s of this.#sockets) s.destroy();
    this.outbound?.destroy();
  }

  handle(req: InboundRequest, res: OutboundResponse): void {
    handleRequest(this, req, res);
  }
}
