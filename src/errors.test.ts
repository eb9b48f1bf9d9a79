// Keeps the error registry well-formed and docs/errors.md in sync with it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES, isAppError } from './errors.js';
import { ERRORS_DOC_PATH, renderErrorsDoc } from '../scripts/gen-errors-doc.js';

describe('error registry', () => {
  it('uses SCREAMING_SNAKE codes with a known area prefix and HTTP statuses (2xx only for delivery outcomes)', () => {
    const prefixes = [
      'CONFIG_',
      'HTTP_',
      'AUTH_',
      'WX_',
      'STORE_',
      'CONSENT_',
      'GRANT_',
      'MESSAGE_',
      'CAMPAIGN_',
      'DELIVERY_',
      'PUSH_',
      'TEMPLATE_',
      'EMULATOR_',
      'CLI_',
      'LEDGER_',
    ];
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z]+(_[A-Z0-9]+)+$/);
      expect(
        prefixes.some((p) => code.startsWith(p)),
        code,
      ).toBe(true);
      expect(spec.status).toBeGreaterThanOrEqual(code.startsWith('DELIVERY_') ? 200 : 400);
      expect(spec.status).toBeLessThan(600);
    }
  });

  it('builds errors that carry code, status, details and cause', () => {
    const cause = new Error('low level');
    const err = new AppError('HTTP_BAD_REQUEST', { details: { field: 'x' }, cause });
    expect(err.code).toBe('HTTP_BAD_REQUEST');
    expect(err.status).toBe(400);
    expect(err.details).toEqual({ field: 'x' });
    expect(err.cause).toBe(cause);
    expect(isAppError(err, 'HTTP_BAD_REQUEST')).toBe(true);
    expect(isAppError(err, 'HTTP_NOT_FOUND')).toBe(false);
    expect(isAppError(new Error('x'))).toBe(false);
  });

  it('is documented in docs/errors.md exactly as generated', () => {
    expect(readFileSync(ERRORS_DOC_PATH, 'utf8')).toBe(renderErrorsDoc());
  });
});
