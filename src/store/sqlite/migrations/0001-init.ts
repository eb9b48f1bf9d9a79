// SQLite migration 1: the ledger (grants, credits, refusals), outbox, campaigns, templates, API keys, nonces, pauses.

/** Creates every table of the service store. Times are integer ms since the epoch. */
export const migration = {
  id: 1,
  name: 'init',
  sql: `
CREATE TABLE grants (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  openid TEXT NOT NULL,
  template_id TEXT NOT NULL,
  scene INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('available', 'reserved', 'consumed', 'revoked')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  confirmed_at INTEGER NOT NULL,
  closed_at INTEGER,
  UNIQUE (app_id, openid, template_id, scene)
);
-- Partial indexes: a consume or reserve only removes one entry from each, keeping the hot write path small.
CREATE INDEX grants_holders ON grants (app_id, template_id, openid, scene) WHERE state = 'available';
CREATE INDEX grants_available ON grants (app_id, id) WHERE state = 'available';

CREATE TABLE notification_credits (
  id TEXT NOT NULL UNIQUE,
  app_id TEXT NOT NULL,
  openid TEXT NOT NULL,
  template_id TEXT NOT NULL,
  available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
  reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  long_term INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, openid, template_id)
);
CREATE INDEX credits_holders ON notification_credits (app_id, template_id, openid);

CREATE TABLE refusals (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  template_id TEXT NOT NULL,
  scene INTEGER NOT NULL,
  openid TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX refusals_app_template ON refusals (app_id, template_id);

CREATE TABLE campaigns (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('one-time', 'notification')),
  template_id TEXT NOT NULL,
  scene_filter TEXT,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('enqueuing', 'running', 'done', 'cancelled')),
  progress_openid TEXT,
  enqueued INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX campaigns_status ON campaigns (status);

CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  app_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('one-time', 'notification')),
  openid TEXT NOT NULL,
  template_id TEXT NOT NULL,
  scene INTEGER,
  grant_id TEXT,
  credit_reserved INTEGER NOT NULL DEFAULT 0,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  lease_owner TEXT,
  lease_until INTEGER,
  last_errcode INTEGER,
  error_code TEXT,
  error_message TEXT,
  msgid TEXT,
  campaign_id TEXT,
  idempotency_key TEXT,
  request_hash TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  sent_at INTEGER
);
CREATE INDEX messages_due ON messages (status, next_attempt_at);
CREATE INDEX messages_lease ON messages (status, lease_until);
CREATE UNIQUE INDEX messages_idempotency ON messages (app_id, idempotency_key);
CREATE INDEX messages_app ON messages (app_id, id);
CREATE INDEX messages_campaign ON messages (campaign_id, status);
CREATE INDEX messages_msgid ON messages (msgid) WHERE msgid IS NOT NULL;

CREATE TABLE templates (
  app_id TEXT NOT NULL,
  template_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('one-time', 'notification')),
  title TEXT NOT NULL,
  keywords TEXT NOT NULL,
  type INTEGER,
  PRIMARY KEY (app_id, template_id)
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);

CREATE TABLE consent_nonces (
  nonce TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL
);
CREATE INDEX consent_nonces_expiry ON consent_nonces (expires_at);

CREATE TABLE app_pauses (
  app_id TEXT PRIMARY KEY,
  until INTEGER NOT NULL,
  reason TEXT NOT NULL
);
`,
} as const;
