/**
 * What a token bucket may admit in real time, bounded from the audit lines of the requests it
 * decided rather than from the test's own clock: each decision falls between its request's
 * start (the line's time minus durationMs) and its end (the line's time), however slow the
 * machine. With demand above the rate throughout, the bucket admits its burst plus one token per
 * 1/rps between the first decision and the last.
 */
import type { AuditLine } from './audit-sink.js';

export function admitBounds(lines: readonly AuditLine[], bucket: { readonly rps: number; readonly burst: number }): { min: number; max: number } {
  const spans = lines.map((l) => {
    const end = Date.parse(String(l['time']));
    return { start: end - Number(l['durationMs']), end };
  });
  const firstStart = Math.min(...spans.map((x) => x.start));
  const firstEnd = Math.min(...spans.map((x) => x.end));
  const lastStart = Math.max(...spans.map((x) => x.start));
  const lastEnd = Math.max(...spans.map((x) => x.end));
  return {
    // -2: where a token falls at either end, and one that came due after the last request (on a
    // loaded machine a request can take longer than 1/rps).
    min: bucket.burst + Math.floor((bucket.rps * (lastStart - firstEnd)) / 1000) - 2,
    // +1: where a token falls at either end.
    max: bucket.burst + Math.ceil((bucket.rps * (lastEnd - firstStart)) / 1000) + 1,
  };
}
