/**
 * The one line `inject` ends with on stderr: what it did to the input, so a run that injected
 * nothing (a missing label, a file of the wrong kinds) does not pass unnoticed. Standard output
 * stays pure YAML.
 */
import type { DocumentReport } from './documents.js';
import type { SkipReason } from './inject.js';

const SKIP_WORDS: Readonly<Record<SkipReason, string>> = {
  not_opted_in: 'not opted in',
  opted_out: 'opted out',
  already_injected: 'already injected',
  host_network: 'hostNetwork',
};

/**
 * `injected 1 of 3 workloads; skipped: Deployment/a (not opted in), Pod/b (already injected);
 * passed through: 2 Service, 1 NetworkPolicy`. `passedThrough` holds the kind of each object
 * without a pod template.
 */
export function summarize(reports: readonly DocumentReport[], passedThrough: readonly string[]): string {
  const parts: string[] = [];
  const injected = reports.filter((r) => r.outcome === 'injected').length;
  if (reports.length === 0) parts.push('no workloads to inject');
  else parts.push(`injected ${injected} of ${reports.length} workload${reports.length === 1 ? '' : 's'}`);
  const skipped = reports.filter((r) => r.outcome === 'skipped');
  if (skipped.length > 0) parts.push(`skipped: ${skipped.map((r) => `${r.object} (${r.reason === undefined ? 'skipped' : SKIP_WORDS[r.reason]})`).join(', ')}`);
  if (passedThrough.length > 0) {
    const counts = new Map<string, number>();
    for (const kind of passedThrough) counts.set(kind, (counts.get(kind) ?? 0) + 1);
    parts.push(`passed through: ${[...counts].map(([kind, n]) => `${n} ${kind}`).join(', ')}`);
  } else if (reports.length === 0) {
    parts.push('the input is empty');
  }
  return parts.join('; ');
}
