/**
 * `RateLimit-Policy` and `RateLimit` response fields, in the Structured-Field form of
 * draft-ietf-httpapi-ratelimit-headers-11 (23 May 2026, the latest revision; §3 and §4):
 *
 *   RateLimit-Policy: "<name>";q=<quota>;w=<window seconds>     (§3.1: String item, q REQUIRED)
 *   RateLimit:        "<name>";r=<available quota>;t=<seconds>  (§4.1: r REQUIRED, t optional)
 *
 * A token bucket is advertised as q = burst and w = the seconds an empty bucket needs to refill
 * (ceil(burst / rps)), so q/w is the sustained rate and q the most a client can send at once:
 * rps 100, burst 200 → `"default";q=200;w=2`.
 *
 * `t` (§4.1.2, "the effective window"): on an allowed response, the seconds until the bucket is
 * full again (the client can use no more than `r` plus what refills within `t`); on a denial,
 * `r=0` and `t` equals `Retry-After`, since §6 says Retry-After SHOULD NOT point earlier than
 * the end of the effective window, and within it the client can use none.
 *
 * Header names are lower case (HTTP/2 requires it; HTTP/1.1 is case-insensitive).
 */
import { windowSeconds } from './bucket.js';
import type { AllowDecision, Bucket, DenyDecision } from './types.js';

/**
 * Headers for an allowed or denied request: `ratelimit-policy` and `ratelimit` always,
 * `retry-after` on a denial. `policyName` names the bucket the decision describes (see
 * RatePlanner.plan().names[decision.index]); it is written as an SF String.
 */
export function rateLimitHeaders(d: AllowDecision | DenyDecision, policyName: string): Record<string, string> {
  const f = policyFields(policyName, d.policy);
  if (d.kind === 'allow') {
    return { 'ratelimit-policy': f.policy, ratelimit: `${f.name};r=${d.remaining};t=${d.resetSeconds}` };
  }
  const retry = String(d.retryAfterSeconds);
  return { 'ratelimit-policy': f.policy, ratelimit: `${f.name};r=0;t=${retry}`, 'retry-after': retry };
}

interface PolicyFields {
  readonly bucket: Bucket;
  /** The name as an SF String. */
  readonly name: string;
  /** The whole `ratelimit-policy` value. */
  readonly policy: string;
}

/**
 * The parts that only change with the config, kept per policy name: names come from the
 * config (identities, routes, `default`), and a reload brings new Bucket objects, which
 * replace the entry. The bound only guards against a config with absurdly many names.
 */
const fieldsByName = new Map<string, PolicyFields>();

function policyFields(policyName: string, bucket: Bucket): PolicyFields {
  let f = fieldsByName.get(policyName);
  if (f === undefined || f.bucket !== bucket) {
    const name = sfString(policyName);
    f = { bucket, name, policy: `${name};q=${quota(bucket)};w=${windowSeconds(bucket)}` };
    if (fieldsByName.size >= 4096) fieldsByName.clear();
    fieldsByName.set(policyName, f);
  }
  return f;
}

function quota(b: Bucket): number {
  // q is a non-negative Integer (§3.1.1); burst already is one in a valid config.
  return Math.max(0, Math.floor(b.burst));
}

/**
 * An RFC 9651 sf-string: printable ASCII (0x20-0x7E) in double quotes, with `"` and `\`
 * escaped. Anything else (config names never hold it) becomes `?`, so the field always parses.
 */
export function sfString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += '\\' + s.charAt(i);
    else if (c >= 0x20 && c <= 0x7e) out += s.charAt(i);
    else out += '?';
  }
  return out + '"';
}
