// Prints vitest's JSON report as the closing line CI counts: "N passed, N failed[, N skipped]".
// A suite that failed to load counts as a failure, so a broken run can never read as green; so
// does a run whose exit status (FILE.exit, written by the Makefile) is not 0 while its report
// counts no failure (vitest exits 1 on an unhandled error and still reports success).
// Several reports ("label=file" each): a line per run, then their total as the closing line.
import { readFileSync } from 'node:fs';

/** The run's exit status beside its report, or 0 where none was kept (a report from elsewhere). */
function exitStatus(file) {
  try {
    return Number.parseInt(readFileSync(`${file}.exit`, 'utf8'), 10) || 0;
  } catch {
    return 0;
  }
}

function count(file) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    // No report: the run did not happen or crashed.
    return { passed: 0, failed: 1, skipped: 0 };
  }
  const passed = report.numPassedTests ?? 0;
  let failed = report.numFailedTests ?? 0;
  if (failed === 0 && (report.numFailedTestSuites ?? 0) > 0) failed = report.numFailedTestSuites;
  if (failed === 0 && report.success === false) failed = 1;
  if (failed === 0 && exitStatus(file) !== 0) failed = 1;
  const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  return { passed, failed, skipped };
}

const line = ({ passed, failed, skipped }) => `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`;

const runs = (process.argv.length > 2 ? process.argv.slice(2) : ['.tmp/vitest.json']).map((arg) => {
  const eq = arg.indexOf('=');
  return eq < 0 ? { label: arg, file: arg } : { label: arg.slice(0, eq), file: arg.slice(eq + 1) };
});
const total = { passed: 0, failed: 0, skipped: 0 };
for (const run of runs) {
  const c = count(run.file);
  if (runs.length > 1) console.log(`${run.label}: ${line(c)}`);
  total.passed += c.passed;
  total.failed += c.failed;
  total.skipped += c.skipped;
}
console.log(line(total));
