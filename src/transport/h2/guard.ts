/**
 * Stream-abuse accounting for one HTTP/2 connection, shared by both engines (the own one in
 * transport/h2/session.ts, node:http2's in transport/h2-node.ts). SPEC: a connection that "resets or
 * refuses streams faster than it completes them" gets GOAWAY ENHANCE_YOUR_CALM.
 *
 * Two rules, either one trips it:
 * - at least RAPID_RESET_MIN strikes and more strikes than completed streams (as Envoy's
 *   premature-reset guard): a reset loop (CVE-2023-44487) is cut after ~100 streams;
 * - a token bucket of RESET_BURST strikes, refilled at RESETS_PER_SECOND (as nghttp2's stream
 *   reset rate limit): a client that mixes cheap completed streams in with its resets, to keep
 *   the first rule quiet, still gets no more than that rate of aborted app requests.
 * Typeahead search or gRPC cancellations run far below both.
 */
export const RAPID_RESET_MIN = 100;
export const RESET_BURST = 200;
export const RESETS_PER_SECOND = 50;
/** PING and SETTINGS frames a connection may send per second (CVE-2019-9512, CVE-2019-9515). */
export const CONTROL_FRAMES_PER_SECOND = 1000;

/** PING and SETTINGS frames in the current one-second window. */
export class ControlGuard {
  #windowStart = 0;
  #count = 0;

  /** One more PING or SETTINGS; true when the connection must go. */
  frame(now: number): boolean {
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#count = 0;
    }
    return ++this.#count > CONTROL_FRAMES_PER_SECOND;
  }
}

export class ResetGuard {
  #strikes = 0;
  #completed = 0;
  #tokens = RESET_BURST;
  #at = 0;

  completed(): void {
    this.#completed++;
  }

  /** A peer reset, a refused stream or a stream error the peer provoked; true when the connection must go. */
  strike(now: number): boolean {
    const n = ++this.#strikes;
    if (n >= RAPID_RESET_MIN && n > this.#completed) return true;
    if (this.#at !== 0) this.#tokens = Math.min(RESET_BURST, this.#tokens + ((now - this.#at) * RESETS_PER_SECOND) / 1000);
    this.#at = now;
    return --this.#tokens < 0;
  }
}
