//! change_type end to end on a real Postgres. The shadow route under an old-app
//! workload that only works with the old type (it calls a function that exists for
//! `integer` only) and a new-app workload that works with both: the swap must come
//! after the gate that drained the old app, or the old app's queries fail. After
//! completion the table's catalog equals that of a control table on which a plain
//! `ALTER COLUMN … TYPE` ran. The binary-coercible route: one catalog-only statement.

mod common;
mod lifecycle;

use common::*;
use lifecycle::{lifecycle, sql, Scenario};
use pgphase::catalog::Catalog;
use pgphase::run::{self, Outcome};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SETUP: &str = "
CREATE TABLE posts (id bigint PRIMARY KEY, title varchar(80) NOT NULL CONSTRAINT posts_title_check CHECK (length(title) > 0));
INSERT INTO posts SELECT g, 'post ' || g FROM generate_series(1, 50) g;
CREATE TABLE comments (
  id bigserial PRIMARY KEY,
  post_id bigint NOT NULL REFERENCES posts (id),
  contents text NOT NULL,
  legacy_score integer NOT NULL DEFAULT 0 CONSTRAINT comments_legacy_score_check CHECK (legacy_score >= 0),
  author_name text
);
CREATE INDEX comments_legacy_score_idx ON comments (legacy_score);
-- what only the old application uses: defined for integer only
CREATE FUNCTION score_badge(s integer) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT CASE WHEN s >= 40 THEN 'gold' ELSE 'plain' END $$;
INSERT INTO comments (post_id, contents, legacy_score)
  SELECT 1 + g % 50, 'seed 0 ' || g, g % 50 FROM generate_series(1, 4000) g;
";

const ROWS: u64 = 4000;

fn plan() -> pgphase::plan::PlanFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/change-comments-legacy-score-type.yaml");
    let mut file = pgphase::plan::PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    file.plan.settings.lock_timeout = Duration::from_millis(200);
    file.plan.settings.backfill.batch_size = 300;
    file.plan.settings.backfill.target_batch_time = Duration::ZERO;
    file
}

/// The old application's n-th query: integer-only reads, writes that keep
/// `legacy_score` = (the number in `contents`) % 50.
fn old_sql(inserts: &AtomicU64, c: u32, i: u64) -> String {
    match i % 4 {
        0 => {
            inserts.fetch_add(1, Ordering::Relaxed);
            format!(
                "INSERT INTO comments (post_id, contents, legacy_score) VALUES ({}, 'old {c} {i}', {})",
                1 + i % 50,
                i % 50
            )
        }
        1 => format!(
            "UPDATE comments SET contents = 'old {c} {i}', legacy_score = {} WHERE id = {}",
            i % 50,
            1 + (i * 7 + c as u64) % ROWS
        ),
        2 => format!(
            "SELECT id, score_badge(legacy_score) FROM comments WHERE id = {}",
            1 + i % ROWS
        ),
        _ => format!(
            "UPDATE comments SET contents = 'old {c} {i}', legacy_score = {} WHERE id = {} RETURNING id, legacy_score",
            i % 50,
            1 + (i * 13 + c as u64) % ROWS
        ),
    }
}

/// The new application's n-th query: works whether `legacy_score` is integer or
/// numeric(6,2), and reads it through the cast the gate asks for, so the statements
/// its driver cached return numeric(6,2) before and after contract swaps the type.
fn new_sql(inserts: &AtomicU64, c: u32, i: u64) -> String {
    match i % 4 {
        0 => {
            inserts.fetch_add(1, Ordering::Relaxed);
            format!(
                "INSERT INTO comments (post_id, contents, legacy_score) VALUES ({}, 'new {c} {i}', {})",
                1 + i % 50,
                i % 50
            )
        }
        1 => format!(
            "UPDATE comments SET contents = 'new {c} {i}', legacy_score = {} WHERE id = {}",
            i % 50,
            1 + (i * 11 + c as u64) % ROWS
        ),
        2 => format!(
            "SELECT id, legacy_score::numeric(6,2) FROM comments WHERE id = {}",
            1 + i % ROWS
        ),
        _ => format!(
            "UPDATE comments SET contents = 'new {c} {i}', legacy_score = {} WHERE id = {} RETURNING id, legacy_score::numeric(6,2)",
            i % 50,
            1 + (i * 17 + c as u64) % ROWS
        ),
    }
}

/// Columns sorted by name, without their numbers: the shadow route cannot keep the
/// column's position (it is added last); everything else must match exactly.
fn normalized(mut s: (Catalog, Vec<String>)) -> (Catalog, Vec<String>) {
    for t in s.0.tables.values_mut() {
        t.columns.sort_by(|a, b| a.name.cmp(&b.name));
        for c in &mut t.columns {
            c.attnum = 0;
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn change_type_lifecycle_under_old_and_new_traffic() {
    let (old_inserts, new_inserts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (oi, ni) = (old_inserts.clone(), new_inserts.clone());
    let r = lifecycle(Scenario {
        plan: plan(),
        setup: SETUP.into(),
        tables: vec!["comments".into(), "posts".into()],
        old: sql(move |c, i| old_sql(&oi, c, i)),
        new: sql(move |c, i| new_sql(&ni, c, i)),
        clients: 2,
        stage: Duration::from_millis(500),
        role: None,
    })
    .await;
    r.assert_clean();
    assert_eq!(r.gates, 2, "{:#?}", r.outcomes);
    eprintln!(
        "change_type lifecycle: old app {} ok / {} failed, new app {} ok / {} failed; inserts old {} new {}",
        r.old_ok(),
        r.old.failed.load(Ordering::Relaxed),
        r.new_ok(),
        r.new.failed.load(Ordering::Relaxed),
        old_inserts.load(Ordering::Relaxed),
        new_inserts.load(Ordering::Relaxed)
    );

    // no lost rows, no lost or wrong values
    let row = r
        .client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE legacy_score <> (split_part(contents, ' ', 3)::int % 50)),
                    format_type(atttypid, atttypmod)
               FROM comments, pg_attribute
              WHERE attrelid = 'comments'::regclass AND attname = 'legacy_score'
              GROUP BY 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0) as u64,
        ROWS + old_inserts.load(Ordering::Relaxed) + new_inserts.load(Ordering::Relaxed),
        "rows lost or duplicated"
    );
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "values that differ from what was written"
    );
    assert_eq!(row.get::<_, String>(2), "numeric(6,2)");

    // the catalog matches a plain ALTER COLUMN TYPE (column order aside)
    let control = TestDb::new().await;
    let cc = control.client().await;
    cc.batch_execute(SETUP).await.unwrap();
    cc.batch_execute(
        "ALTER TABLE comments ALTER COLUMN legacy_score TYPE numeric(6,2) USING legacy_score::numeric(6,2)",
    )
    .await
    .unwrap();
    assert_eq!(
        normalized(schema_of(&r.client, "comments").await),
        normalized(schema_of(&cc, "comments").await),
        "the catalog differs from a plain ALTER COLUMN TYPE"
    );
}

/// The old application's queries fail as soon as the column has the new type: the
/// lifecycle above would catch a swap that came before the drain gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_application_breaks_on_the_new_type() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute("ALTER TABLE comments ALTER COLUMN legacy_score TYPE numeric(6,2)")
        .await
        .unwrap();
    let n = AtomicU64::new(0);
    let mut failed = 0;
    for i in 0..30 {
        if client.simple_query(&old_sql(&n, 0, i)).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(
        failed,
        (0..30).filter(|i| i % 4 == 2).count(),
        "every integer-only read fails on numeric"
    );
    for i in 0..30 {
        client.simple_query(&new_sql(&n, 0, i)).await.unwrap();
    }
}

/// Rollback from the gate before contract: nothing was swapped, the column kept its
/// type all along (the new application read it through the cast), so the undo only
/// drops the triggers and the shadow; every value either application wrote is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_before_contract_never_swaps() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let before = schema_of(&client, "comments").await;
    let file = plan();
    let s = db.session();
    let out = run::start(&s, &file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
    client
        .batch_execute("UPDATE comments SET legacy_score = 7 WHERE id = 1")
        .await
        .unwrap();
    let out = run::advance(&s, &file.plan.name, "app@v1", Some(&file))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out, Outcome::AwaitingDeploy { .. }), "{out:?}");
    let ty: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'comments'::regclass AND attname = 'legacy_score'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "integer", "no swap before contract");
    // the new application reads through the cast and writes what integer holds
    let v: String = client
        .query_one(
            "SELECT legacy_score::numeric(6,2)::text FROM comments WHERE id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "7.00");
    client
        .batch_execute(
            "UPDATE comments SET legacy_score = 12 WHERE id = 2;
             INSERT INTO comments (post_id, contents, legacy_score) VALUES (1, 'new 0 1', 3);
             INSERT INTO comments (post_id, contents) VALUES (1, 'defaulted');",
        )
        .await
        .unwrap();
    let out = run::rollback(&s, &file.plan.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(out, Outcome::RolledBackToGate { .. }), "{out:?}");
    let out = run::rollback(&s, &file.plan.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, Outcome::RolledBack);
    assert_eq!(
        schema_of(&client, "comments").await,
        before,
        "the rollback did not restore the exact original schema"
    );
    let rows = client
        .query(
            "SELECT id, legacy_score FROM comments WHERE id IN (1, 2) OR contents IN ('new 0 1', 'defaulted') ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(got, vec![7, 12, 3, 0]);
    let n: i64 = client
        .query_one("SELECT count(*) FROM comments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as u64, ROWS + 2);
}

/// varchar(80) → varchar(200): one catalog-only statement (the CHECK on the column
/// dropped and added back NOT VALID in it, then validated); the table and its indexes
/// are not rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_coercible_change_is_one_catalog_only_statement() {
    let yaml = "name: widen-posts-title\nsettings: { lock_timeout: 200ms }\nchanges:\n  - change_type: { table: posts, column: title, type: varchar(200) }\n";
    let file = plan_from(yaml, "widen-posts-title");
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute("CREATE UNIQUE INDEX posts_title_key ON posts (title)")
        .await
        .unwrap();
    let program = run::expand(Some(&db.conn()), &file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // the gate (the application reads `title::varchar(200)`), then the change
    assert_eq!(program.phases.len(), 2);
    assert!(program.phases[0].steps.is_empty() && program.phases[0].gate.is_some());
    assert_eq!(program.phases[1].steps.len(), 2);
    assert_eq!(
        program.phases[1].steps[0].display_sql(),
        "ALTER TABLE public.posts DROP CONSTRAINT IF EXISTS posts_title_check;\nALTER TABLE public.posts ALTER COLUMN title TYPE varchar(200);\nALTER TABLE public.posts ADD CONSTRAINT posts_title_check CHECK (length(title::text) > 0) NOT VALID;"
    );
    let files = "SELECT pg_relation_filenode('posts')::text || '/' || pg_relation_filenode('posts_title_key')::text";
    let before: String = client.query_one(files, &[]).await.unwrap().get(0);
    let r = lifecycle(Scenario {
        plan: file,
        setup: SETUP.into(),
        tables: vec!["posts".into()],
        old: sql(|c, i| match i % 3 {
            0 => format!(
                "UPDATE posts SET title = 'old {c} {i}' WHERE id = {}",
                1 + i % 50
            ),
            1 => format!(
                "UPDATE posts SET title = 'old {c} {i}' WHERE id = {} RETURNING title",
                1 + (i * 7) % 50
            ),
            _ => format!("SELECT title FROM posts WHERE id = {}", 1 + i % 50),
        }),
        // reads through the cast to the new type, as the gate says; writes titles
        // longer than 80 characters only once the plan completed
        new: sql(|c, i| match i % 3 {
            0 => format!(
                "UPDATE posts SET title = CASE WHEN EXISTS (SELECT 1 FROM pgphase.plans WHERE name = 'widen-posts-title' AND status = 'completed') THEN '{}' ELSE 'new {c} {i}' END WHERE id = {}",
                format!("new {c} {i} ").repeat(12),
                1 + i % 50
            ),
            1 => format!(
                "UPDATE posts SET title = 'new {c} {i}' WHERE id = {} RETURNING title::varchar(200)",
                1 + (i * 7) % 50
            ),
            _ => format!(
                "SELECT title::varchar(200) FROM posts WHERE id = {}",
                1 + i % 50
            ),
        }),
        clients: 2,
        stage: Duration::from_millis(400),
        role: None,
    })
    .await;
    r.assert_clean();
    // the same statement on this test's own copy: no rewrite of the table or the index
    let file = plan_from(yaml, "widen-posts-title");
    run::start(&db.session(), &file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run::advance(&db.session(), "widen-posts-title", "app@v1", Some(&file))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, Outcome::Completed);
    let after: String = client.query_one(files, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "the table or its index was rewritten");
    let ty: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'posts'::regclass AND attname = 'title'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "character varying(200)");
    let validated: bool = client
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'posts_title_check'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(validated);
}

/// What the gate's cast is for: a statement a driver prepared and cached before the type
/// changed fails afterwards (`cached plan must not change result type`, 0A000) when it
/// returns the column as it was, on every PostgreSQL version, for the shadow route's
/// swap and for the in-place route's typmod change alike; read through the cast to the
/// new type, it keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_statements_survive_the_type_change_only_through_the_cast() {
    use lifecycle::driver::{Conn, Protocol};
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    let widen = plan_from(
        "name: widen-posts-title\nsettings: { lock_timeout: 200ms }\nchanges:\n  - change_type: { table: posts, column: title, type: varchar(200) }\n",
        "widen-posts-title",
    );
    let s = db.session();
    for (file, plain, cast) in [
        (
            plan(),
            [
                "SELECT id, legacy_score FROM comments WHERE id = 1",
                "UPDATE comments SET legacy_score = 5 WHERE id = 2 RETURNING legacy_score",
            ],
            [
                "SELECT id, legacy_score::numeric(6,2) FROM comments WHERE id = 1",
                "UPDATE comments SET legacy_score = 5 WHERE id = 2 RETURNING legacy_score::numeric(6,2)",
            ],
        ),
        (
            widen.clone(),
            [
                "SELECT title FROM posts WHERE id = 1",
                "UPDATE posts SET title = 'x' WHERE id = 2 RETURNING title",
            ],
            [
                "SELECT title::varchar(200) FROM posts WHERE id = 1",
                "UPDATE posts SET title = 'x' WHERE id = 2 RETURNING title::varchar(200)",
            ],
        ),
    ] {
        let mut conn = Conn::connect(&db.url, "app", Protocol::Cached).await.unwrap();
        let mut out = run::start(&s, &file)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut last = None;
        while let Outcome::AwaitingDeploy { .. } = out {
            // prepared and run before each gate's confirmation: the last time just
            // before the phase that changes the type
            for q in plain.iter().chain(&cast) {
                conn.run(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
            }
            out = run::advance(&s, &file.plan.name, "app@v1", Some(&file))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            last = Some(out.clone());
        }
        assert_eq!(last, Some(Outcome::Completed));
        for q in plain {
            let err = conn.run(q).await.expect_err(q);
            assert_eq!(
                err.as_db_error().map(|d| d.code().code()),
                Some("0A000"),
                "{q}: {err}"
            );
        }
        for q in cast {
            conn.run(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }
}

/// Quoted, mixed-case and reserved names, a string literal that spells the column's
/// name, a column whose name contains the other's: the expressions mean in the
/// triggers what they mean in SQL over the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_and_expressions() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            r#"CREATE SCHEMA "App Data";
               CREATE TABLE "App Data"."Order Items" (
                 "Key" bigint PRIMARY KEY,
                 "Qty" text NOT NULL,
                 "Qty_note" text,
                 "order" int NOT NULL DEFAULT 1
               );
               CREATE INDEX "Order Items Qty" ON "App Data"."Order Items" ("Qty");
               INSERT INTO "App Data"."Order Items" SELECT g, (g * 2)::text, 'Qty', 1 FROM generate_series(1, 500) g;"#,
        )
        .await
        .unwrap();
    let yaml = r#"settings: { lock_timeout: 500ms, backfill: { batch_size: 100, target_batch_time: 0s } }
changes:
  - change_type:
      table: '"App Data"."Order Items"'
      column: Qty
      type: integer
      using: 'CASE WHEN "Qty" = ''Qty'' THEN -1 ELSE "Qty"::integer + 0 * length(coalesce("Qty_note", '''')) END'
      reverse: '"Qty"::text'
  - split_column:
      table: '"App Data"."Order Items"'
      from: order
      into:
        - { name: select, type: int, using: '"order" * 10' }
        - { name: Order Note, type: text, using: '''order '' || "order"' }
      reverse: '"select" / 10'
"#;
    let file = plan_from(yaml, "hostile");
    let s = db.session();
    let mut out = run::start(&s, &file)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .batch_execute(
            r#"INSERT INTO "App Data"."Order Items" ("Key", "Qty", "Qty_note", "order") VALUES (1001, 'Qty', 'x', 3);
               UPDATE "App Data"."Order Items" SET "Qty" = '41' WHERE "Key" = 1;"#,
        )
        .await
        .unwrap();
    let mut n = 0;
    while let Outcome::AwaitingDeploy { .. } = out {
        n += 1;
        out = run::advance(&s, "hostile", &format!("v{n}"), Some(&file))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 1 {
            // after the swap, the new application writes integers and the new columns
            client
                .batch_execute(
                    r#"INSERT INTO "App Data"."Order Items" ("Key", "Qty", "select", "Order Note") VALUES (1002, 7, 50, 'order 5');
                       UPDATE "App Data"."Order Items" SET "select" = 20 WHERE "Key" = 2;"#,
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(out, Outcome::Completed);
    let rows = client
        .query(
            r#"SELECT "Key", "Qty", "select", "Order Note" FROM "App Data"."Order Items" WHERE "Key" IN (1, 2, 3, 1001, 1002) ORDER BY 1"#,
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, i32, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 41, 10, "order 1".into()),
            (2, 4, 20, "order 1".into()),
            (3, 6, 10, "order 1".into()),
            (1001, -1, 30, "order 3".into()),
            (1002, 7, 50, "order 5".into()),
        ]
    );
    let idx: String = client
        .query_one(
            r#"SELECT indexdef FROM pg_indexes WHERE indexname = 'Order Items Qty'"#,
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        idx,
        r#"CREATE INDEX "Order Items Qty" ON "App Data"."Order Items" USING btree ("Qty")"#
    );
}

/// Refused before anything runs, with the reason and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_type_preconditions() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute(
            "CREATE VIEW top_comments AS SELECT id, author_name FROM comments;
             ALTER TABLE comments ADD COLUMN hits serial;
             ALTER TABLE comments ADD COLUMN contents_length int GENERATED ALWAYS AS (length(contents)) STORED;
             CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER high_scores BEFORE UPDATE ON comments FOR EACH ROW
               WHEN (NEW.legacy_score > 100) EXECUTE FUNCTION noop();",
        )
        .await
        .unwrap();
    for (yaml, needle) in [
        (
            "  - change_type: { table: comments, column: hits, type: bigint }",
            "default from a sequence",
        ),
        (
            "  - change_type: { table: comments, column: contents, type: varchar(500) }",
            "generated column `contents_length` is computed from `contents`",
        ),
        (
            "  - change_type: { table: comments, column: legacy_score, type: bigint }",
            "trigger `high_scores` names `legacy_score`",
        ),
        (
            "  - change_type: { table: comments, column: post_id, type: integer }",
            "foreign key `comments_post_id_fkey`",
        ),
        (
            "  - change_type: { table: posts, column: id, type: integer }",
            "references `posts.id`",
        ),
        (
            "  - change_type: { table: comments, column: id, type: integer }",
            "part of the key",
        ),
        (
            "  - change_type: { table: comments, column: legacy_score, type: integer }",
            "already of type integer",
        ),
        (
            "  - change_type: { table: comments, column: author_name, type: varchar }",
            "view `top_comments` uses",
        ),
        (
            "  - change_type: { table: comments, column: nope, type: text }",
            "has no column `nope`",
        ),
    ] {
        let file = plan_from(&format!("changes:\n{yaml}\n"), "bad-change-type");
        let err = run::start(&db.session(), &file)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // an expression that does not type-check fails in its probe, before any trigger
    client
        .batch_execute("ALTER TABLE comments DROP COLUMN contents_length")
        .await
        .unwrap();
    let file = plan_from(
        "settings: { lock_timeout: 200ms }\nchanges:\n  - change_type: { table: comments, column: contents, type: integer, using: contents + 1 }\n",
        "bad-expr",
    );
    let err = run::start(&db.session(), &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("operator does not exist"), "{err}");
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'comments'::regclass AND tgname LIKE 'zz_pgphase%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
}
