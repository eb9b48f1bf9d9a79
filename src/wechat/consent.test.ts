// One-time consent URL builder and callback parser: every rule of spec §1.2–1.3, plus a fuzz of the parser.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import { buildOneTimeConsentUrl, parseOneTimeConsentCallback } from './consent.js';

describe('buildOneTimeConsentUrl', () => {
  it('builds the official example shape', () => {
    const url = buildOneTimeConsentUrl({
      appId: 'wxaba38c7f163da69b',
      scene: 1000,
      templateId: '1uDxHNXwYQfBmXOfPJcjAS3FynHArD8aWMEFNRGSbCc',
      redirectUrl: 'http://support.qq.com',
      reserved: 'test',
    });
    expect(url).toBe(
      'https://mp.weixin.qq.com/mp/subscribemsg?action=get_confirm&appid=wxaba38c7f163da69b&scene=1000&template_id=1uDxHNXwYQfBmXOfPJcjAS3FynHArD8aWMEFNRGSbCc&redirect_url=http%3A%2F%2Fsupport.qq.com&reserved=test#wechat_redirect',
    );
  });
  it('omits reserved when not given and honours baseUrl', () => {
    const url = buildOneTimeConsentUrl({
      appId: 'wx1',
      scene: 0,
      templateId: 'T',
      redirectUrl: 'https://a.example/cb?x=1#/route',
      baseUrl: 'http://127.0.0.1:9/',
    });
    expect(url).toBe(
      'http://127.0.0.1:9/mp/subscribemsg?action=get_confirm&appid=wx1&scene=0&template_id=T&redirect_url=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1%23%2Froute#wechat_redirect',
    );
  });
  it.each([
    [{ scene: -1 }, 'scene'],
    [{ scene: 10001 }, 'scene'],
    [{ scene: 1.5 }, 'scene'],
    [{ reserved: 'has space' }, 'reserved'],
    [{ reserved: 'a'.repeat(129) }, 'reserved'],
    [{ redirectUrl: 'javascript:alert(1)' }, 'redirectUrl'],
    [{ redirectUrl: 'not a url' }, 'redirectUrl'],
    [{ businessDomain: 'other.example' }, 'redirectUrl'],
    [{ templateId: '' }, 'templateId'],
    [{ businessDomain: null as unknown as string }, 'businessDomain'],
    [{ businessDomain: 42 as unknown as string }, 'businessDomain'],
  ])('rejects %o', (over, field) => {
    expect(() =>
      buildOneTimeConsentUrl({
        appId: 'wx1',
        scene: 1,
        templateId: 'T',
        redirectUrl: 'https://a.example/cb',
        ...over,
      }),
    ).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field }));
  });
  it('accepts reserved of exactly 128 and a matching business domain', () => {
    expect(
      buildOneTimeConsentUrl({
        appId: 'wx1',
        scene: 10000,
        templateId: 'T',
        redirectUrl: 'https://A.example/cb',
        reserved: 'a'.repeat(128),
        businessDomain: 'a.example',
      }),
    ).toContain('reserved=' + 'a'.repeat(128));
  });
});

describe('parseOneTimeConsentCallback', () => {
  it('accepts the echo of an empty reserved when expecting reserved: ""', () => {
    const url = buildOneTimeConsentUrl({
      appId: 'wx1',
      templateId: 'T',
      scene: 5,
      redirectUrl: 'https://a.example/cb',
      reserved: '',
    });
    expect(new URL(url).searchParams.get('reserved')).toBe('');
    const expected = { templateId: 'T', scene: 5, reserved: '' };
    const echo = 'https://a.example/cb?openid=oUser1&template_id=T&action=confirm&scene=5';
    expect(parseOneTimeConsentCallback(`${echo}&reserved=`, expected)).toMatchObject({ action: 'confirm' });
    expect(parseOneTimeConsentCallback(echo, expected)).toMatchObject({ action: 'confirm' });
    expect(() => parseOneTimeConsentCallback(`${echo}&reserved=abc`, expected)).toThrow(
      expect.objectContaining({
        code: 'WX_CALLBACK_INVALID',
        details: expect.objectContaining({ field: 'reserved' }),
      }),
    );
  });
  it('parses a confirm from the observed real redirect (query before a re-encoded fragment)', () => {
    const r = parseOneTimeConsentCallback(
      'http://test.dr2dr.cn/?openid=oUser1&template_id=TPL&action=confirm&reserved=test&scene=1000#%23/live/detail/28',
    );
    expect(r).toEqual({
      action: 'confirm',
      openid: 'oUser1',
      templateId: 'TPL',
      scene: 1000,
      reserved: 'test',
    });
  });
  it('parses a cancel without openid, from an object query', () => {
    expect(parseOneTimeConsentCallback({ template_id: 'TPL', action: 'cancel', scene: '7' })).toEqual({
      action: 'cancel',
      openid: undefined,
      templateId: 'TPL',
      scene: 7,
      reserved: undefined,
    });
  });
  it('checks expectations (reserved, scene, template)', () => {
    const q = new URLSearchParams('openid=o1&template_id=TPL&action=confirm&scene=5&reserved=abc');
    expect(parseOneTimeConsentCallback(q, { reserved: 'abc', scene: 5, templateId: 'TPL' }).action).toBe(
      'confirm',
    );
    for (const expectation of [{ reserved: 'abd' }, { scene: 6 }, { templateId: 'X' }]) {
      expect(() => parseOneTimeConsentCallback(q, expectation)).toThrow(
        expect.objectContaining({ code: 'WX_CALLBACK_INVALID' }),
      );
    }
  });
  it.each([
    ['template_id=T&action=confirm&scene=1', 'openid'],
    ['openid=o&template_id=T&action=maybe&scene=1', 'action'],
    ['openid=o&template_id=T&action=confirm&scene=10001', 'scene'],
    ['openid=o&template_id=T&action=confirm&scene=-1', 'scene'],
    ['openid=o&template_id=T&action=confirm&scene=1e3', 'scene'],
    ['openid=o&action=confirm&scene=1', 'template_id'],
    ['openid=o&template_id=T&action=confirm&scene=1&reserved=a%20b', 'reserved'],
    ['openid=o&openid=p&template_id=T&action=confirm&scene=1', 'openid'],
  ])('rejects %s (field %s)', (query, field) => {
    expect(() => parseOneTimeConsentCallback(query)).toThrow(
      expect.objectContaining({ code: 'WX_CALLBACK_INVALID', details: expect.objectContaining({ field }) }),
    );
  });
  it('refuses nested objects (what qs makes of action[toString]=x) with WX_CALLBACK_INVALID, not a TypeError', () => {
    for (const q of [{ action: { toString: 'x' } }, { '': { toString: null } }, { scene: [{}] }]) {
      expect(() => parseOneTimeConsentCallback(q as never)).toThrow(
        expect.objectContaining({ code: 'WX_CALLBACK_INVALID' }),
      );
    }
  });
  it('never throws anything but WX_CALLBACK_INVALID on arbitrary input (fuzz)', () => {
    const value = fc.oneof(
      fc.string(),
      fc.constantFrom('confirm', 'cancel', '0', '10000', '10001', ''),
      fc.array(fc.string(), { maxLength: 3 }),
    );
    const query = fc.oneof(
      fc.string(),
      fc.dictionary(fc.constantFrom('openid', 'template_id', 'action', 'scene', 'reserved', 'x'), value),
      fc.anything(),
    );
    fc.assert(
      fc.property(query, (q) => {
        try {
          const r = parseOneTimeConsentCallback(q as never);
          return (r.action === 'confirm') === (r.openid !== undefined) && r.scene >= 0 && r.scene <= 10000;
        } catch (err) {
          return isAppError(err, 'WX_CALLBACK_INVALID');
        }
      }),
      { numRuns: 1000 },
    );
  });
  it('round-trips what the builder sends (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10000 }),
        fc.stringMatching(/^[A-Za-z0-9]{1,128}$/),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,40}$/),
        (scene, reserved, openid) => {
          const cb = `https://a.example/cb?openid=${openid}&template_id=TPL&action=confirm&scene=${scene}&reserved=${reserved}`;
          const r = parseOneTimeConsentCallback(cb, { scene, reserved, templateId: 'TPL' });
          return r.openid === openid && r.scene === scene && r.reserved === reserved;
        },
      ),
      { numRuns: 200 },
    );
  });
});
