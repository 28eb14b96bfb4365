/**
 * `mtls-sidecar explain`: what the sidecar would decide for one certificate, method and path,
 * step by step. It walks the pipeline's stages in the pipeline's order (server/pipeline.ts) and
 * decides each with the functions the live path uses: the trust verdict of tls/verify.ts, the
 * identity, route, scope and audit-mode decisions of server/decide.ts, path normalization, the
 * JWT verifier, the rate planner. What it adds is only the telling: why nothing matched, which
 * scopes are missing, which bucket applies. The order of the steps is the pipeline's;
 * test/cli/explain.test.ts holds the two to the same decision and reason on real requests.
 *
 * Differences from a live request, all on the side of saying less: there is no handshake (a
 * certificate is given, not its key), so OpenSSL's chain verdict is reached with node:crypto
 * (tls/chain.ts offlineChainError); no bucket is spent, so the rate-limit step names the policy
 * but cannot say whether the bucket is empty; and headers, body limits and the app's answer are
 * not part of the question.
 */
import type { X509Certificate } from 'node:crypto';
import type { IdentityRule, RouteRule, Snapshot } from '../config/snapshot.js';
import { describePeer, headerSafe } from '../identity/peer.js';
import type { PeerInfo } from '../identity/peer.js';
import { normalizeTarget } from '../policy/normalize.js';
import { certThumbprintB64url } from '../jwt/verify.js';
import type { JwtReason, JwtResult, JwtVerifierOptions } from '../jwt/verify.js';
import { routeNeedsToken } from '../jwt/settings.js';
import { REFUSALS } from '../reasons.js';
import type { ErrorCode, HandshakeReason, RequestReason } from '../reasons.js';
import { MAX_CAS_ABOVE_LEAF } from '../tls/chain.js';
import { verifyOffline } from '../tls/verify.js';
import type { OfflineVerdict } from '../tls/verify.js';
import { authorizationRefusal, identityOf, ratePlanOf, ratePlannerOf, refusalAudited, servedReason } from './decide.js';
import type { RefusalReason } from './respond.js';

export type StepName = 'certificate' | 'trust' | 'identity' | 'path' | 'route' | 'scopes' | 'token' | 'rate limit';

/**
 * ok: passed; none: nothing matched, which is no refusal by itself (identity); deny: the
 * request is refused here; would_deny: refused here but audit mode lets it on; skipped: the
 * step does not apply; not_reached: an earlier step refused.
 */
export type StepResult = 'ok' | 'none' | 'deny' | 'would_deny' | 'skipped' | 'not_reached';

export type Json = string | number | boolean | null | readonly Json[] | { readonly [key: string]: Json };

export interface Step {
  readonly step: StepName;
  readonly result: StepResult;
  /** The refusal this step gives (deny) or notes (would_deny). */
  readonly reason: RequestReason | HandshakeReason | null;
  /** One line for people. */
  readonly detail: string;
  /** What the line says, as data (--json). */
  readonly facts: { readonly [key: string]: Json };
}

export interface Explanation {
  readonly method: string;
  /** As given (the query, if any, included). */
  readonly target: string;
  readonly decision: 'allow' | 'deny';
  /** The audit line's `reason`: a request reason, or the handshake_rejected reason. */
  readonly reason: RequestReason | HandshakeReason;
  /** Audit mode: the refusal authorization would have given (the audit line's `wouldDeny`). */
  readonly wouldDeny: RequestReason | null;
  /** The status of a refused request; null when the app would answer, or the handshake refuses. */
  readonly status: number | null;
  /** The refusal body's generic code (`{"error": ...}`) with that status. */
  readonly error: ErrorCode | null;
  readonly steps: readonly Step[];
}

export interface ExplainQuery {
  /** The client's leaf. */
  readonly leaf: X509Certificate;
  /** What the client presents after its leaf (intermediates), in its order. */
  readonly presented: readonly X509Certificate[];
  readonly method: string;
  /** Request target: path and optional query. */
  readonly target: string;
  /** A bearer token (the JWT itself), or null for none. */
  readonly token: string | null;
  /** Wall clock, ms: certificate and CRL validity, token expiry. */
  readonly now: number;
  /** For a JWKS URL: a fetch that trusts the issuer (tests), timeouts. */
  readonly jwt?: Omit<JwtVerifierOptions, 'now'>;
}

const ORDER: readonly StepName[] = ['certificate', 'trust', 'identity', 'path', 'route', 'scopes', 'token', 'rate limit'];

/** Steps in order; once one refuses, the rest are marked not reached. */
class Walk {
  readonly steps: Step[] = [];
  wouldDeny: RequestReason | null = null;

  add(step: StepName, result: StepResult, reason: RequestReason | HandshakeReason | null, detail: string, facts: Step['facts'] = {}): void {
    this.steps.push({ step, result, reason, detail, facts });
  }

  /** A refusal by authorization (route, identity, scopes, token): enforced, or noted in audit mode. */
  authorization(step: StepName, audited: boolean, reason: RequestReason, detail: string, facts: Step['facts']): boolean {
    if (!audited) {
      this.add(step, 'deny', reason, detail, facts);
      return false;
    }
    this.wouldDeny ??= reason;
    this.add(step, 'would_deny', reason, `${detail} (audit mode: noted, not enforced)`, facts);
    return true;
  }

  denied(q: ExplainQuery, reason: RefusalReason): Explanation {
    const refusal = REFUSALS[reason];
    return this.#finish(q, 'deny', reason, refusal.status, refusal.code);
  }

  refusedHandshake(q: ExplainQuery, reason: HandshakeReason): Explanation {
    return this.#finish(q, 'deny', reason, null, null);
  }

  allowed(q: ExplainQuery): Explanation {
    return this.#finish(q, 'allow', servedReason(this.wouldDeny), null, null);
  }

  #finish(q: ExplainQuery, decision: 'allow' | 'deny', reason: RequestReason | HandshakeReason, status: number | null, error: ErrorCode | null): Explanation {
    for (const step of ORDER.slice(this.steps.length)) this.add(step, 'not_reached', null, '');
    return { method: q.method, target: q.target, decision, reason, wouldDeny: this.wouldDeny, status, error, steps: this.steps };
  }
}

/** Decide one request as the sidecar running `s` would. Asynchronous only for the token check. */
export async function explainRequest(s: Snapshot, q: ExplainQuery): Promise<Explanation> {
  const w = new Walk();
  const peer = describePeer(q.leaf);
  w.add('certificate', 'ok', null, certificateLine(q, peer), certificateFacts(q, peer));

  // 1. Trust: refused in the handshake, as a handshake_rejected audit line.
  const verdict = verifyOffline(q.leaf, q.presented, s.tls.trust, q.now);
  if (verdict.reason !== null) {
    w.add('trust', 'deny', verdict.reason, `${trustRefusal(verdict, verdict.reason, q)} (refused in the handshake)`, trustFacts(s, verdict, q));
    return w.refusedHandshake(q, verdict.reason);
  }
  w.add('trust', 'ok', null, trustLine(s, verdict, q), trustFacts(s, verdict, q));

  // 2. Identity, once per connection.
  const identity = identityOf(s, peer);
  if (identity !== null) w.add('identity', 'ok', null, identityLine(identity), { name: identity.name, rule: identity.index, scopes: identity.scopes, matchedOn: Object.keys(identity.match) });
  else w.add('identity', 'none', null, noIdentityLine(s, peer), { name: null, mismatches: mismatchFacts(s, peer) });

  // 3. Path normalization: what is routed is what the app gets.
  const norm = normalizeTarget(q.target);
  if (!norm.ok) {
    w.add('path', 'deny', 'bad_path', norm.detail, { path: null });
    return w.denied(q, 'bad_path');
  }
  w.add('path', 'ok', null, norm.path === q.target ? norm.path : `${norm.path} (normalized from ${headerSafe(q.target)})`, { path: norm.path, query: norm.query });

  // 4. Route, identity and scopes: one decision (server/decide.ts), told in two steps.
  const route = s.routeTable.match(q.method, norm.path);
  const refusal = authorizationRefusal(route, identity);
  const audited = refusalAudited(s, route);
  if (route === undefined) {
    if (!w.authorization('route', audited, 'no_route', noRouteLine(s, q.method, norm.path), { name: null, matchesOtherMethods: s.routeTable.matchingPath(norm.path).map((r) => r.name) })) return w.denied(q, 'no_route');
    w.add('scopes', 'skipped', null, 'no route: no scopes to check');
  } else {
    w.add('route', 'ok', null, routeLine(route), routeFacts(route));
    const facts = scopeFacts(route, identity);
    if (refusal === null) {
      w.add('scopes', 'ok', null, route.public ? 'public route: any trusted certificate' : `held ${list(identity?.scopes ?? [])}; needed ${list(route.scopes)}`, facts);
    } else {
      const detail = refusal === 'no_identity' ? `no identity, and the route needs ${list(route.scopes)}` : `held ${list(identity?.scopes ?? [])}; needed ${list(route.scopes)}; missing ${list(facts.missing)}`;
      if (!w.authorization('scopes', audited, refusal, detail, facts)) return w.denied(q, refusal);
    }
  }

  // 5. The token, where the route needs one.
  const jwt = s.jwt;
  if (jwt === null) {
    w.add('token', 'skipped', null, q.token === null ? 'no jwt section' : 'no jwt section: the token is not checked');
  } else if (route === undefined) {
    w.add('token', 'skipped', null, 'no route: no token check');
  } else if (!routeNeedsToken(route, jwt.required)) {
    w.add('token', 'skipped', null, `route "${route.name}" needs no token (no tokenScopes${route.public ? ', public' : ', jwt.required false'})`);
  } else {
    const r = await checkToken(s, jwt.material, route, q);
    if (r.ok) {
      w.add('token', 'ok', null, `valid${r.scopes.size > 0 ? `; scopes ${list([...r.scopes])}` : ''}${route.tokenScopes === undefined ? '' : `; needed ${list(route.tokenScopes)}`}`, { valid: true, scopes: [...r.scopes], needed: route.tokenScopes ?? [], exp: r.exp });
    } else if (!w.authorization('token', refusalAudited(s, route), r.reason, tokenRefusal(r.reason, route, q), { valid: false, needed: route.tokenScopes ?? [] })) {
      return w.denied(q, r.reason);
    }
  }

  // 6. Rate limit: the policy that would apply; explain spends no token.
  const planner = ratePlannerOf(s);
  const plan = planner === null ? null : ratePlanOf(planner, identity, peer, route ?? null);
  if (plan === null) {
    w.add('rate limit', 'skipped', null, 'no bucket applies', { policies: [] });
  } else {
    const policies = plan.takes.map((t, i) => ({ policy: plan.names[i] ?? 'default', rps: t.bucket.rps, burst: t.bucket.burst }));
    const backend = s.rateLimit?.backend ?? 'memory';
    w.add(
      'rate limit',
      'ok',
      null,
      `${policies.map((p) => `${p.policy} ${p.rps} rps, burst ${p.burst}`).join('; ')} (${backend}; allowed while the bucket holds a token: explain spends none)`,
      { policies, backend },
    );
  }
  return w.allowed(q);
}

async function checkToken(s: Snapshot, material: NonNullable<Snapshot['jwt']>['material'], route: RouteRule, q: ExplainQuery): Promise<JwtResult> {
  const opts: JwtVerifierOptions = { ...q.jwt, now: () => q.now };
  const keys = material.keySource(opts);
  try {
    const verifier = material.verifier(keys, opts);
    return await verifier.verify(q.token === null ? undefined : `Bearer ${q.token}`, certThumbprintB64url(q.leaf.raw), route.tokenScopes, null);
  } finally {
    keys.close();
  }
}

// ---- telling -------------------------------------------------------------------------------

function list(items: readonly string[]): string {
  return items.length === 0 ? '(none)' : items.map(headerSafe).join(' ');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function certificateLine(q: ExplainQuery, peer: PeerInfo): string {
  const f = peer.fields;
  const parts = [peer.subject === '' ? '(empty subject)' : peer.subject, `sha256:${f.sha256}`];
  for (const uri of f.uris) parts.push(`uri ${headerSafe(uri)}`);
  for (const dns of f.dns) parts.push(`dns ${headerSafe(dns)}`);
  if (q.presented.length > 0) parts.push(`${q.presented.length} more presented`);
  return parts.join('; ');
}

function certificateFacts(q: ExplainQuery, peer: PeerInfo): Step['facts'] {
  const f = peer.fields;
  return {
    subject: peer.subject,
    sha256: `sha256:${f.sha256}`,
    uris: f.uris.map(headerSafe),
    dns: f.dns.map(headerSafe),
    notBefore: iso(q.leaf.validFromDate.getTime()),
    notAfter: iso(q.leaf.validToDate.getTime()),
    presented: q.presented.map((c) => describePeer(c).subject),
  };
}

function caLabel(s: Snapshot, ca: X509Certificate): string {
  const anchor = s.tls.trust.caFingerprints.has(ca.fingerprint256);
  return `${describePeer(ca).subject} (${anchor ? 'tls.clientCAs' : 'presented'})`;
}

function trustLine(s: Snapshot, v: OfflineVerdict, q: ExplainQuery): string {
  const trust = s.tls.trust;
  const parts: string[] = [];
  if (trust.hasClientCAs) {
    // The path up to the first clientCA: what OpenSSL verifies.
    const upTo = v.path.findIndex((ca) => trust.caFingerprints.has(ca.fingerprint256));
    parts.push(`chain leaf <- ${v.path.slice(0, upTo + 1).map((ca) => caLabel(s, ca)).join(' <- ')}`);
  }
  if (trust.pinsSha256.size > 0 || trust.pinsSpki.size > 0) parts.push('pinned in tls.pins');
  parts.push(`valid until ${iso(v.facts.validTo)}`);
  const chain = v.chain;
  if (chain != null) parts.push(Number.isFinite(chain.crlDeadline) ? `not revoked (CRL current until ${iso(chain.crlDeadline)})` : 'no CRL for its issuers: not revocation-checked');
  if (v.facts.validTo - q.now < 7 * 24 * 3600 * 1000) parts.push('expires within 7 days');
  return `trusted: ${parts.join('; ')}`;
}

function trustFacts(s: Snapshot, v: OfflineVerdict, q: ExplainQuery): Step['facts'] {
  return {
    trusted: v.reason === null,
    chain: v.path.map((ca) => caLabel(s, ca)),
    notAfter: iso(v.facts.validTo),
    crlCurrentUntil: v.chain != null && Number.isFinite(v.chain.crlDeadline) ? iso(v.chain.crlDeadline) : null,
    checkedAt: iso(q.now),
  };
}

function trustRefusal(v: OfflineVerdict, reason: HandshakeReason, q: ExplainQuery): string {
  const leafDatesOk = q.now >= v.facts.validFrom && q.now <= v.facts.validTo;
  switch (reason) {
    case 'expired':
      return leafDatesOk ? 'a CA on its chain has expired' : `not after ${iso(v.facts.validTo)}`;
    case 'not_yet_valid':
      return leafDatesOk ? 'a CA on its chain is not yet valid' : `not before ${iso(v.facts.validFrom)}`;
    case 'untrusted':
      return v.path.length === 0 ? 'no tls.clientCAs CA issued it (and no presented intermediate leads to one)' : `no chain to a tls.clientCAs CA (issuers found: ${v.path.map((ca) => describePeer(ca).subject).join(' <- ')})`;
    case 'revoked':
      return "listed in its issuer's CRL";
    case 'pin_mismatch':
      return 'matches no entry of tls.pins';
    case 'bad_eku':
      return 'its extended key usage does not allow client authentication';
    case 'ca_leaf':
      return 'a CA certificate (CA:TRUE) used as a client certificate';
    case 'weak_key':
      return 'its key is too weak (RSA under 2048 bits, DSA or DH)';
    case 'weak_signature':
      return 'signed with SHA-1';
    case 'chain_too_long':
      return `more than ${MAX_CAS_ABOVE_LEAF} CAs above the leaf`;
    case 'crl_expired':
      return "its issuer's CRL is past its nextUpdate";
    case 'no_cert':
    case 'protocol':
      return 'no usable certificate';
    default: {
      const never: never = reason;
      return never;
    }
  }
}

function identityLine(identity: IdentityRule): string {
  return `${identity.name} (identities[${identity.index}], matched on ${Object.keys(identity.match).join(', ')}); scopes ${list(identity.scopes)}`;
}

/** Rules listed in full up to this many; past it, counted. */
const MISMATCHES_SHOWN = 8;

function noIdentityLine(s: Snapshot, peer: PeerInfo): string {
  if (s.identities.length === 0) return 'none: the config has no identities';
  const m = s.identityMatcher.mismatches(peer.fields);
  const shown = m.slice(0, MISMATCHES_SHOWN).map((x) => `identities[${x.rule.index}] ${x.rule.name}: ${x.field ?? '?'} differs`);
  if (m.length > MISMATCHES_SHOWN) shown.push(`${m.length - MISMATCHES_SHOWN} more`);
  return `none matched (${shown.join('; ')}): only public routes admit it`;
}

function mismatchFacts(s: Snapshot, peer: PeerInfo): Json {
  return s.identityMatcher.mismatches(peer.fields).map((x) => ({ rule: x.rule.index, name: x.rule.name, field: x.field }));
}

function routeLine(route: RouteRule): string {
  const kind = route.path !== undefined ? `path ${route.path}` : route.prefix !== undefined ? `prefix ${route.prefix}` : `glob ${route.glob ?? ''}`;
  const parts = [kind, route.methods === undefined ? 'any method' : `methods ${route.methods.join(' ')}`];
  if (route.public) parts.push('public');
  parts.push(`mode ${route.audit ? 'audit' : 'enforce'}`);
  return `${route.name} (routes[${route.index}]: ${parts.join(', ')})`;
}

function routeFacts(route: RouteRule): Step['facts'] {
  return { name: route.name, rule: route.index, public: route.public, mode: route.audit ? 'audit' : 'enforce' };
}

function noRouteLine(s: Snapshot, method: string, path: string): string {
  const others = s.routeTable.matchingPath(path);
  const base = `no route for ${headerSafe(method)} ${path} (default deny)`;
  if (others.length === 0) return base;
  return `${base}; for other methods: ${others.map((r) => `${r.name} (${(r.methods ?? []).join(' ')})`).join(', ')}`;
}

function scopeFacts(route: RouteRule, identity: IdentityRule | null): { readonly held: readonly string[]; readonly needed: readonly string[]; readonly missing: readonly string[]; readonly public: boolean } {
  const held = identity === null ? [] : identity.scopes;
  // For the telling only: whether the request passes was decided by authorizationRefusal.
  const missing = route.public ? [] : route.scopes.filter((scope) => identity === null || !identity.scopeSet.has(scope));
  return { held, needed: route.scopes, missing, public: route.public };
}

function tokenRefusal(reason: JwtReason, route: RouteRule, q: ExplainQuery): string {
  switch (reason) {
    case 'jwt_missing':
      return q.token === null ? `route "${route.name}" needs a token and none was given (--token)` : 'no bearer token';
    case 'jwt_invalid':
      return 'the token is not valid here (form, algorithm, signature, issuer, audience or claims)';
    case 'jwt_expired':
      return 'the token has expired';
    case 'jwt_cert_mismatch':
      return "the token is bound to another certificate (cnf x5t#S256 is not this certificate's thumbprint)";
    case 'jwt_revoked':
      return 'the token id (jti) is in jwt.denylist';
    case 'token_scope_missing':
      return `the token lacks a scope the route needs (${list(route.tokenScopes ?? [])})`;
    default: {
      const never: never = reason;
      return never;
    }
  }
}
