// The `wxsub` command line: parses argv with commander and runs one command (the only place that reads process.env).
import { pathToFileURL } from 'node:url';
import { realpathSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { LOG_LEVELS } from '../config/schema.js';
import { AppError, isAppError } from '../errors.js';
import { redact } from '../wechat/redact.js';
import { isHttpUrl } from './api-commands.js';
import { addConfigOptions, configFlagsFrom } from './config-flags.js';

/** A decimal integer, or NaN (`Number('')` would be 0, `Number('0x10')` 16). */
const decimal = (v: string): number => (/^\d+$/.test(v) ? Number(v) : Number.NaN);

/** Parses a TCP port argument. */
function parsePort(v: string): number {
  const n = decimal(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number 0–65535');
  return n;
}

/** Parses an absolute http(s) URL argument. */
function parseHttpUrl(v: string): string {
  if (!isHttpUrl(v))
    throw new InvalidArgumentError('must be an absolute http(s) URL, e.g. http://192.168.1.20:4100');
  return v;
}

/** Parses a non-negative integer argument. */
function parseNonNegative(v: string): number {
  const n = decimal(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

/** Parses `auto`, `any` or a scene number 0–10000. */
function parseScene(v: string): number | 'auto' | 'any' {
  if (v === 'auto' || v === 'any') return v;
  const n = decimal(v);
  if (!Number.isInteger(n) || n < 0 || n > 10_000)
    throw new InvalidArgumentError("must be 0–10000, 'auto' or 'any'");
  return n;
}

/** Options shared by the commands that talk to a running service over HTTP. */
function addApiOptions(cmd: Command, env: NodeJS.ProcessEnv): Command {
  return cmd
    .addOption(
      new Option('--url <url>', 'base URL of the running service (env WXSUB_URL)').default(
        env.WXSUB_URL ?? `http://127.0.0.1:${env.WXSUB_PORT ?? '3000'}`,
      ),
    )
    .addOption(new Option('--api-key <key>', 'API key (env WXSUB_API_KEY; prefer the env variable)'));
}

/** Builds the commander program; `env` is the environment the commands may read. */
export function buildProgram(env: NodeJS.ProcessEnv = process.env): Command {
  const program = new Command('wxsub')
    .description('WeChat Service Account subscription messages: service, emulator and tools')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('dev')
    .description('run emulator + service + demo page on 127.0.0.1 with seeded data (what `npm start` runs)')
    .addOption(new Option('--host <host>', 'interface for all three servers').default('127.0.0.1'))
    .addOption(
      new Option('--service-port <port>', 'service port (a free one if taken)')
        .default(4000)
        .argParser(parsePort),
    )
    .addOption(
      new Option('--emulator-port <port>', 'emulator port (a free one if taken)')
        .default(4100)
        .argParser(parsePort),
    )
    .addOption(
      new Option('--demo-port <port>', 'demo page port (a free one if taken)')
        .default(4200)
        .argParser(parsePort),
    )
    .addOption(
      new Option('--data-dir <dir>', 'where dev.db lives (env WXSUB_DATA_DIR)').default(
        env.WXSUB_DATA_DIR ?? './data',
      ),
    )
    .addOption(
      new Option(
        '--keep-data',
        'keep dev.db from the last run (it is recreated by default: the emulator forgets on exit)',
      ),
    )
    .addOption(
      new Option('--log-level <level>', 'pino level (env WXSUB_LOG_LEVEL)').default(
        env.WXSUB_LOG_LEVEL ?? 'warn',
      ),
    )
    .action(async (opts: Record<string, unknown>) => {
      // Checked like `serve` checks it (CONFIG_INVALID), before a logger is made of it.
      if (!(LOG_LEVELS as readonly unknown[]).includes(opts.logLevel))
        throw new AppError('CONFIG_INVALID', {
          message: `logLevel must be one of ${LOG_LEVELS.join(', ')}`,
          details: { problems: [`logLevel: must be one of ${LOG_LEVELS.join(', ')}`] },
        });
      const { runDev } = await import('./dev.js');
      await runDev(env, {
        host: opts.host as string,
        servicePort: opts.servicePort as number,
        emulatorPort: opts.emulatorPort as number,
        demoPort: opts.demoPort as number,
        dataDir: opts.dataDir as string,
        keepData: opts.keepData === true,
        logLevel: opts.logLevel as string,
      });
    });

  addConfigOptions(
    program.command('serve').description('run the wxsub service (HTTP API, consent endpoints, dispatcher)'),
  ).action(async (opts: Record<string, unknown>) => {
    const { runServe } = await import('./serve.js');
    await runServe(env, configFlagsFrom(opts));
  });

  program
    .command('emulator')
    .description('run the WeChat platform emulator')
    .addOption(new Option('--port <port>', 'port (0 = any free port)').default(4100).argParser(parsePort))
    .addOption(new Option('--host <host>', 'interface').default('127.0.0.1'))
    .addOption(new Option('--seed <file>', 'JSON seed file (apps, users, templates)'))
    .addOption(
      new Option('--public-base-url <url>', 'URL browsers use to reach the emulator').argParser(parseHttpUrl),
    )
    .addOption(
      new Option('--random-seed <n>', 'seed of the emulator RNG (repeatable ids)').argParser(
        parseNonNegative,
      ),
    )
    .action(async (opts: Record<string, unknown>) => {
      const { runEmulator } = await import('./emulator.js');
      await runEmulator({
        port: opts.port as number,
        host: opts.host as string,
        ...(typeof opts.seed === 'string' ? { seed: opts.seed } : {}),
        ...(typeof opts.publicBaseUrl === 'string' ? { publicBaseUrl: opts.publicBaseUrl } : {}),
        ...(typeof opts.randomSeed === 'number' ? { randomSeed: opts.randomSeed } : {}),
      });
    });

  addConfigOptions(
    program.command('migrate').description('apply pending database migrations and exit'),
  ).action(async (opts: Record<string, unknown>) => {
    const { runMigrate } = await import('./admin.js');
    await runMigrate(env, configFlagsFrom(opts));
  });

  addConfigOptions(
    program
      .command('token')
      .description('show a redacted summary of the access token (fetches one when none is cached)')
      .addOption(
        new Option('--force-refresh', 'ask WeChat for a new token (uses the daily force-refresh budget)'),
      )
      .addOption(new Option('--reveal', 'print the full token on stdout (for scripts; handle with care)')),
  ).action(async (opts: Record<string, unknown>) => {
    const { runToken } = await import('./admin.js');
    await runToken(env, configFlagsFrom(opts), {
      forceRefresh: opts.forceRefresh === true,
      reveal: opts.reveal === true,
    });
  });

  addApiOptions(
    program
      .command('send')
      .description('send one message through a running service (POST /v1/messages)')
      .requiredOption('--openid <openid>', 'recipient')
      .requiredOption('--template <id>', 'template id')
      .addOption(
        new Option('--kind <kind>', 'one-time or notification')
          .choices(['one-time', 'notification'])
          .default('one-time'),
      )
      .addOption(
        new Option('--scene <scene>', "one-time: scene number or 'any'").argParser(parseScene).default('any'),
      )
      .option('--title <text>', 'one-time: title (≤15 chars)')
      .option('--content <text>', 'one-time: content (≤200 chars)')
      .option('--data <json>', 'notification: data as JSON, e.g. {"thing1":{"value":"…"}}')
      .option('--page <url>', 'click-through URL')
      .option('--idempotency-key <key>', 'Idempotency-Key header'),
    env,
  ).action(async (opts: Record<string, unknown>) => {
    const { runSend } = await import('./api-commands.js');
    await runSend(env, opts);
  });

  const campaign = program.command('campaign').description('campaigns: notify every holder of a grant');
  addApiOptions(
    campaign
      .command('create')
      .description('create a campaign (POST /v1/campaigns)')
      .requiredOption('--template <id>', 'template id')
      .option('--name <name>', 'campaign name')
      .addOption(
        new Option('--kind <kind>', 'one-time or notification')
          .choices(['one-time', 'notification'])
          .default('one-time'),
      )
      .option('--title <text>', 'one-time: title')
      .option('--content <text>', 'one-time: content')
      .option('--data <json>', 'notification: data as JSON')
      .option('--page <url>', 'click-through URL'),
    env,
  ).action(async (opts: Record<string, unknown>) => {
    const { runCampaignCreate } = await import('./api-commands.js');
    await runCampaignCreate(env, opts);
  });
  addApiOptions(
    campaign.command('status').description('show a campaign and its counters').argument('<id>'),
    env,
  ).action(async (id: string, opts: Record<string, unknown>) => {
    const { runCampaignStatus } = await import('./api-commands.js');
    await runCampaignStatus(env, id, opts);
  });
  addApiOptions(
    campaign
      .command('cancel')
      .description('cancel a campaign (queued messages are dropped)')
      .argument('<id>'),
    env,
  ).action(async (id: string, opts: Record<string, unknown>) => {
    const { runCampaignCancel } = await import('./api-commands.js');
    await runCampaignCancel(env, id, opts);
  });

  program
    .command('link')
    .description('print a one-time consent link (the service’s /consent/one-time URL)')
    .requiredOption('--template <id>', 'one-time template id')
    .addOption(new Option('--scene <scene>', "scene number or 'auto'").argParser(parseScene).default('auto'))
    .option('--next <url>', 'where the user lands afterwards (must be on the service’s next allowlist)')
    .addOption(
      new Option(
        '--url <url>',
        'public base URL of the service (env WXSUB_PUBLIC_BASE_URL / WXSUB_URL)',
      ).default(env.WXSUB_PUBLIC_BASE_URL || env.WXSUB_URL || `http://127.0.0.1:${env.WXSUB_PORT ?? '3000'}`),
    )
    .action(async (opts: Record<string, unknown>) => {
      const { consentLink } = await import('./api-commands.js');
      const scene = opts.scene as number | 'auto' | 'any';
      console.log(
        consentLink(opts.url as string, {
          template: opts.template as string,
          scene: scene === 'any' ? 'auto' : scene,
          ...(typeof opts.next === 'string' ? { next: opts.next } : {}),
        }),
      );
    });

  const apikey = program.command('apikey').description('manage API keys (works on the database directly)');
  addConfigOptions(
    apikey.command('create').description('create a key and print it once').argument('<name>'),
  ).action(async (name: string, opts: Record<string, unknown>) => {
    const { runApiKeyCreate } = await import('./admin.js');
    await runApiKeyCreate(env, configFlagsFrom(opts), name);
  });
  addConfigOptions(apikey.command('list').description('list keys (never their secrets)')).action(
    async (opts: Record<string, unknown>) => {
      const { runApiKeyList } = await import('./admin.js');
      await runApiKeyList(env, configFlagsFrom(opts));
    },
  );
  addConfigOptions(apikey.command('revoke').description('revoke a key by id').argument('<id>')).action(
    async (id: string, opts: Record<string, unknown>) => {
      const { runApiKeyRevoke } = await import('./admin.js');
      await runApiKeyRevoke(env, configFlagsFrom(opts), id);
    },
  );

  return program;
}

/**
 * Runs the CLI. `argv` is `process.argv` (node, script, then arguments).
 * Long-running commands (`dev`, `serve`, `emulator`) resolve after SIGINT/SIGTERM once everything is closed.
 * @example await main(process.argv)
 */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram(process.env);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    // commander throws on --help/--version and usage errors after printing them (exitOverride)
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      if (e.exitCode !== undefined && e.exitCode !== 0) process.exitCode = e.exitCode;
      return;
    }
    throw err;
  }
}

/** True when this file is the script node was started with (`node --import tsx src/cli/main.ts …`). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href;
  } catch {
    return false;
  }
}

/** Credentials in URLs (`postgres://user:secret@host`) are never printed. */
function withoutUrlCredentials(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]*):[^\s/@]*@/gi, '$1:***@');
}

/**
 * What the CLI prints for an error that ends a command: the stable code first (`CONFIG_INVALID: …`), then, for a
 * wrapped failure such as STORE_UNAVAILABLE, why (`cause: ECONNREFUSED connect ECONNREFUSED 127.0.0.1:5432`).
 * Secrets stay out: token-like parameters are redacted and URL passwords masked.
 */
export function cliErrorText(err: unknown): string {
  if (!(err instanceof Error)) return withoutUrlCredentials(redact(String(err)));
  const code = isAppError(err) ? err.code : undefined;
  let text = code === undefined ? err.message : `${code}: ${err.message}`;
  const cause = (err as { cause?: unknown }).cause;
  if (code !== undefined && cause instanceof Error) {
    const causeCode = (cause as { code?: unknown }).code;
    text += `\n  cause: ${typeof causeCode === 'string' ? `${causeCode} ` : ''}${cause.message}`;
  }
  return withoutUrlCredentials(redact(text));
}

if (isEntryPoint()) {
  main(process.argv).catch((err: unknown) => {
    console.error(cliErrorText(err));
    process.exitCode = 1;
  });
}
