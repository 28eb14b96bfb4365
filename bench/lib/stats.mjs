// Number formatting and medians for the bench reports (run.mjs and the pair scenario).

/** A number to `d` decimals, or an en dash for what was not measured. */
export const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));

/** Median of the measured values (null, undefined and NaN left out); null when none. */
export function median(xs) {
  const v = xs.filter((x) => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
