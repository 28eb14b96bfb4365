/**
 * Containment of segment globs, the shape shared by route patterns (policy/routes.ts) and
 * identity uri/dns/cn patterns (identity/match.ts): does every string that glob `b` matches also
 * match glob `a`? `check` uses it to call a rule shadowed by an earlier one, so it answers true
 * only when it has proved it; false means "not shown", never "there is a string only b matches".
 *
 * A glob is a list of segments (the text between two separators) with at most one `**`, which
 * stands for any number of whole segments, none included. A segment is literal text, `x*y` (x, a
 * non-empty run without the separator, then y) or "any" (a run without the separator, possibly
 * empty: what a route prefix ending in "/" allows after its slash).
 */

export type Segment =
  | { readonly kind: 'literal'; readonly text: string }
  | { readonly kind: 'star'; readonly before: string; readonly after: string }
  | { readonly kind: 'any' };

export interface SegmentGlob {
  /** The segments before the `**`, or all of them when there is none. */
  readonly head: readonly Segment[];
  /** null when there is no `**`; otherwise the segments after it. */
  readonly tail: readonly Segment[] | null;
}

/** One segment's text (validated: at most one `*`, no `**`) -> its segment. */
export function parseSegment(text: string): Segment {
  const star = text.indexOf('*');
  return star === -1 ? { kind: 'literal', text } : { kind: 'star', before: text.slice(0, star), after: text.slice(star + 1) };
}

/** Segments split at `sep`, a whole `**` segment becoming the glob's `**` (validated: at most one). */
export function parseSegmentGlob(segments: readonly string[]): SegmentGlob {
  const at = segments.indexOf('**');
  if (at === -1) return { head: segments.map(parseSegment), tail: null };
  return { head: segments.slice(0, at).map(parseSegment), tail: segments.slice(at + 1).map(parseSegment) };
}

/** Every text segment `b` matches, `a` matches. */
export function segmentCovers(a: Segment, b: Segment): boolean {
  switch (a.kind) {
    case 'any':
      return true;
    case 'literal':
      return b.kind === 'literal' && b.text === a.text;
    case 'star':
      if (b.kind === 'literal') {
        return b.text.length > a.before.length + a.after.length && b.text.startsWith(a.before) && b.text.endsWith(a.after);
      }
      // b's text is before_b + run + after_b with a non-empty run; when before_b extends a.before
      // and after_b ends with a.after, what lies between them is non-empty too.
      return b.kind === 'star' && b.before.startsWith(a.before) && b.after.endsWith(a.after);
  }
}

function allCover(a: readonly Segment[], b: readonly Segment[], bFrom: number): boolean {
  for (let i = 0; i < a.length; i++) {
    const sa = a[i];
    const sb = b[bFrom + i];
    if (sa === undefined || sb === undefined || !segmentCovers(sa, sb)) return false;
  }
  return true;
}

/** Every segment list `b` matches, `a` matches. */
export function globCovers(a: SegmentGlob, b: SegmentGlob): boolean {
  if (a.tail === null) {
    // A fixed number of segments covers only globs of that same fixed number.
    return b.tail === null && a.head.length === b.head.length && allCover(a.head, b.head, 0);
  }
  if (b.tail === null) {
    // a's head on b's first segments, a's tail on b's last ones, a's `**` takes what is between.
    const n = b.head.length;
    return n >= a.head.length + a.tail.length && allCover(a.head, b.head, 0) && allCover(a.tail, b.head, n - a.tail.length);
  }
  // Both have `**`: a's head within b's head, a's tail within b's tail; a's `**` takes the rest
  // of b's head, everything b's `**` matches, and the start of b's tail.
  return (
    b.head.length >= a.head.length &&
    b.tail.length >= a.tail.length &&
    allCover(a.head, b.head, 0) &&
    allCover(a.tail, b.tail, b.tail.length - a.tail.length)
  );
}
