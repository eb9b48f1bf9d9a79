// Push crypto against the spec's vectors (§4.2, §4.7) plus round-trip and fuzz properties.
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

const TOKEN = 'testtoken';
const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
const APPID = 'wx1234567890abcdef';
const TS = '1714036504';
const NONCE = '1514711492';
const MSG =
  '<xml><ToUserName><![CDATA[gh_123456789abc]]></ToUserName><FromUserName><![CDATA[oUser123]]></FromUserName><CreateTime>1714036504</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent><List><TemplateId><![CDATA[TPL_A]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>1</PopupScene></List></SubscribeMsgPopupEvent></xml>';
const ENCRYPT =
  'Q3stYC6hdFzMh9T8HCvyDHlweV3+ktC4a55SNMwblv1R9Fea0i99UyGaztZR7vCSJ66xX+uYOyYL7QC24pTtNjmjVwCm/rR0QG7tPAk+qCYqst2xyCXrH03Bq3m7fHc7UIERTZuebp37P2TMsJLj2/C+KHzdho7mbsvPBte0pCjlmVLQA99vCCuUbOtaWC0NOzGTWFnJp4CN6rOkanzEB0M1a8LZkhm7Gk9wmZrmIwXe95P/t+rthmQom/6NrB+YbtnUimgDaby3O7yjg6fbd2P9rjW0om0U4HxKgZbt+iT278xJ7IHZ56tOOjJJijasliljUY+7dRFPzKTKownhPxCAnM9CidKs2i63Goc4vvz+1P1Qv+fs/6Eh2GNhomo9pEdgYjd/roNVlFF1ba2MsrS1/iYYIleB4W3cIzL9SzeUBmcMw+zAW7jNWXsfw+0J5ngOx41Xa/xSqt/iPJmYOJziZq78Q630jJW1yVl7XvXHWwRUAhXijT3k3njzohX1vDWdiV83krTqjzj7oejR3UY0dmE44KHpGQ6LZyLg1RPk6TOH2wB3XERz4TijHPyJjTppIo13o5JBpJ5qjzQ/R/lvQQtBH0nlmzt0zLzeBiUU9ceIYah5ecb1cMgh8Pum';
const RANDOM = Buffer.from('0123456789abcdef', 'utf8');

describe('URL verification (§4.2)', () => {
  it('matches the spec vector', () => {
    expect(computeSignature(TOKEN, TS, NONCE)).toBe('ed26e9cf5447a1d6ff426d00b1b69e4e813e9a64');
    expect(
      verifySignature({
        token: TOKEN,
        timestamp: TS,
        nonce: NONCE,
        signature: 'ed26e9cf5447a1d6ff426d00b1b69e4e813e9a64',
      }),
    ).toBe(true);
  });
  it('echoes echostr only for a valid signature', () => {
    expect(
      answerUrlVerification(TOKEN, {
        signature: 'ed26e9cf5447a1d6ff426d00b1b69e4e813e9a64',
        timestamp: TS,
        nonce: NONCE,
        echostr: 'hello',
      }),
    ).toBe('hello');
    expect(() =>
      answerUrlVerification(TOKEN, {
        signature: 'ed26e9cf5447a1d6ff426d00b1b69e4e813e9a65',
        timestamp: TS,
        nonce: NONCE,
        echostr: 'x',
      }),
    ).toThrow(expect.objectContaining({ code: 'WX_SIGNATURE_INVALID' }));
    expect(verifySignature({ token: TOKEN, timestamp: ['1'], nonce: NONCE, signature: 'x' })).toBe(false);
  });
  it('refuses a missing query or an unset token with WX_SIGNATURE_INVALID', () => {
    for (const query of [undefined, null, 'echostr=x']) {
      expect(() => answerUrlVerification(TOKEN, query as never)).toThrow(
        expect.objectContaining({ code: 'WX_SIGNATURE_INVALID' }),
      );
    }
    // With no token configured the signature is sha1 of public values only: anyone could compute it.
    const forged = { signature: computeSignature('', TS, NONCE), timestamp: TS, nonce: NONCE, echostr: 'x' };
    for (const token of ['', undefined]) {
      expect(() => answerUrlVerification(token as never, forged)).toThrow(
        expect.objectContaining({ code: 'WX_SIGNATURE_INVALID' }),
      );
    }
  });
});

describe('AES message crypto (§4.4, §4.7)', () => {
  it('decodes the EncodingAESKey to the spec key', () => {
    expect(decodeAesKey(KEY).toString('hex')).toBe(
      '69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051',
    );
    expect(() => decodeAesKey('short')).toThrow(expect.objectContaining({ code: 'WX_INVALID_ARGUMENT' }));
  });
  it('pads with PKCS#7 K=32 (32 bytes of 0x20 when aligned)', () => {
    expect(pkcs7Pad(Buffer.alloc(468)).subarray(468)).toEqual(Buffer.alloc(12, 12));
    expect(pkcs7Pad(Buffer.alloc(64)).subarray(64)).toEqual(Buffer.alloc(32, 0x20));
  });
  it('encrypts the spec message to the spec ciphertext and msg_signature', () => {
    const enc = encryptMessage({ encodingAesKey: KEY, appId: APPID, message: MSG, random: RANDOM });
    expect(enc).toBe(ENCRYPT);
    expect(computeMsgSignature(TOKEN, TS, NONCE, enc)).toBe('c1d4e187e1c18d5c17fcd5c551f0b820caeb9f38');
    expect(
      verifyMsgSignature({
        token: TOKEN,
        timestamp: TS,
        nonce: NONCE,
        encrypt: enc,
        msgSignature: 'c1d4e187e1c18d5c17fcd5c551f0b820caeb9f38',
      }),
    ).toBe(true);
  });
  it('decrypts the spec ciphertext and checks the appid', () => {
    expect(decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: ENCRYPT })).toEqual({
      message: MSG,
      keyIndex: 0,
    });
    expect(() => decryptMessage({ encodingAesKey: KEY, appId: 'wxother', encrypt: ENCRYPT })).toThrow(
      expect.objectContaining({ code: 'WX_DECRYPT_FAILED' }),
    );
  });
  it('falls back to the previous key during rotation', () => {
    const other = 'ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut';
    expect(decryptMessage({ encodingAesKey: [other, KEY], appId: APPID, encrypt: ENCRYPT }).keyIndex).toBe(1);
  });
  it('refuses a message, appId, token or random of the wrong type with WX_INVALID_ARGUMENT', () => {
    const base = { encodingAesKey: KEY, appId: APPID, message: MSG };
    for (const [over, field] of [
      [{ message: undefined }, 'message'],
      [{ message: 42 }, 'message'],
      [{ appId: undefined }, 'appId'],
      [{ appId: null }, 'appId'],
      [{ random: '0123456789abcdef' }, 'random'],
    ] as const) {
      expect(() => encryptMessage({ ...base, ...over } as never)).toThrow(
        expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field }),
      );
    }
    const reply = { ...base, token: TOKEN, timestamp: TS, nonce: NONCE };
    for (const [over, field] of [
      [{ message: undefined }, 'message'],
      [{ appId: 7 }, 'appId'],
      [{ token: undefined }, 'token'],
      [{ timestamp: 1714036504 }, 'timestamp'],
    ] as const) {
      expect(() => buildEncryptedReply({ ...reply, ...over } as never)).toThrow(
        expect.objectContaining({ code: 'WX_INVALID_ARGUMENT', field }),
      );
    }
  });
  it('builds the encrypted reply envelope', () => {
    const xml = buildEncryptedReply({
      token: TOKEN,
      encodingAesKey: KEY,
      appId: APPID,
      message: MSG,
      timestamp: TS,
      nonce: NONCE,
      random: RANDOM,
    });
    expect(xml).toBe(
      `<xml><Encrypt><![CDATA[${ENCRYPT}]]></Encrypt><MsgSignature><![CDATA[c1d4e187e1c18d5c17fcd5c551f0b820caeb9f38]]></MsgSignature><TimeStamp>${TS}</TimeStamp><Nonce><![CDATA[${NONCE}]]></Nonce></xml>`,
    );
  });
  it('round-trips any message (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 300 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (msg, rnd) => {
          const enc = encryptMessage({
            encodingAesKey: KEY,
            appId: APPID,
            message: msg,
            random: Buffer.from(rnd),
          });
          return decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: enc }).message === msg;
        },
      ),
      { numRuns: 200 },
    );
  });
  it('rejects arbitrary input with WX_DECRYPT_FAILED, never a crash (fuzz)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.anything()), (encrypt) => {
        try {
          decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt });
          return true;
        } catch (err) {
          return isAppError(err, 'WX_DECRYPT_FAILED');
        }
      }),
      { numRuns: 500 },
    );
  });
  it('rejects tampered ciphertexts with WX_DECRYPT_FAILED (fuzz)', () => {
    const bytes = Buffer.from(ENCRYPT, 'base64');
    fc.assert(
      fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (pos, x) => {
        const t = Buffer.from(bytes);
        t[pos] = (t[pos] as number) ^ x;
        try {
          const r = decryptMessage({ encodingAesKey: KEY, appId: APPID, encrypt: t.toString('base64') });
          // CBC: a flipped byte in an early block only garbles the random prefix; the message may survive.
          return r.message.length > 0;
        } catch (err) {
          return isAppError(err, 'WX_DECRYPT_FAILED');
        }
      }),
      { numRuns: 300 },
    );
  });
});
