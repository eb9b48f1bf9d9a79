// Reads vitest's JSON report and prints the closing "N passed, N failed[, N skipped]" line CI reads.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'test-artifacts/vitest.json';
let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
} catch (err) {
  console.error(`no test report at ${file}: ${err.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const passed = report.numPassedTests ?? 0;
// numFailedTestSuites counts describe blocks, so count files instead: a file that failed without a
// failed test (it did not load, or a hook threw) is one failure more.
const brokenFiles = (report.testResults ?? []).filter(
  (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'),
).length;
// vitest exits non-zero on unhandled errors even when every test passed (its JSON still says success);
// .ci/run passes that exit code so the line never says 0 failed for a failing run.
const runnerExit = Number(process.argv[3] ?? 0);
const counted = (report.numFailedTests ?? 0) + brokenFiles;
const failed = counted === 0 && runnerExit !== 0 ? 1 : counted;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
