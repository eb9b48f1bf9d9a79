// PostgreSQL migration 2: marks when a claimed message's attempt really started, so a dead sender's unstarted claims are re-sent.

/**
 * Adds `messages.attempt_started_at`: NULL while a claimed message waits to be sent, set (in one statement per
 * group) right before its request goes to WeChat. On lease expiry only started attempts may have reached WeChat.
 */
export const migration = {
  id: 2,
  name: 'attempt-started',
  sql: `
ALTER TABLE messages ADD COLUMN attempt_started_at BIGINT;
`,
} as const;
