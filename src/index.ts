// The package's main entry: the WeChat SDK and the error registry, listed by name.
export { AppError, ERROR_CODES, isAppError } from './errors.js';
export type { AppErrorOptions, ErrorCode, ErrorSpec } from './errors.js';
export { ManualClock, systemClock } from './util/clock.js';
export type { Clock } from './util/clock.js';
export { createWeChatClient } from './wechat/client.js';
export type {
  ApiQuota,
  PrivateTemplate,
  PubTemplateKeyword,
  PubTemplateTitle,
  TemplateCategory,
  WeChatClient,
  WeChatClientDeps,
  WeChatClientOptions,
} from './wechat/client.js';
export { buildOneTimeConsentUrl, parseOneTimeConsentCallback, RESERVED_RE } from './wechat/consent.js';
export type {
  CallbackQuery,
  OneTimeConsentCallback,
  OneTimeConsentExpect,
  OneTimeConsentUrlInput,
} from './wechat/consent.js';
export {
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
} from './wechat/crypto.js';
export type { EncryptedReplyInput } from './wechat/crypto.js';
export {
  coerceErrcode,
  ERRCODES,
  errcodeInfo,
  TOKEN_INVALID_ERRCODES,
  UNKNOWN_ERRCODE,
} from './wechat/errcodes.js';
export type { ErrcodeAction, ErrcodeInfo } from './wechat/errcodes.js';
export {
  isWeChatApiError,
  isWeChatBadResponseError,
  isWeChatInvalidArgumentError,
  isWeChatTimeoutError,
  isWeChatTransportError,
  parseRid,
  requestMayHaveTakenEffect,
  WeChatApiError,
  WeChatBadResponseError,
  WeChatInvalidArgumentError,
  WeChatTimeoutError,
  WeChatTransportError,
} from './wechat/errors.js';
export { fetchTransport, undiciTransport, WECHAT_HOSTS } from './wechat/http.js';
export type { HttpRequest, HttpResponse, HttpTransport, RetryOptions } from './wechat/http.js';
export { checkPageUrl, signJsSdk, urlWithoutFragment } from './wechat/jssdk.js';
export type { JsSdkConfig, JsSdkSignInput } from './wechat/jssdk.js';
export { buildOAuthAuthorizeUrl } from './wechat/oauth.js';
export type { OAuthAuthorizeInput, OAuthScope, OAuthTokenResult } from './wechat/oauth.js';
export { redact, redactingLogger, REDACTED, redactValue, silentLogger } from './wechat/redact.js';
export type { Logger } from './wechat/redact.js';
export type { AccessToken, TokenMode } from './wechat/token-broker.js';
export { wechatDay } from './wechat/token-store.js';
export type {
  ForceRefreshBudget,
  ForceRefreshDecision,
  NewToken,
  StoredToken,
  TokenStore,
} from './wechat/token-store.js';
export { createMemoryTokenStore } from './wechat/token-stores/memory.js';
export { createPostgresTokenStore } from './wechat/token-stores/postgres.js';
export type { PostgresTokenStoreOptions } from './wechat/token-stores/postgres.js';
export { createRedisTokenStore } from './wechat/token-stores/redis.js';
export type { RedisTokenStoreOptions } from './wechat/token-stores/redis.js';
export { createSqliteTokenStore } from './wechat/token-stores/sqlite.js';
export type { SqliteTokenStoreOptions } from './wechat/token-stores/sqlite.js';
export {
  charLength,
  checkKeywordValue,
  KEYWORD_TYPES,
  keywordsFromTemplate,
  keywordTypeOf,
  notificationSendBody,
  oneTimeSendBody,
} from './wechat/validate.js';
export type { KeywordSpec, KeywordType, NotificationSendInput, OneTimeSendInput } from './wechat/validate.js';
