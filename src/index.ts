// The package's main entry: the WeChat SDK (curated, by name, in src/wechat/index.ts), the error registry and the clock.
export { AppError, ERROR_CODES, isAppError } from './errors.js';
export type { AppErrorOptions, ErrorCode, ErrorSpec } from './errors.js';
export { ManualClock, systemClock } from './util/clock.js';
export type { Clock } from './util/clock.js';
export * from './wechat/index.js';
