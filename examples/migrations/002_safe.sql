-- The same intent, written the safe way: no findings.
SET lock_timeout = '500ms';
ALTER TABLE comments ADD CONSTRAINT body_short CHECK (length(body) < 10000) NOT VALID;
ALTER TABLE comments VALIDATE CONSTRAINT body_short;
ALTER TABLE comments ADD CONSTRAINT body_not_null CHECK (body IS NOT NULL) NOT VALID;
ALTER TABLE comments VALIDATE CONSTRAINT body_not_null;
ALTER TABLE comments ALTER COLUMN body SET NOT NULL;
ALTER TABLE comments ADD COLUMN token uuid;
ALTER TABLE comments ALTER COLUMN token SET DEFAULT gen_random_uuid();
CREATE INDEX CONCURRENTLY comments_post_idx ON comments (post_id);
