// The public SDK surface: values and types listed by name.
export { createWeChatClient } from './client.js';
export type {
  AddTemplateBody,
  ApiQuota,
  PrivateTemplate,
  PubTemplateKeyword,
  PubTemplateTitle,
  TemplateCategory,
  WeChatClient,
  WeChatClientDeps,
  WeChatClientOptions,
} from './client.js';
export { buildOneTimeConsentUrl, parseOneTimeConsentCallback, RESERVED_RE } from './consent.js';
export type {
  CallbackQuery,
  OneTimeConsentCallback,
  OneTimeConsentExpect,
  OneTimeConsentUrlInput,
} from './consent.js';
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
} from './crypto.js';
export type { EncryptedReplyInput } from './crypto.js';
export { coerceErrcode, ERRCODES, errcodeInfo, TOKEN_INVALID_ERRCODES, UNKNOWN_ERRCODE } from './errcodes.js';
export type { ErrcodeAction, ErrcodeInfo } from './errcodes.js';
export {
  isWeChatApiError,
  isWeChatBadResponseError,
  isWeChatInvalidArgumentError,
  isWeChatTimeoutError,
  isWeChatTokenUnavailableError,
  isWeChatTransportError,
  parseRid,
  requestMayHaveTakenEffect,
  WeChatApiError,
  WeChatBadResponseError,
  WeChatInvalidArgumentError,
  WeChatTimeoutError,
  WeChatTokenUnavailableError,
  WeChatTransportError,
} from './errors.js';
export { fetchTransport, undiciTransport, WECHAT_HOSTS } from './http.js';
export type { HttpRequest, HttpResponse, HttpTransport, RetryOptions } from './http.js';
export { checkPageUrl, signJsSdk, urlWithoutFragment } from './jssdk.js';
export type { JsSdkConfig, JsSdkSignInput } from './jssdk.js';
export { buildOAuthAuthorizeUrl } from './oauth.js';
export type { OAuthAuthorizeInput, OAuthScope, OAuthTokenResult } from './oauth.js';
export { redact, redactingLogger, REDACTED, redactValue, silentLogger } from './redact.js';
export type { Logger } from './redact.js';
export type { AccessToken, TokenMode } from './token-broker.js';
export { wechatDay } from './token-store.js';
export type {
  ForceRefreshBudget,
  ForceRefreshDecision,
  NewToken,
  StoredToken,
  TokenStore,
} from './token-store.js';
export { createMemoryTokenStore } from './token-stores/memory.js';
export { createPostgresTokenStore } from './token-stores/postgres.js';
export type { PostgresTokenStoreOptions } from './token-stores/postgres.js';
export { createRedisTokenStore } from './token-stores/redis.js';
export type { RedisTokenStoreOptions } from './token-stores/redis.js';
export { createSqliteTokenStore } from './token-stores/sqlite.js';
export type { SqliteTokenStoreOptions } from './token-stores/sqlite.js';
export {
  charLength,
  checkKeywordValue,
  KEYWORD_TYPES,
  keywordsFromTemplate,
  keywordTypeOf,
  MINIPROGRAM_STATES,
  NOTIFICATION_LANGS,
  notificationSendBody,
  ONE_TIME_SCENE_TYPES,
  oneTimeSendBody,
} from './validate.js';
export type {
  KeywordSpec,
  KeywordType,
  MiniprogramState,
  NotificationLang,
  NotificationSendInput,
  OneTimeSceneType,
  OneTimeSendInput,
} from './validate.js';
