/** Durations ("250ms", "30s", "5m", "1h") and sizes (bytes, "64KiB", "1MiB") from SPEC §3. */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or null when the text is not a duration. */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text.trim());
  if (m === null) return null;
  const unit = DURATION_MS[m[2] ?? ''];
  if (unit === undefined) return null;
  const ms = Number(m[1]) * unit;
  return Number.isFinite(ms) ? Math.round(ms) : null;
}

const SIZE = /^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$/;
const SIZE_BYTES: Readonly<Record<string, number>> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
};

/** Bytes, or null when the value is not a size. */
export function parseSize(value: number | string): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : null;
  const m = SIZE.exec(value.trim());
  if (m === null) return null;
  const bytes = Number(m[1]) * (SIZE_BYTES[m[2] ?? 'B'] ?? 1);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms > 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
