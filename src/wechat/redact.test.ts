// The redactor keeps tokens, secrets, tickets, signatures and keys out of text and logged objects.
import { expect, it } from 'vitest';
import { redact, redactingLogger, redactValue } from './redact.js';

it('masks secrets in query strings, JSON and XML', () => {
  const s = redact(
    'GET https://api.weixin.qq.com/cgi-bin/ticket/getticket?access_token=TOK123&type=jsapi secret=SEC {"secret":"S2","access_token":"T2","errcode":0} <Encrypt><![CDATA[abc]]></Encrypt> ?signature=abc&msg_signature=def&code=XYZ',
  );
  for (const secret of ['TOK123', 'SEC', 'S2', 'T2', 'abc', 'def', 'XYZ'])
    expect(s).not.toMatch(new RegExp(`[=":\\[]${secret}\\b`));
  expect(s).toContain('type=jsapi');
  expect(s).toContain('"errcode":0');
});

it('masks Authorization credentials and connection-string passwords', () => {
  const s = redact(
    'Headers.append: "Bearer wxs_SecretKey123" is invalid; postgres://u@h/db?sslmode=require&password=PgPw1 basic dXNlcjpwdw==',
  );
  for (const secret of ['wxs_SecretKey123', 'PgPw1', 'dXNlcjpwdw==']) expect(s).not.toContain(secret);
  expect(s).toContain('sslmode=require');
  expect(s).toContain('Bearer [REDACTED]');
});

it('leaves ordinary text and errcode alone', () => {
  expect(redact('errcode=43101 user refuse to accept the msg rid: 1-2-3')).toBe(
    'errcode=43101 user refuse to accept the msg rid: 1-2-3',
  );
});

it('masks secret-named fields in objects and redacts logger output', () => {
  expect(redactValue({ access_token: 'x', nested: { secret: 'y', ok: 'url?access_token=z' } })).toEqual({
    access_token: '[REDACTED]',
    nested: { secret: '[REDACTED]', ok: 'url?access_token=[REDACTED]' },
  });
  const lines: unknown[] = [];
  const log = redactingLogger({
    debug: () => {},
    info: (o, m) => lines.push([o, m]),
    warn: () => {},
    error: () => {},
  });
  log.info({ url: '/x?access_token=LEAK', ticket: 'LEAK2' }, 'calling /y?secret=LEAK3');
  expect(JSON.stringify(lines)).not.toContain('LEAK');
});
