// Tests of the consent callback query parser: examples for each code, and fuzzing that it never throws.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseOneTimeCallback, parseScene } from './callback-query.js';

const ok = { openid: 'oUser_1', template_id: 'TPL_1', action: 'confirm', scene: '7', reserved: 'abc123' };
const code = (q: unknown) => {
  const r = parseOneTimeCallback(q);
  return r.ok ? 'ok' : r.code;
};

describe('parseOneTimeCallback', () => {
  it('accepts a confirm and a cancel without openid', () => {
    expect(parseOneTimeCallback(ok)).toEqual({
      ok: true,
      value: { action: 'confirm', openid: 'oUser_1', templateId: 'TPL_1', scene: 7, reserved: 'abc123' },
    });
    const { openid: _o, ...cancel } = ok;
    expect(parseOneTimeCallback({ ...cancel, action: 'cancel' })).toMatchObject({
      ok: true,
      value: { openid: null },
    });
  });

  it('maps each bad field to a stable code', () => {
    expect(code({ ...ok, reserved: 'a'.repeat(129) })).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code({ ...ok, reserved: 'a b' })).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code({ ...ok, reserved: undefined })).toBe('CONSENT_RESERVED_MALFORMED');
    expect(code({ ...ok, action: 'accept' })).toBe('CONSENT_ACTION_INVALID');
    expect(code({ ...ok, scene: '10001' })).toBe('CONSENT_SCENE_OUT_OF_RANGE');
    expect(code({ ...ok, scene: '-1' })).toBe('CONSENT_SCENE_OUT_OF_RANGE');
    expect(code({ ...ok, scene: '07' })).toBe('CONSENT_SCENE_OUT_OF_RANGE');
    expect(code({ ...ok, scene: ['1', '2'] })).toBe('CONSENT_SCENE_OUT_OF_RANGE');
    expect(code({ ...ok, openid: undefined })).toBe('CONSENT_OPENID_MISSING');
    expect(code({ ...ok, openid: '' })).toBe('CONSENT_OPENID_MISSING');
    expect(code({ ...ok, openid: ['a', 'b'] })).toBe('CONSENT_QUERY_INVALID');
    expect(code({ ...ok, template_id: '' })).toBe('CONSENT_QUERY_INVALID');
    expect(code(null)).toBe('CONSENT_QUERY_INVALID');
  });

  it('never throws and only accepts what it can vouch for (fuzzed)', () => {
    const field = fc.oneof(
      fc.string({ maxLength: 140 }),
      fc.array(fc.string(), { maxLength: 3 }),
      fc.constant(undefined),
      fc.integer(),
    );
    fc.assert(
      fc.property(
        fc.record({
          openid: field,
          template_id: field,
          action: fc.oneof(field, fc.constantFrom('confirm', 'cancel')),
          scene: field,
          reserved: field,
        }),
        (q) => {
          const r = parseOneTimeCallback(q);
          if (r.ok) {
            expect(r.value.reserved).toMatch(/^[A-Za-z0-9]{1,128}$/);
            expect(r.value.scene).toBeGreaterThanOrEqual(0);
            expect(r.value.scene).toBeLessThanOrEqual(10_000);
            if (r.value.action === 'confirm') expect(r.value.openid).toBeTruthy();
          } else {
            expect(r.code).toMatch(/^CONSENT_/);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('parses scenes strictly', () => {
    expect(parseScene('0')).toBe(0);
    expect(parseScene('10000')).toBe(10_000);
    expect(parseScene('1e3')).toBeNull();
    expect(parseScene(' 1')).toBeNull();
  });
});
