/** The `jwt` section -> the snapshot's jwt: its settings, with the JWKS file and denylist read and checked. */
import { loadJwtMaterial } from '../jwt/verify.js';
import { JwtError } from '../jwt/errors.js';
import type { JwtSettings } from '../jwt/verify.js';
import { messageOf } from './compile-context.js';
import type { CompileContext } from './compile-context.js';
import type { RawConfig } from './schema.js';
import type { Snapshot } from './snapshot.js';

/**
 * The `jwt` section: keys and denylist are read now, so a bad JWKS is a config error like a bad
 * PEM. Only the loaded data goes into the snapshot; the sidecar builds (and keeps) the verifier.
 */
export async function compileJwt(jwt: RawJwtConfig | undefined, ctx: CompileContext): Promise<Snapshot['jwt']> {
  // Without the section a route's tokenScopes has nothing to check it: a schema issue (schema.ts).
  if (jwt === undefined) return null;
  try {
    const material = await loadJwtMaterial(jwtSettingsFromConfig(jwt, (f) => ctx.resolve(f)));
    for (const [f, digest] of material.fileDigests) ctx.digests.set(f, digest);
    return Object.freeze({ material, required: jwt.required });
  } catch (err) {
    if (err instanceof JwtError) ctx.add(err.configPath, err.message);
    else ctx.add(['jwt'], messageOf(err));
    return null;
  }
}

export type RawJwtConfig = NonNullable<RawConfig['jwt']>;

/** The `jwt` config section (schema.ts) -> JwtSettings, with file paths resolved by the caller; here so jwt/ never reads raw config. */
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
