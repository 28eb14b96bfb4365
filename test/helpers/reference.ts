/**
 * Reading docs/reference.md, the repo's own reference, for the tests that keep it and the code
 * in step: its numbered sections, their subsections and the Markdown tables in them.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const REFERENCE_PATH = path.resolve(import.meta.dirname, '../../docs/reference.md');

export function referenceText(): string {
  return readFileSync(REFERENCE_PATH, 'utf8');
}

/** `## <n>. …` up to the next `## ` heading; throws when the section is missing. */
export function section(text: string, n: number): string {
  return between(text, new RegExp(`^## ${n}\\. .*$`, 'm'), /^## /m);
}

/** `### <title>` (exact title) up to the next `##`/`###` heading; throws when missing. */
export function subsection(text: string, title: string): string {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return between(text, new RegExp(`^### ${escaped}$`, 'm'), /^###? /m);
}

function between(text: string, start: RegExp, end: RegExp): string {
  const m = start.exec(text);
  if (m === null) throw new Error(`docs/reference.md has no heading matching ${String(start)}`);
  const rest = text.slice(m.index + m[0].length);
  const e = end.exec(rest);
  return e === null ? rest : rest.slice(0, e.index);
}

/**
 * The body rows (cells trimmed) of every table in `text` whose header row is exactly `header`.
 * A `\|` inside a cell is a literal bar.
 */
export function tableRows(text: string, header: readonly string[]): string[][] {
  const rows: string[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const cells = splitRow(lines[i] ?? '');
    if (cells === null || cells.join('\u0000') !== header.join('\u0000')) continue;
    // Skip the header and its |---| line; take rows until the table ends.
    for (let j = i + 2; j < lines.length; j++) {
      const row = splitRow(lines[j] ?? '');
      if (row === null) break;
      rows.push(row);
    }
  }
  return rows;
}

function splitRow(line: string): string[] | null {
  const t = line.trim();
  if (!t.startsWith('|') || !t.endsWith('|')) return null;
  return t
    .slice(1, -1)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim().replaceAll('\\|', '|'));
}

/** The contents of every `code span` in `text`. */
export function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
}

/** Metric names (first column) of the metric tables in §6. */
export function referenceMetricNames(text: string = referenceText()): string[] {
  return tableRows(section(text, 6), ['metric', 'type', 'labels', 'meaning']).flatMap((r) => codeSpans(r[0] ?? ''));
}
