//! `pgphase lint`: one snapshot per rule of the rendered finding (insta), the safe
//! counterpart of each hazard (no finding), `pgphase:allow`, and `--trace` end to end on
//! real PostgreSQL (a throwaway server, and a given database that is left unchanged).
//!
//! Regenerate after an intended wording change with
//! `INSTA_UPDATE=always cargo test --profile test-release --test lint` and read the diff.

mod common;

use std::process::Command;

use common::cli::pgphase;

use pgphase::lint::{lint_source, rules};
use pgphase::report::lint::lint_text;

#[test]
fn every_rule_has_a_case_and_a_snapshot() {
    // Each rule's data holds its hazardous example (`bad`) and the same intent written
    // safely (`good`); its doc page in docs/lint/ shows both.
    for r in rules::list() {
        let (rule, bad, good) = (r.name, r.bad, r.good);
        let file = format!("{rule}.sql");
        let r = lint_source(&file, bad);
        assert!(
            r.findings.iter().any(|f| f.rule == rule),
            "{rule}: no finding in:\n{bad}\n{r:#?}"
        );
        insta::assert_snapshot!(format!("rule_{rule}"), lint_text(&[r], false));
        let r = lint_source(&file, good);
        assert!(
            r.findings.is_empty(),
            "{rule}: the safe version has findings:\n{good}\n{}",
            lint_text(std::slice::from_ref(&r), false)
        );
    }
}

#[test]
fn allow_comments_silence_one_finding_each() {
    let src = "SET lock_timeout = '1s';
-- pgphase:allow drop-column
-- the column has been unused since v41 (JIRA-123)
ALTER TABLE comments DROP COLUMN legacy;
ALTER TABLE comments DROP COLUMN legacy2;  -- pgphase:allow drop-column
ALTER TABLE comments
  DROP COLUMN a,  -- pgphase:allow drop-column
  DROP COLUMN b;
-- pgphase:allow drop-colum, rename-column
ALTER TABLE comments DROP COLUMN c;
";
    let r = lint_source("allow.sql", src);
    let lines: Vec<usize> = r.findings.iter().map(|f| f.line).collect();
    assert_eq!(lines, vec![8, 10], "{r:#?}");
    assert_eq!(r.allowed.len(), 3);
    insta::assert_snapshot!("allow", lint_text(&[r], false));
}

#[test]
fn new_tables_and_tricky_text_raise_nothing() {
    let src = r#"
-- a new table is not used by the application yet
CREATE TABLE audit (id bigserial PRIMARY KEY, note text);
CREATE INDEX audit_note_idx ON audit (note);
ALTER TABLE audit ADD COLUMN token uuid DEFAULT gen_random_uuid();
ALTER TABLE audit ALTER COLUMN note SET NOT NULL;
/* ALTER TABLE comments DROP COLUMN body; /* nested */ still a comment */
SELECT 'ALTER TABLE comments RENAME COLUMN a TO b;', $$ DROP TABLE comments; $$;
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  UPDATE comments SET body = contents; -- inside a function body: not run here
  RETURN NEW;
END $body$;
COPY audit (note) FROM stdin;
DROP TABLE comments;
\.
"#;
    let r = lint_source("tricky.sql", src);
    assert!(
        r.findings.is_empty(),
        "{}",
        lint_text(std::slice::from_ref(&r), false)
    );
    assert_eq!(r.statements, 7, "{r:#?}");
}

#[test]
fn unknown_and_unused_allow_comments_warn() {
    let r = lint_source(
        "w.sql",
        "-- pgphase:allow no-such-rule\nSET lock_timeout = '1s';\n-- pgphase:allow drop-column\nALTER TABLE t ADD COLUMN a int;\n",
    );
    assert!(r.findings.is_empty());
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("unknown rule `no-such-rule`"));
    assert!(r.warnings[1].contains("silences nothing"));
}

// ---------------------------------------------------------------- the binary

fn output(mut c: Command) -> (i32, String, String) {
    let out = c.output().expect("run pgphase");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn exit_4_with_findings_0_without_and_json() {
    let (code, out, _) = output(pgphase(&["lint", "examples/migrations/001_risky.sql"]));
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("examples/migrations/001_risky.sql:5:22: alter-column-type"),
        "{out}"
    );
    let (code, out, _) = output(pgphase(&["lint", "examples/migrations/002_safe.sql"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("no findings in 9 statements of 1 file"),
        "{out}"
    );

    let (code, out, _) = output(pgphase(&[
        "lint",
        "examples/migrations/001_risky.sql",
        "--output",
        "json",
    ]));
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &v["findings"][0];
    for key in [
        "file",
        "line",
        "column",
        "rule",
        "message",
        "statement",
        "why",
        "fix",
    ] {
        assert!(!f[key].is_null(), "{key} missing: {f:#}");
    }
    assert_eq!(v["allowed"][0]["rule"], "drop-column");
    assert!(v["trace"].is_null());

    let (code, _, err) = output(pgphase(&["lint", "no/such/file.sql"]));
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = output(pgphase(&["lint", "--rules"]));
    assert_eq!(code, 0);
    assert_eq!(out.matches("\n    why: ").count(), rules::list().len());
}

/// `--format github`: one `::error file=…,line=…,col=…` workflow command per finding;
/// `--format sarif`: a SARIF 2.1.0 log that validates against the SARIF 2.1.0 JSON
/// Schema (tests/fixtures/sarif-schema-2.1.0.json, the schema as published, rtm.5),
/// with the allowed finding as a suppressed result.
#[test]
fn github_annotations_and_sarif() {
    let risky = "examples/migrations/001_risky.sql";
    let (code, out, _) = output(pgphase(&["lint", risky, "--format", "github"]));
    assert_eq!(code, 4, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("alter-column-type"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with(&format!(
            "::error file={risky},line=5,col=22,title=pgphase lint%3A alter-column-type::"
        )),
        "{out}"
    );
    assert!(line.contains("%0Afix: "), "{line}");
    assert!(line.contains("pgphase convert"), "{line}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("::error ")).count(),
        12,
        "{out}"
    );

    let (code, out, _) = output(pgphase(&["lint", risky, "--format", "sarif"]));
    assert_eq!(code, 4, "{out}");
    let log: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = v
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{out}");
    let results = log["runs"][0]["results"].as_array().unwrap();
    let r = &results[0];
    assert_eq!(r["ruleId"], "alter-column-type");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"],
        5
    );
    let rules_in_log = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules_in_log.len(), rules::list().len());
    let k = r["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules_in_log[k]["id"], "alter-column-type");
    assert!(
        results
            .iter()
            .any(|r| r["ruleId"] == "drop-column" && r["suppressions"][0]["kind"] == "inSource"),
        "{out}"
    );

    // a clean file: exit 0, a valid log with no results
    let (code, out, _) = output(pgphase(&[
        "lint",
        "examples/migrations/002_safe.sql",
        "--format",
        "sarif",
    ]));
    assert_eq!(code, 0);
    let log: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.is_valid(&log));
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
    // text stays the default, --format json is --output json
    let (_, text, _) = output(pgphase(&["lint", risky]));
    assert!(text.contains("why: "), "{text}");
    let (_, json, _) = output(pgphase(&["lint", risky, "--format", "json"]));
    let (_, json2, _) = output(pgphase(&["lint", risky, "--output", "json"]));
    assert_eq!(json, json2);
}

/// The trace on a throwaway server: each statement commits on its own, so each shows its
/// own locks; rewrites are seen through relfilenode.
#[test]
fn trace_on_a_throwaway_server_observes_locks_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.sql");
    std::fs::write(
        &file,
        "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL, s varchar(10));
INSERT INTO t SELECT g, g, 'x' FROM generate_series(1, 500) g;
ALTER TABLE t ALTER COLUMN n TYPE bigint;
ALTER TABLE t ALTER COLUMN s TYPE varchar(20);
CREATE INDEX t_n_idx ON t (n);
CREATE INDEX CONCURRENTLY t_s_idx ON t (s);
ALTER TABLE t ADD CONSTRAINT s_nn CHECK (s IS NOT NULL) NOT VALID;
ALTER TABLE t VALIDATE CONSTRAINT s_nn;
BEGIN;
ALTER TABLE t ADD COLUMN broken int REFERENCES nowhere (id);
",
    )
    .unwrap();
    let f = file.display().to_string();
    let (code, out, err) = output(pgphase(&["lint", "--trace", &f, "--output", "json"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st = v["trace"]["statements"].as_array().unwrap();
    assert_eq!(st.len(), 10);
    let modes = |i: usize, rel: &str| -> Vec<String> {
        st[i]["locks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["relation"] == rel)
            .map(|l| l["mode"].as_str().unwrap().to_string())
            .collect()
    };
    let rewrote = |i: usize| -> Vec<String> {
        st[i]["rewrote"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    // int → bigint rewrites the table and its primary key index, under ACCESS EXCLUSIVE
    assert!(
        modes(2, "public.t").contains(&"ACCESS EXCLUSIVE".to_string()),
        "{:#}",
        st[2]
    );
    assert_eq!(
        rewrote(2),
        vec!["public.t (table)", "public.t_pkey (index)"]
    );
    // varchar(10) → varchar(20) is binary-coercible: ACCESS EXCLUSIVE but no rewrite
    assert!(modes(3, "public.t").contains(&"ACCESS EXCLUSIVE".to_string()));
    assert!(rewrote(3).is_empty(), "{:#}", st[3]);
    // plain CREATE INDEX: SHARE on the table (blocks writes)
    assert_eq!(modes(4, "public.t"), vec!["SHARE"]);
    // CONCURRENTLY runs outside a transaction block
    assert!(st[5]["error"].is_null(), "{:#}", st[5]);
    assert!(st[5]["note"]
        .as_str()
        .unwrap()
        .contains("outside a transaction block"));
    // NOT VALID then VALIDATE: ACCESS EXCLUSIVE briefly, then SHARE UPDATE EXCLUSIVE
    assert_eq!(modes(7, "public.t"), vec!["SHARE UPDATE EXCLUSIVE"]);
    assert!(st[8]["skipped"]
        .as_str()
        .unwrap()
        .contains("transaction control"));
    assert!(
        st[9]["error"].as_str().unwrap().contains("nowhere"),
        "{:#}",
        st[9]
    );
    assert!(v["trace"]["target"]
        .as_str()
        .unwrap()
        .starts_with("a throwaway PostgreSQL"));

    // the text rendering of the same trace
    let (_, out, _) = output(pgphase(&["lint", "--trace", &f]));
    assert!(
        out.contains("rewrite: public.t (table), public.t_pkey (index)"),
        "{out}"
    );
    assert!(
        out.contains("locks: public.t SHARE; public.t_n_idx (new) ACCESS EXCLUSIVE"),
        "{out}"
    );
}

/// On a given database the trace runs in one transaction that is rolled back: the
/// schema and the data are exactly as before, and the locks are the statement's own.
#[tokio::test]
async fn trace_on_a_given_database_changes_nothing() {
    let db = common::TestDb::new().await;
    let client = db.client().await;
    common::rich_comments(&client, 200).await;
    let before = common::schema_of(&client, "comments").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.sql");
    std::fs::write(
        &file,
        "ALTER TABLE comments ADD COLUMN token uuid DEFAULT gen_random_uuid();
UPDATE comments SET contents = 'changed';
DROP INDEX comments_contents_idx;
COMMIT;
CREATE TABLE other (id int);
",
    )
    .unwrap();
    let f = file.display().to_string();
    let url = db.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        output(pgphase(&[
            "--database-url",
            &url,
            "lint",
            "--trace",
            &f,
            "--output",
            "json",
        ]))
    })
    .await
    .unwrap();
    assert_eq!(code, 4, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st = v["trace"]["statements"].as_array().unwrap();
    assert_eq!(
        st[0]["rewrote"][0], "public.comments (table)",
        "{:#}",
        st[0]
    );
    assert_eq!(st[0]["findings"][0], "volatile-default");
    assert!(
        st[3]["skipped"].is_string(),
        "COMMIT must not run: {:#}",
        st[3]
    );
    assert!(!v["trace"]["target"].as_str().unwrap().contains('@') || !out.contains("password"));

    let after = common::schema_of(&client, "comments").await;
    assert_eq!(before, after, "the trace changed the schema");
    let changed: i64 = client
        .query_one(
            "SELECT count(*) FROM comments WHERE contents = 'changed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(changed, 0);
    let other: bool = client
        .query_one("SELECT to_regclass('other') IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(other, "a table created by the trace survived");
}
