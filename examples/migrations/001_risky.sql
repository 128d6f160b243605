-- A migration as many teams write it: every statement here hurts a live table.
CREATE TABLE audit_log (id bigserial PRIMARY KEY, note text);
CREATE INDEX audit_log_note_idx ON audit_log (note);   -- new table: fine

ALTER TABLE comments ALTER COLUMN post_id TYPE numeric;
ALTER TABLE comments RENAME COLUMN contents TO body;
CREATE INDEX comments_post_idx ON comments (post_id);
ALTER TABLE comments ADD CONSTRAINT body_short CHECK (length(body) < 10000);
ALTER TABLE comments ALTER COLUMN body SET NOT NULL;
ALTER TABLE comments ADD COLUMN token uuid DEFAULT gen_random_uuid();
-- pgphase:allow drop-column
ALTER TABLE comments DROP COLUMN legacy_flag;
