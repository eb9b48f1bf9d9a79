// Renders docs/errors.md from the error registry (src/errors.ts); `--check` fails when the file is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, type ErrorSpec } from '../src/errors.js';

/** Path of the generated document. */
export const ERRORS_DOC_PATH = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

/** The Markdown of docs/errors.md for the current registry. */
export function renderErrorsDoc(): string {
  const rows = Object.entries(ERROR_CODES as Record<string, ErrorSpec>).map(
    ([code, spec]) =>
      `| \`${code}\` | ${spec.status} | ${spec.retryable ? 'yes' : 'no'} | ${spec.message.replace(/\|/g, '\\|')} |`,
  );
  return [
    '# Error codes',
    '',
    'Every error wxsub raises on purpose carries one of these stable codes. The service answers with',
    '`{ "error": { "code", "message", "details" } }` and the HTTP status below. Codes are never reused.',
    'This file is generated from `src/errors.ts` by `npm run docs:errors`; a test keeps the two in sync.',
    '',
    '| code | HTTP status | retryable | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const next = renderErrorsDoc();
  if (process.argv.includes('--check')) {
    const current = readFileSync(ERRORS_DOC_PATH, 'utf8');
    if (current !== next) {
      console.error('docs/errors.md is stale: run npm run docs:errors');
      process.exit(1);
    }
  } else {
    writeFileSync(ERRORS_DOC_PATH, next);
    console.log(`wrote ${ERRORS_DOC_PATH}`);
  }
}
