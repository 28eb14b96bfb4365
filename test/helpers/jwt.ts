/**
 * Token minting for tests: real keys (RS256, ES256, EdDSA), real signatures, plus the malformed
 * and hostile tokens a verifier must refuse (alg none, HS256 keyed with the RSA public key, crit).
 * Also a JWKS over real HTTPS on loopback (trusting the test CA) and file writers for e2e tests.
 */
import { X509Certificate, createHmac, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey, JWK, JWTHeaderParameters } from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import type { JwksFetch } from '../../src/jwt/keys.js';
import { certThumbprintB64url } from '../../src/jwt/verify.js';

export type TestAlg = 'RS256' | 'ES256' | 'EdDSA';

export interface SigningKey {
  readonly alg: TestAlg;
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** Public JWK with kid, alg and use: "sig". */
  readonly publicJwk: JWK;
  /** SPKI PEM of the public key (what an attacker would use as an HMAC secret). */
  readonly spkiPem: string;
}

export const TEST_ISSUER = 'https://issuer.test';
export const TEST_AUDIENCE = 'api://orders';

export async function makeSigningKey(alg: TestAlg, kid: string = `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, publicJwk, spkiPem: await exportSPKI(publicKey) };
}

export function jwksOf(...keys: readonly SigningKey[]): { keys: JWK[] } {
  return { keys: keys.map((k) => k.publicJwk) };
}

export interface MintOptions {
  /** "Now" for iat/exp defaults, in ms (default Date.now()). */
  now?: number;
  iss?: string;
  aud?: string | string[];
  /** null: no sub. */
  sub?: string | null;
  /** Space-separated scope claim; null: none. */
  scope?: string | null;
  /** null: no jti. Default: a random UUID. */
  jti?: string | null;
  /** Seconds since the epoch; null: no exp. Default: now + 300 s. */
  exp?: number | null;
  nbf?: number;
  /** Default: now. null: none. */
  iat?: number | null;
  /** Certificate thumbprint (base64url SHA-256 of DER) for cnf["x5t#S256"]. */
  x5t?: string;
  /** Extra claims, merged last. */
  claims?: Record<string, unknown>;
  /** Extra protected header members. kid: null removes the kid. */
  header?: Omit<Partial<JWTHeaderParameters>, 'kid'> & { kid?: string | null } & Record<string, unknown>;
  /** Critical header parameters: listed in `crit`, each set to true in the header. */
  crit?: string[];
}

export function claimsFor(o: MintOptions = {}): Record<string, unknown> {
  const nowSec = Math.floor((o.now ?? Date.now()) / 1000);
  const c: Record<string, unknown> = { iss: o.iss ?? TEST_ISSUER, aud: o.aud ?? TEST_AUDIENCE };
  if (o.sub !== null) c['sub'] = o.sub ?? 'user-1';
  if (o.scope !== null && o.scope !== undefined) c['scope'] = o.scope;
  if (o.jti !== null) c['jti'] = o.jti ?? randomUUID();
  if (o.exp !== null) c['exp'] = o.exp ?? nowSec + 300;
  if (o.iat !== null) c['iat'] = o.iat ?? nowSec;
  if (o.nbf !== undefined) c['nbf'] = o.nbf;
  if (o.x5t !== undefined) c['cnf'] = { 'x5t#S256': o.x5t };
  return { ...c, ...o.claims };
}

/** A correctly signed token (whatever its claims say). */
export async function mintToken(key: SigningKey, o: MintOptions = {}): Promise<string> {
  const { kid, ...rest } = o.header ?? {};
  const header: JWTHeaderParameters = { alg: key.alg, typ: 'JWT', ...rest };
  if (kid !== null) header.kid = kid ?? key.kid;
  const crit: Record<string, boolean> = {};
  if (o.crit !== undefined) {
    header.crit = o.crit;
    for (const name of o.crit) {
      header[name] = true;
      crit[name] = true;
    }
  }
  return new SignJWT(claimsFor(o)).setProtectedHeader(header).sign(key.privateKey, { crit });
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

/** Assemble a compact JWS by hand: header.payload.signature (signature as given, may be ''). */
export function rawToken(header: Record<string, unknown>, claims: Record<string, unknown>, signature = ''): string {
  return `${b64(header)}.${b64(claims)}.${signature}`;
}

/** `alg: none` with an empty signature. */
export function unsignedToken(o: MintOptions = {}): string {
  return rawToken({ alg: 'none', typ: 'JWT' }, claimsFor(o));
}

/** The classic confusion attack: HS256 with the issuer's RSA public key (PEM) as the HMAC secret. */
export function hs256WithPublicKey(key: SigningKey, o: MintOptions = {}): string {
  const head = b64({ alg: 'HS256', typ: 'JWT', kid: key.kid });
  const body = b64(claimsFor(o));
  const sig = createHmac('sha256', key.spkiPem).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** base64url SHA-256 of a PEM certificate's DER (RFC 8705 x5t#S256). */
export function thumbprintOfPem(pem: string | Buffer): string {
  return certThumbprintB64url(new X509Certificate(pem).raw);
}

export async function writeJwksFile(file: string, jwks: { keys: JWK[] }): Promise<void> {
  await writeFile(file, JSON.stringify(jwks, null, 2));
}

export async function writeDenylist(file: string, ids: readonly string[], comment = '# revoked token ids'): Promise<void> {
  await writeFile(file, `${comment}\n${ids.join('\n')}\n`);
}

// ---------------------------------------------------------------- JWKS over HTTPS

export type JwksServerMode = 'up' | 'http503' | 'reset';

export interface JwksServer {
  readonly url: string;
  /** A fetch that trusts the test CA (for createJwtVerifier's `fetch` option). */
  readonly fetch: JwksFetch;
  /** Requests served so far, whatever the mode. */
  readonly requests: number;
  jwks: { keys: JWK[] };
  mode: JwksServerMode;
  close(): Promise<void>;
}

/** An HTTPS JWKS endpoint on 127.0.0.1:0 (the cert must name IP 127.0.0.1); the fetch trusts `ca`. */
export async function startJwksServer(tlsFiles: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer }, jwks: { keys: JWK[] }): Promise<JwksServer> {
  const state = { jwks, mode: 'up' as JwksServerMode, requests: 0 };
  const server = https.createServer({ cert: tlsFiles.cert, key: tlsFiles.key }, (req, res) => {
    state.requests++;
    if (state.mode === 'reset') {
      req.socket.destroy();
      return;
    }
    if (state.mode === 'http503') {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('down');
      return;
    }
    const body = JSON.stringify(state.jwks);
    res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const agent = new Agent({ connect: { ca: tlsFiles.ca } });
  return {
    url: `https://127.0.0.1:${port}/.well-known/jwks.json`,
    fetch: (url, init) => undiciFetch(url, { ...init, dispatcher: agent }),
    get requests() {
      return state.requests;
    },
    get jwks() {
      return state.jwks;
    },
    set jwks(v: { keys: JWK[] }) {
      state.jwks = v;
    },
    get mode() {
      return state.mode;
    },
    set mode(m: JwksServerMode) {
      state.mode = m;
    },
    close: async () => {
      await agent.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
