// PostgreSQL migration 5: message counts kept by triggers, so status figures do not count the outbox.

/**
 * Counts by (app_id, campaign_id, status) ('' for messages outside a campaign) in two tables:
 * - `message_count_deltas`: each statement that inserts, updates or deletes messages appends its net change per key
 *   (a statement-level trigger over its transition tables: one INSERT per statement, not per row). Appending takes
 *   no row lock, so instances that claim and complete at once never wait on a shared counter row, and no lock order
 *   between them can deadlock.
 * - `message_counts`: the folded totals. `foldMessageCounts` (one folder at a time, under an advisory lock) moves the
 *   committed deltas into it; readers sum both tables in one statement, so a fold never shows a count twice or not at all.
 * A TRUNCATE of `messages` empties both. Before, `GET /v1/campaigns/:id` counted the campaign's messages and `/metrics` and `GET /v1/status` every message.
 * The triggers are created before the initial count: CREATE TRIGGER locks `messages` against writes until this
 * migration commits, so no message is counted twice or missed.
 */
export const migration = {
  id: 5,
  name: 'message-counts',
  sql: `
CREATE TABLE message_counts (
  app_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  status TEXT NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (app_id, campaign_id, status)
);
CREATE TABLE message_count_deltas (
  app_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  status TEXT NOT NULL,
  n BIGINT NOT NULL
);
CREATE INDEX message_count_deltas_key ON message_count_deltas (app_id, campaign_id);

CREATE FUNCTION wxsub_count_inserted_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_count_deltas (app_id, campaign_id, status, n)
    SELECT app_id, COALESCE(campaign_id, ''), status, count(*) FROM new_rows GROUP BY 1, 2, 3;
  RETURN NULL;
END $$;
CREATE FUNCTION wxsub_count_updated_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_count_deltas (app_id, campaign_id, status, n)
    SELECT a, c, s, sum(d) FROM (
      SELECT app_id AS a, COALESCE(campaign_id, '') AS c, status AS s, -1 AS d FROM old_rows
      UNION ALL
      SELECT app_id, COALESCE(campaign_id, ''), status, 1 FROM new_rows
    ) x GROUP BY 1, 2, 3 HAVING sum(d) <> 0;
  RETURN NULL;
END $$;
CREATE FUNCTION wxsub_count_deleted_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_count_deltas (app_id, campaign_id, status, n)
    SELECT app_id, COALESCE(campaign_id, ''), status, -count(*) FROM old_rows GROUP BY 1, 2, 3;
  RETURN NULL;
END $$;
CREATE FUNCTION wxsub_count_truncated_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM message_counts;
  DELETE FROM message_count_deltas;
  RETURN NULL;
END $$;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION wxsub_count_inserted_messages();
CREATE TRIGGER messages_count_update AFTER UPDATE ON messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION wxsub_count_updated_messages();
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION wxsub_count_deleted_messages();
CREATE TRIGGER messages_count_truncate AFTER TRUNCATE ON messages
  FOR EACH STATEMENT EXECUTE FUNCTION wxsub_count_truncated_messages();

INSERT INTO message_counts (app_id, campaign_id, status, n)
  SELECT app_id, COALESCE(campaign_id, ''), status, count(*) FROM messages GROUP BY 1, 2, 3;
`,
} as const;
