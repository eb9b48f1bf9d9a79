// The emulator seed: the apps, users and templates it starts with, and loading one from a JSON file.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/** A template in a seed: a one-time (一次性订阅消息) template or a subscription-notification (订阅通知) one. */
export type EmulatorSeedTemplate = {
  /** Generated (43 chars, like WeChat's) when absent. */
  templateId?: string;
  kind: 'one-time' | 'notification';
  title: string;
  /** Notification only: the public-library tid. */
  tid?: number;
  /** Notification only: 2 = one-time, 3 = long-term. @default 2 */
  type?: 2 | 3;
  /** Notification only, e.g. `"物品:{{thing1.DATA}}\n时间:{{time2.DATA}}"`. */
  content?: string;
  /** Notification only: allowed values of `enum` keywords (`keywordCode` like `enum3.DATA`). */
  keywordEnumValueList?: Array<{ keywordCode: string; enumValueList: string[] }>;
};

/** An app (service account) in a seed. */
export type EmulatorSeedApp = {
  appid: string;
  secret: string;
  /** Account name shown on the consent page. @default 'Emulated Account' */
  name?: string;
  /** Original id `gh_…` (ToUserName of pushes). Generated when absent. */
  originalId?: string;
  /** 业务域名: `host` or `host:port`; checked for one-time consent redirect_url. Empty = loopback only. */
  businessDomains?: string[];
  /** JS接口安全域名. */
  jsDomains?: string[];
  /** 网页授权域名: checked for OAuth redirect_uri. Empty = loopback only. */
  oauthDomains?: string[];
  /** Errcode for a caller outside `ipWhitelist` on the token APIs. @default 40164 */
  ipWhitelistErrcode?: 40164 | 61004;
  /** Extension: when non-empty, only these IPs may call the token APIs. */
  ipWhitelist?: string[];
  users?: Array<{ openid: string; nickname?: string }>;
  templates?: EmulatorSeedTemplate[];
};

/** What the emulator starts with. */
export type EmulatorSeed = { apps: EmulatorSeedApp[] };

/** Zod schema of one seed template. */
export const templateSchema = z.strictObject({
  templateId: z.string().min(1).max(128).optional(),
  kind: z.enum(['one-time', 'notification']),
  title: z.string().min(1).max(64),
  tid: z.number().int().nonnegative().optional(),
  type: z.union([z.literal(2), z.literal(3)]).optional(),
  content: z.string().max(2000).optional(),
  keywordEnumValueList: z
    .array(z.strictObject({ keywordCode: z.string().min(1), enumValueList: z.array(z.string()) }))
    .optional(),
});

/** A domain list entry: `host` (any port) or `host:port`, no scheme or path (spec §1.2; see hostAllowed). */
const domainEntry = z
  .string()
  .regex(
    /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::\d{1,5})?$/,
    'a domain is host or host:port, without scheme or path',
  );

/** Zod schema of one seed app. */
export const appSchema = z.strictObject({
  appid: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'appid must be 1–64 of [A-Za-z0-9_-]'),
  secret: z.string().min(1).max(128),
  name: z.string().max(64).optional(),
  originalId: z.string().max(64).optional(),
  businessDomains: z.array(domainEntry).optional(),
  jsDomains: z.array(domainEntry).optional(),
  oauthDomains: z.array(domainEntry).optional(),
  ipWhitelistErrcode: z.union([z.literal(40164), z.literal(61004)]).optional(),
  ipWhitelist: z.array(z.string()).optional(),
  users: z
    .array(
      z.strictObject({
        openid: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
        nickname: z.string().max(64).optional(),
      }),
    )
    .optional(),
  templates: z.array(templateSchema).optional(),
});

/** Zod schema of {@link EmulatorSeed} (unknown keys are an error). */
export const emulatorSeedSchema = z.strictObject({ apps: z.array(appSchema) });

/**
 * Validates an unknown value as a seed.
 * @throws Error listing every problem with its JSON path.
 */
export function parseSeed(value: unknown, source = 'seed'): EmulatorSeed {
  const result = emulatorSeedSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('\n');
    throw new Error(`Invalid emulator seed in ${source}:\n${problems}`);
  }
  return result.data as EmulatorSeed;
}

/**
 * Reads and validates a JSON seed file.
 * @example const seed = await loadSeedFile('src/emulator/seed.example.json');
 * @throws Error naming the file when it cannot be read, is not JSON, or does not match the schema.
 */
export async function loadSeedFile(path: string): Promise<EmulatorSeed> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new Error(`Cannot read emulator seed file ${path}: ${(cause as Error).message}`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new Error(`Emulator seed file ${path} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return parseSeed(json, path);
}
