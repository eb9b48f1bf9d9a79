// Turns the config table (CONFIG_DOC) into commander options and the parsed options back into config flags.
import { Option, type Command } from 'commander';
import { CONFIG_DOC, settingFromText, type ConfigFlags } from '../config/schema.js';

/** commander's attribute name for a `--kebab-case` flag. */
function attributeOf(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * Adds one option per configuration setting (e.g. `--port`, `--wechat-app-id`, `--delivery-concurrency`) to `cmd`.
 * `skip` lists dotted paths the command sets itself.
 */
export function addConfigOptions(cmd: Command, skip: readonly string[] = []): Command {
  for (const row of CONFIG_DOC) {
    if (skip.includes(row.path)) continue;
    const help = `${row.meaning} (env ${row.env}${row.secret ? '; prefer the env variable for secrets' : `, default ${row.default}`})`;
    cmd.addOption(new Option(`${row.flag} <value>`, help));
  }
  return cmd;
}

/**
 * Reads the config options commander parsed back into a nested {@link ConfigFlags} object (only the
 * ones given). Values are coerced like the env variables: numbers for numeric settings, comma lists for arrays.
 */
export function configFlagsFrom(opts: Record<string, unknown>): ConfigFlags {
  const out: Record<string, unknown> = {};
  for (const row of CONFIG_DOC) {
    const raw = opts[attributeOf(row.flag)];
    if (typeof raw !== 'string') continue;
    // Read as the env variable is: `0x50` or `1e3` for a number is refused (NaN → CONFIG_INVALID), not converted.
    const value = settingFromText(row.path, raw);
    const keys = row.path.split('.');
    let o = out;
    for (const k of keys.slice(0, -1)) {
      o[k] ??= {};
      o = o[k] as Record<string, unknown>;
    }
    o[keys[keys.length - 1] as string] = value;
  }
  return out as ConfigFlags;
}
