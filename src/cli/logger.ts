// Builds the CLI's pino logger: level from config, JSON lines on stderr, every message and field redacted.
import { pino, type Logger as PinoLogger } from 'pino';
import { redact, redactValue } from '../wechat/redact.js';

/** Options of {@link createCliLogger}. */
export type CliLoggerOptions = {
  /** pino level. @default 'info' */
  level?: string;
  /** Where lines go. @default 2 (stderr, so stdout stays for command output) */
  fd?: number;
  /** Static fields on every line, e.g. `{ component: 'service' }`. @default {} */
  base?: Record<string, unknown>;
};

/** Errors have non-enumerable fields the redactor would drop: turn them into plain objects first. */
function plainErrors(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v instanceof Error) {
      const e = v as Error & { code?: unknown; details?: unknown };
      out[k] = {
        type: e.name,
        message: e.message,
        ...(e.code === undefined ? {} : { code: e.code }),
        ...(e.details === undefined ? {} : { details: e.details }),
        ...(e.stack === undefined ? {} : { stack: e.stack }),
      };
    } else out[k] = v;
  }
  return out;
}

/**
 * A pino logger whose messages and fields pass through the SDK's redactor, so tokens, secrets and
 * signatures never reach a log line.
 * @example const log = createCliLogger({ level: config.logLevel }); log.info({ url }, 'listening');
 */
export function createCliLogger(options: CliLoggerOptions = {}): PinoLogger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid, ...options.base },
      formatters: { log: (obj) => redactValue(plainErrors(obj)) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          const redacted = args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<
            typeof method
          >;
          method.apply(this, redacted);
        },
      },
    },
    pino.destination({ fd: options.fd ?? 2, sync: true }),
  );
}
