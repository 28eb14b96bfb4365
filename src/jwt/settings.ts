/** The `jwt` config section (schema.ts) -> JwtSettings, with file paths resolved by the caller. */
import type { RawConfig } from '../config/schema.js';
import type { JwtSettings } from './verify.js';

export type RawJwtConfig = NonNullable<RawConfig['jwt']>;

export function jwtSettingsFromConfig(jwt: RawJwtConfig, resolvePath: (file: string) => string): JwtSettings {
  return {
    issuer: jwt.issuer,
    audience: jwt.audience,
    algorithms: jwt.algorithms,
    clockSkewMs: jwt.clockSkew,
    requireJti: jwt.requireJti,
    certificateBound: jwt.certificateBound,
    jwks: 'file' in jwt.jwks ? { file: resolvePath(jwt.jwks.file) } : { url: jwt.jwks.url, cacheForMs: jwt.jwks.cacheFor },
    denylistFile: jwt.denylist === undefined ? undefined : resolvePath(jwt.denylist),
  };
}

/** Whether a route needs a valid token: it names tokenScopes, or `required` covers every non-public route. */
export function routeNeedsToken(route: { readonly public: boolean; readonly tokenScopes?: readonly string[] | undefined }, required: boolean): boolean {
  return route.tokenScopes !== undefined || (required && !route.public);
}
