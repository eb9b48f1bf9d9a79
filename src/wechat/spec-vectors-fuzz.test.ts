// The SDK's push crypto, JS-SDK signing and consent-callback parser against the spec (wechat-spec.md): its test
// vectors, property tests and fuzzing (every failure a stable code, no secret in it). An audit found, and these
// tests first showed: a leading U+FEFF dropped by decryption, a TypeError instead of WX_DECRYPT_FAILED for an unset
// key or a missing input, lone surrogates silently changed by encryption, and page URLs with whitespace signed.
// (No push-event parser exists yet: the push receiver is not built.)
import { createCipheriv, createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isAppError } from '../errors.js';
import {
  answerUrlVerification,
  buildEncryptedReply,
  computeMsgSignature,
  computeSignature,
  decodeAesKey,
  decryptMessage,
  encryptMessage,
  pkcs7Pad,
  verifyMsgSignature,
  verifySignature,
} from './crypto.js';
import { checkPageUrl, signJsSdk } from './jssdk.js';
import { parseOneTimeConsentCallback } from './consent.js';

const TOKEN = 'testtoken';
const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
const KEY2 = 'ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut';
const APPID = 'wx1234567890abcdef';
const TS = '1714036504';
const NONCE = '1514711492';
const MSG =
  '<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><FromUserName><![CDATA[oUser123]]></FromUserName><CreateTime>1714036504</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL_A]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>1</PopupScene></List></SubscribeMsgPopupEvent></xml>';
const ENCRYPT =
  'Q3stYC6hdFzMh9T8HCvyDHlweV3+ktC4a55SNMwblv1R9Fea0i99UyGaztZR7vCSJ66xX+uYOyYL7QC24pTtNjmjVwCm/rR0QG7tPAk+qCYqst2xyCXrH03Bq3m7fHc7UIERTZuebp37P2TMsJLj2/C+KHzdho7mbsvPBte0pCjlmVLQA99vCCuUbOtaWC0NOzGTWFnJp4CN6rOkanzEB0M1a8LZkhm7Gk9wmZrmIwXe95P/t+rthmQom/6NrB+YbtnUimgDaby3O7yjg6fbd2P9rjW0om0U4HxKgZbt+iT278xJ7IHZ56tOOjJJijasliljUY+7dRFPzKTKownhPxCAnM9CidKs2i63Goc4vvz+1P1Qv+fs/6Eh2GNhomo9pEdgYjd/roNVlFF1ba2MsrS1/iYYIleB4W3cIzL9SzeUBmcMw+zAW7jNWXsfw+0J5ngOx41Xa/xSqt/iPJmYOJziZq78Q630jJW1yVl7XvXHWwRUAhXijT3k3njzohX1vDWdiV83krTqjzj7oejR3UY0dmE44KHpGQ6LZyLg1RPk6TOH2wB3XERz4TijHPyJjTppIo13o5JBpJ5qjzQ/R/lvQQtBH0nlmzt0zLzeBiUU9ceIYah5ecb1cMgh8Pum';
const RANDOM = Buffer.from('0123456789abcdef', 'utf8');
const AES_HEX = '69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051';

/** AES-256-CBC (IV = key[0..16)) of an already padded plaintext, i.e. any frame we like. */
function rawEncrypt(plain: Buffer, encodingAesKey = KEY): string {
  const key = Buffer.from(`${encodingAesKey}=`, 'base64');
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(plain), c.final()]).toString('base64');
}
function frame(msg: Buffer, appId: Buffer, lenField = msg.length): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(lenField >>> 0, 0);
  return Buffer.concat([RANDOM, len, msg, appId]);
}

/** Runs fn; passes when it returns or throws the AppError `code` whose message/details carry no secret. */
function onlyAppError(fn: () => unknown, code: string, secrets: string[] = [KEY, AES_HEX, TOKEN]): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (!isAppError(err) || err.code !== code) throw err;
    const text = `${err.message} ${JSON.stringify(err.details ?? {})}`;
    for (const s of secrets)
      if (text.includes(s)) throw new Error(`secret leaked in error: ${text}`, { cause: err });
    return true;
  }
}

describe('spec vectors (§2.2, §4.2, §4.7)', () => {
  it('URL-verification signature, AES key, ciphertext, msg_signature, reply and JS-SDK signature reproduce exactly', () => {
    expect(computeSignature(TOKEN, TS, NONCE)).toBe('ed26e9cf5447a1d6ff426d00b1b69e4e813e9a64');
    // order of the arguments must not matter (sorted)
    expect(computeSignature(NONCE, TOKEN, TS)).toBe('ed26e9cf5447a1d6ff426d00b1b69e4e813e9a64');
    expect(decodeAesKey(KEY).toString('hex')).toBe(AES_HEX);
    expect(Buffer.byteLength(MSG)).toBe(430);
    const padded = pkcs7Pad(frame(Buffer.from(MSG), Buffer.from(APPID)));
    expect(padded.length).toBe(480);
    expect(padded[479]).toBe(12);
    expect(encryptMessage({ encodingAesKey: KEY, appId: APPID, message: MSG, random: RANDOM })).toBe(ENCRYPT);
    expect(rawEncrypt(padded)).toBe(ENCRYPT);
    expect(computeMsgSignature(TOKEN, TS, NONCE, ENCRYPT)).toBe('c1d4e187e1c18d5c17fcd5c551f0b820caeb9f38');
    expect(
      verifyMsgSignature({
        token: TOKEN,
        timestamp: TS,
        nonce: NONCE,
        encrypt: ENCRYPT,
        msgSignature: 'C1D4E187E1C18D5C17FCD5C551F0B820CAEB9F38',
      }),
    ).toBe(true);
    const reply = buildEncryptedReply({
      token: TOKEN,
      encodingAesKey: KEY,
      appId: APPID,
      message: MSG,
      timestamp: TS,
      nonce: NONCE,
      random: RANDOM,
    });
    expect(reply).toContain(
      '<MsgSignature><![CDATA[c1d4e187e1c18d5c17fcd5c551f0b820caeb9f38]]></MsgSignature>',
    );
    expect(
      signJsSdk({
        ticket: 'sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg',
        nonceStr: 'Wm3WZYTPz0wzccnW',
        timestamp: 1414587457,
        url: 'http://mp.weixin.qq.com',
      }),
    ).toBe('f4d90daf4b3bca3078ab155816175ba34c443a7b');
  });

  it('JS-SDK signature = sha1 of raw (unescaped) sorted fields, URL cut at the first # (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.string({ maxLength: 20 }),
        fc.nat(),
        fc.webUrl({ withQueryParameters: true, withFragments: true }),
        (ticket, nonceStr, timestamp, url) => {
          const expected = createHash('sha1')
            .update(
              `jsapi_ticket=${ticket}&noncestr=${nonceStr}&timestamp=${timestamp}&url=${url.split('#')[0]}`,
              'utf8',
            )
            .digest('hex');
          return signJsSdk({ ticket, nonceStr, timestamp, url }) === expected;
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('encrypt → decrypt round trip', () => {
  it('round-trips arbitrary Unicode payloads and appids (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (message, appId, rnd) => {
          const encrypt = encryptMessage({ encodingAesKey: KEY, appId, message, random: Buffer.from(rnd) });
          expect(decryptMessage({ encodingAesKey: [KEY2, KEY], appId, encrypt })).toEqual({
            message,
            keyIndex: 1,
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('keeps a leading U+FEFF (BOM) of the message', () => {
    // Spec §4.4: msg is the UTF-8 bytes, taken verbatim; a leading EF BB BF is part of the message.
    const message = '\uFEFF<xml><A>1</A></xml>';
    const encrypt = encryptMessage({ encodingAesKey: KEY, appId: APPID, message, random: RANDOM });
    expect(decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt }).message).toBe(message);
  });

  it('either refuses a message that is not well-formed UTF-16 or round-trips it, never silently alters it', () => {
    const message = 'a\uD800b'; // lone surrogate
    let encrypt: string;
    try {
      encrypt = encryptMessage({ encodingAesKey: KEY, appId: APPID, message, random: RANDOM });
    } catch (err) {
      expect(err).toMatchObject({ code: 'WX_INVALID_ARGUMENT' });
      return;
    }
    expect(decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt }).message).toBe(message);
  });
});

describe('decryptor fuzz: only WX_DECRYPT_FAILED, no secret in the error', () => {
  const good = Buffer.from(ENCRYPT, 'base64');

  it('arbitrary strings, base64 and values', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc.base64String({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('base64')),
          fc.anything(),
        ),
        (encrypt) =>
          onlyAppError(
            () => decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt }),
            'WX_DECRYPT_FAILED',
          ),
      ),
      { numRuns: 400 },
    );
  });

  it('truncated, extended and re-encoded ciphertexts', () => {
    fc.assert(
      fc.property(
        fc.nat(good.length),
        fc.uint8Array({ maxLength: 64 }),
        fc.constantFrom('plain', 'url', 'nopad', 'spaces'),
        (cut, extra, how) => {
          const b = Buffer.concat([good.subarray(0, cut), Buffer.from(extra)]);
          let s = b.toString('base64');
          if (how === 'url') s = b.toString('base64url');
          if (how === 'nopad') s = s.replace(/=+$/, '');
          if (how === 'spaces') s = ` ${s}\n`;
          return onlyAppError(
            () => decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: s }),
            'WX_DECRYPT_FAILED',
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('crafted frames: wrong appid, overrunning/short lengths, bad PKCS#7 padding', () => {
    const msg = Buffer.from('<xml/>');
    const cases: Array<[string, Buffer]> = [
      ['wrong appid', pkcs7Pad(frame(msg, Buffer.from('wxother')))],
      ['appid prefix', pkcs7Pad(frame(msg, Buffer.from(APPID.slice(0, -1))))],
      ['appid + suffix', pkcs7Pad(frame(msg, Buffer.from(`${APPID}x`)))],
      ['no appid', pkcs7Pad(frame(msg, Buffer.alloc(0)))],
      ['len overruns by 1', pkcs7Pad(frame(msg, Buffer.from(APPID), msg.length + APPID.length + 1))],
      ['len 0xFFFFFFFF', pkcs7Pad(frame(msg, Buffer.from(APPID), 0xffffffff))],
      ['len 0x80000000', pkcs7Pad(frame(msg, Buffer.from(APPID), 0x80000000))],
      [
        'pad 0',
        (() => {
          const p = pkcs7Pad(frame(msg, Buffer.from(APPID)));
          p[p.length - 1] = 0;
          return p;
        })(),
      ],
      [
        'pad 33',
        (() => {
          const p = pkcs7Pad(frame(msg, Buffer.from(APPID)));
          p[p.length - 1] = 33;
          return p;
        })(),
      ],
      [
        'pad 255',
        (() => {
          const p = pkcs7Pad(frame(msg, Buffer.from(APPID)));
          p[p.length - 1] = 255;
          return p;
        })(),
      ],
      [
        'inconsistent pad bytes',
        (() => {
          const p = pkcs7Pad(frame(msg, Buffer.from(APPID)));
          const n = p[p.length - 1] as number;
          if (n > 1) p[p.length - 2] = n - 1;
          else p[p.length - 1] = 2;
          return p;
        })(),
      ],
      ['frame shorter than 20 bytes', pkcs7Pad(Buffer.alloc(10, 1))],
      ['only random + pad', Buffer.concat([Buffer.alloc(16, 7), Buffer.alloc(16, 16)])],
    ];
    for (const [name, plain] of cases) {
      expect(plain.length % 32, name).toBe(0);
      const encrypt = rawEncrypt(plain);
      let threw: unknown;
      try {
        decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt });
      } catch (err) {
        threw = err;
      }
      expect(threw, name).toMatchObject({ code: 'WX_DECRYPT_FAILED' });
      expect(String((threw as Error).message), name).not.toContain(KEY);
    }
  });

  it('a length field leaving extra bytes before the appid is refused (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 100 }),
        fc.integer({ min: 1, max: 50 }),
        (m, short) => {
          const msg = Buffer.from(m);
          const plain = pkcs7Pad(frame(msg, Buffer.from(APPID), Math.max(0, msg.length - short)));
          return onlyAppError(() => {
            const r = decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: rawEncrypt(plain) });
            throw new Error(`accepted a frame whose remainder is not the appid: ${JSON.stringify(r)}`);
          }, 'WX_DECRYPT_FAILED');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('huge inputs are refused quickly', () => {
    const t0 = Date.now();
    for (const encrypt of ['A'.repeat(4_000_004), 'A'.repeat(8_000_000), `${'A'.repeat(3_999_999)}=`]) {
      expect(
        onlyAppError(
          () => decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt }),
          'WX_DECRYPT_FAILED',
        ),
      ).toBe(true);
    }
    // 3.9 MB of valid base64 that decrypts to garbage
    const big = Buffer.alloc(2_900_000 - (2_900_000 % 96), 1).toString('base64');
    expect(
      onlyAppError(
        () => decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: big }),
        'WX_DECRYPT_FAILED',
      ),
    ).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('bad or missing configured keys give WX_DECRYPT_FAILED, not a TypeError, and never echo the key', () => {
    for (const encodingAesKey of [
      '',
      'short',
      `${KEY}x`,
      [] as string[],
      ['bad-key-with-dash-0123456789abcdefghijklmno'],
      [42 as unknown as string, KEY2],
    ]) {
      expect(
        onlyAppError(
          () => decryptMessage({ encodingAesKey, appId: APPID, encrypt: ENCRYPT }),
          'WX_DECRYPT_FAILED',
          ['bad-key-with-dash', KEY2, AES_HEX],
        ),
      ).toBe(true);
    }
  });

  it('an unset EncodingAESKey (undefined/null, e.g. plaintext-mode config) gives WX_DECRYPT_FAILED, not a TypeError', () => {
    for (const encodingAesKey of [undefined, null]) {
      let threw: unknown;
      try {
        decryptMessage({ encodingAesKey: encodingAesKey as never, appId: APPID, encrypt: ENCRYPT });
      } catch (err) {
        threw = err;
      }
      expect(threw).toBeInstanceOf(Error);
      expect(isAppError(threw), `got ${String(threw)}`).toBe(true);
    }
  });

  it('a missing input object gives an AppError, not a TypeError', () => {
    let threw: unknown;
    try {
      decryptMessage(null as never);
    } catch (err) {
      threw = err;
    }
    expect(isAppError(threw), `got ${String(threw)}`).toBe(true);
  });
});

describe('signature checks fuzz', () => {
  it('verifySignature/verifyMsgSignature never throw, accept only the exact signature', () => {
    fc.assert(
      fc.property(
        fc.anything(),
        fc.anything(),
        fc.anything(),
        fc.anything(),
        (timestamp, nonce, signature, encrypt) => {
          const a = verifySignature({ token: TOKEN, timestamp, nonce, signature });
          const b = verifyMsgSignature({ token: TOKEN, timestamp, nonce, encrypt, msgSignature: signature });
          expect(typeof a).toBe('boolean');
          expect(typeof b).toBe('boolean');
          if (a) expect(signature).toBe(computeSignature(TOKEN, timestamp as string, nonce as string));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a one-character change of signature, timestamp or nonce is refused (property)', () => {
    const sig = computeSignature(TOKEN, TS, NONCE);
    fc.assert(
      fc.property(fc.nat(39), fc.constantFrom(...'0123456789abcdef'), (i, c) => {
        fc.pre(sig[i] !== c);
        const bad = sig.slice(0, i) + c + sig.slice(i + 1);
        return (
          !verifySignature({ token: TOKEN, timestamp: TS, nonce: NONCE, signature: bad }) &&
          !verifySignature({ token: TOKEN, timestamp: TS, nonce: NONCE, signature: `${sig}0` }) &&
          !verifySignature({ token: TOKEN, timestamp: `${TS}0`, nonce: NONCE, signature: sig })
        );
      }),
      { numRuns: 100 },
    );
  });

  it('answerUrlVerification throws only WX_SIGNATURE_INVALID without the token, for arbitrary queries', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            signature: fc.anything(),
            timestamp: fc.anything(),
            nonce: fc.anything(),
            echostr: fc.anything(),
          },
          { requiredKeys: [] },
        ),
        (query) => onlyAppError(() => answerUrlVerification(TOKEN, query), 'WX_SIGNATURE_INVALID'),
      ),
      { numRuns: 300 },
    );
  });
});

describe('JS-SDK page URL check', () => {
  it('checkPageUrl does not sign a URL the page can never have (surrounding/embedded whitespace)', () => {
    // new URL() strips leading/trailing C0+space and inner tab/newline, so it accepts these; the raw string is
    // then signed, while the page's location.href.split('#')[0] never contains them: wx.config always fails.
    for (const url of [' https://a.example/p', 'https://a.example/p\n', 'https://a.exa\tmple/p']) {
      let out: string | undefined;
      try {
        out = checkPageUrl(url);
      } catch (err) {
        expect(err).toMatchObject({ code: 'WX_INVALID_ARGUMENT' });
        continue;
      }
      expect(out, JSON.stringify(url)).toBe(new URL(url).href.split('#')[0]);
    }
  });

  it('checkPageUrl throws only WX_INVALID_ARGUMENT for arbitrary input', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl(), fc.anything()), (url) =>
        onlyAppError(() => checkPageUrl(url), 'WX_INVALID_ARGUMENT'),
      ),
      { numRuns: 300 },
    );
  });
});

describe('one-time consent callback parser fuzz (§1.3)', () => {
  const ok = 'openid=oUser_1&template_id=TPL-1&action=confirm&scene=1000&reserved=abc';
  it('parses the observed real redirect (query before a re-encoded fragment)', () => {
    expect(
      parseOneTimeConsentCallback(
        `http://test.dr2dr.cn/?openid=oU1&template_id=T1&action=confirm&reserved=test&scene=1000#%23/live/detail/28`,
        { templateId: 'T1', scene: 1000, reserved: 'test' },
      ),
    ).toEqual({ action: 'confirm', openid: 'oU1', templateId: 'T1', scene: 1000, reserved: 'test' });
  });
  it('arbitrary query strings/objects fail only with WX_CALLBACK_INVALID', () => {
    const field = fc.constantFrom('openid', 'template_id', 'action', 'scene', 'reserved', '__proto__', 'x');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc
            .array(fc.tuple(field, fc.string({ maxLength: 20 })), { maxLength: 8 })
            .map((kv) => kv.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')),
          fc.dictionary(field, fc.anything()),
          fc.constant(`${ok}&scene=1`),
          fc.constant(ok.replace('1000', '10001')),
          fc.anything(),
        ),
        (q) => onlyAppError(() => parseOneTimeConsentCallback(q as never), 'WX_CALLBACK_INVALID'),
      ),
      { numRuns: 400 },
    );
  });
});
