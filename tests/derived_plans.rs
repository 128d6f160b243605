//! `pgphase plan` output for change_type, split_column and merge_columns on hand-built
//! catalogs (no server), their refusals, and load-time validation. Regenerate with
//! `INSTA_UPDATE=always cargo test --test derived_plans` and read the diff.

use std::path::Path;

use pgphase::catalog::{Catalog, Column, Constraint, Index, Table, ViewDependency};
use pgphase::plan::{self, PlanFile};
use pgphase::program::{Action, LockLevel, PhaseKind, Program};
use pgphase::recipe::{self, Knowledge, Precondition};
use pgphase::report;
use pgphase::sql::{quote_ident, QualifiedName};

const PG15: i32 = 150004;

fn column(name: &str, type_sql: &str, not_null: bool, default: Option<&str>) -> Column {
    Column {
        name: name.into(),
        type_sql: type_sql.into(),
        collation: None,
        not_null,
        default: default.map(Into::into),
        identity: None,
        generated: None,
        has_equality: true,
        ..Default::default()
    }
}

fn index(table: &QualifiedName, name: &str, cols: &[&str], constraint: Option<&str>) -> Index {
    let parts: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    Index {
        name: name.into(),
        unique: constraint.is_some(),
        primary: constraint.is_some_and(|c| c.ends_with("_pkey")),
        valid: true,
        method: "btree".into(),
        key_parts: parts.clone(),
        include: Vec::new(),
        predicate: None,
        columns: cols.iter().map(|c| c.to_string()).collect(),
        constraint: constraint.map(Into::into),
        definition: format!(
            "CREATE INDEX {} ON {table} USING btree ({})",
            quote_ident(name),
            parts.join(", ")
        ),
    }
}

fn constraint(
    table: &QualifiedName,
    name: &str,
    kind: &str,
    def: &str,
    cols: &[&str],
) -> Constraint {
    Constraint {
        name: name.into(),
        kind: kind.into(),
        definition: def.into(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        validated: true,
        table: table.clone(),
    }
}

/// `comments` and `posts` as the example plans expect them; `legacy_score` has an
/// index and a CHECK, `author_name` is nullable text.
fn story(version: i32) -> Catalog {
    let q = QualifiedName::parse("comments").unwrap();
    let comments = Table {
        name: q.clone(),
        columns: vec![
            column(
                "id",
                "bigint",
                true,
                Some("nextval('comments_id_seq'::regclass)"),
            ),
            column("post_id", "bigint", true, None),
            column("contents", "text", true, None),
            column("legacy_score", "integer", true, Some("0")),
            column("author_name", "text", false, None),
            column(
                "created_at",
                "timestamp with time zone",
                true,
                Some("now()"),
            ),
            column("summary", "character varying(80)", false, None),
        ],
        primary_key: Some(vec!["id".into()]),
        unique_not_null_keys: Vec::new(),
        indexes: vec![
            index(&q, "comments_pkey", &["id"], Some("comments_pkey")),
            index(&q, "comments_contents_idx", &["contents"], None),
            index(&q, "comments_legacy_score_idx", &["legacy_score"], None),
        ],
        constraints: vec![
            constraint(&q, "comments_pkey", "p", "PRIMARY KEY (id)", &["id"]),
            constraint(
                &q,
                "comments_legacy_score_check",
                "c",
                "CHECK ((legacy_score >= 0))",
                &["legacy_score"],
            ),
        ],
        referenced_by: Vec::new(),
        triggers: Vec::new(),
        estimated_rows: 50_000,
        views: Vec::new(),
        kind: "r".into(),
        persistence: "p".into(),
        ..Default::default()
    };
    let p = QualifiedName::parse("posts").unwrap();
    let posts = Table {
        name: p.clone(),
        columns: vec![
            column("id", "bigint", true, None),
            column("title", "text", true, None),
            column("published_date", "date", true, None),
            column(
                "published_time",
                "time without time zone",
                true,
                Some("'12:00:00'::time without time zone"),
            ),
        ],
        primary_key: Some(vec!["id".into()]),
        unique_not_null_keys: Vec::new(),
        indexes: vec![index(&p, "posts_pkey", &["id"], Some("posts_pkey"))],
        constraints: vec![constraint(
            &p,
            "posts_pkey",
            "p",
            "PRIMARY KEY (id)",
            &["id"],
        )],
        referenced_by: Vec::new(),
        triggers: Vec::new(),
        estimated_rows: 1_000,
        views: Vec::new(),
        kind: "r".into(),
        persistence: "p".into(),
        ..Default::default()
    };
    Catalog {
        server_version_num: version,
        tables: [comments, posts]
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect(),
        ..Default::default()
    }
}

fn example(file: &str) -> PlanFile {
    PlanFile::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("plans")
            .join(file),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn parse(yaml: &str) -> plan::Plan {
    plan::parse(yaml, "plans/x.yaml", "x").unwrap_or_else(|e| panic!("{e}"))
}

fn expand(p: &plan::Plan, cat: &Catalog) -> Program {
    recipe::expand(p, Knowledge::Live(cat)).unwrap_or_else(|p| panic!("refused: {p:#?}"))
}

fn refuse(yaml: &str, cat: &Catalog) -> Vec<Precondition> {
    match recipe::expand(&parse(yaml), Knowledge::Live(cat)) {
        Ok(p) => panic!("expected a refusal, got:\n{}", report::plan_text(&p)),
        Err(problems) => problems,
    }
}

fn kinds(p: &Program) -> Vec<PhaseKind> {
    p.phases.iter().map(|ph| ph.kind).collect()
}

/// Catalog-only statements under ACCESS EXCLUSIVE, scans under weaker locks, an undo
/// for every phase before contract.
fn check_invariants(p: &Program) {
    for ph in &p.phases {
        for st in ph.steps.iter().chain(&ph.rollback) {
            let sql = st.display_sql();
            match &st.action {
                Action::CreateIndexConcurrently { .. } | Action::DropIndexConcurrently { .. } => {
                    assert!(!st.runs_in_transaction(), "{sql}")
                }
                Action::Backfill(_) => assert_eq!(st.lock, LockLevel::RowExclusive),
                Action::Verify { .. } => assert_eq!(st.lock, LockLevel::AccessShare),
                Action::Sql { .. } => {
                    assert!(!sql.contains("CONCURRENTLY"), "{sql}");
                    if sql.contains("VALIDATE CONSTRAINT") {
                        assert_eq!(st.lock, LockLevel::ShareUpdateExclusive, "{sql}");
                    }
                }
            }
        }
        // a backfill fills columns an earlier phase's undo drops
        let changes = ph.steps.iter().any(|s| {
            !matches!(s.action, Action::Verify { .. } | Action::Backfill(_))
                && !s.display_sql().contains("VALIDATE CONSTRAINT")
        });
        if ph.kind != PhaseKind::Contract && changes {
            assert!(!ph.rollback.is_empty(), "{} has no undo", ph.kind);
        }
    }
}

// ---------------------------------------------------------------- change_type

#[test]
fn change_type_shadow_route() {
    let p = expand(
        &example("change-comments-legacy-score-type.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    assert_eq!(
        kinds(&p),
        [
            PhaseKind::Expand,
            PhaseKind::DualWrite,
            PhaseKind::Backfill,
            PhaseKind::SwitchReads,
            PhaseKind::Contract
        ]
    );
    // switch_reads only verifies: the swap comes at contract, after the drain gate
    assert_eq!(p.phases[3].steps.len(), 1);
    let swap = p.phases[4].steps[0].display_sql();
    for needle in [
        "RENAME COLUMN legacy_score TO legacy_score_old_",
        "ALTER COLUMN legacy_score SET DEFAULT 0;",
        "ALTER INDEX public.comments_legacy_score_idx RENAME TO comments_legacy_score_idx_old_",
        "RENAME CONSTRAINT comments_legacy_score_check TO comments_legacy_score_check_old_",
        "DROP COLUMN IF EXISTS legacy_score_old_",
    ] {
        assert!(swap.contains(needle), "{needle}: {swap}");
    }
    assert_eq!(p.phases[4].steps[0].lock, LockLevel::AccessExclusive);
    assert!(p.phases[4].steps[0].changes_row_type);
    assert!(p.phases[2]
        .gate
        .as_ref()
        .unwrap()
        .text()
        .contains("as `legacy_score::numeric(6,2)`"));
    assert!(p.phases[3]
        .gate
        .as_ref()
        .unwrap()
        .text()
        .contains("the next phases change the row type of comments (in contract)"));
    insta::assert_snapshot!("change_type_shadow", report::plan_text(&p));
}

#[test]
fn change_type_binary_coercible_is_in_place() {
    let p = expand(
        &parse("name: widen\nchanges:\n  - change_type: { table: comments, column: summary, type: text }\n"),
        &story(PG15),
    );
    check_invariants(&p);
    // a gate first (the application reads `summary::text`), then the change
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::SwitchReads]);
    assert!(p.phases[0].steps.is_empty());
    assert!(p.phases[0]
        .gate
        .as_ref()
        .unwrap()
        .text()
        .contains("as `summary::text`"));
    assert_eq!(p.phases[1].steps.len(), 1);
    insta::assert_snapshot!("change_type_in_place", report::plan_text(&p));
    // a CHECK on the column would be re-validated under ACCESS EXCLUSIVE: dropped and
    // added back NOT VALID in the same transaction, validated in a step of its own
    let mut cat = story(PG15);
    let t = cat.tables.get_mut("public.comments").unwrap();
    let q = t.name.clone();
    t.constraints.push(constraint(
        &q,
        "summary_short",
        "c",
        "CHECK ((length((summary)::text) < 70))",
        &["summary"],
    ));
    let p = expand(
        &parse(
            "changes:\n  - change_type: { table: comments, column: summary, type: varchar(100) }\n",
        ),
        &cat,
    );
    check_invariants(&p);
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::SwitchReads]);
    assert_eq!(
        p.phases[1].steps[0].display_sql(),
        "ALTER TABLE public.comments DROP CONSTRAINT IF EXISTS summary_short;\nALTER TABLE public.comments ALTER COLUMN summary TYPE varchar(100);\nALTER TABLE public.comments ADD CONSTRAINT summary_short CHECK ((length((summary)::text) < 70)) NOT VALID;"
    );
    assert_eq!(
        p.phases[1].steps[1].display_sql(),
        "ALTER TABLE public.comments VALIDATE CONSTRAINT summary_short;"
    );
    assert_eq!(p.phases[1].steps[1].lock, LockLevel::ShareUpdateExclusive);
}

#[test]
fn change_type_refusals() {
    let mut cat = story(PG15);
    let t = cat.tables.get_mut("public.comments").unwrap();
    let q = t.name.clone();
    t.constraints.push(constraint(
        &q,
        "comments_post_id_fkey",
        "f",
        "FOREIGN KEY (post_id) REFERENCES posts(id)",
        &["post_id"],
    ));
    t.views.push(ViewDependency {
        view: QualifiedName::new("public", "scores"),
        columns: vec!["author_name".into()],
    });
    let p = refuse(
        "changes:\n  - change_type: { table: comments, column: post_id, type: integer }\n",
        &cat,
    );
    assert!(
        p[0].message.contains("foreign key `comments_post_id_fkey`"),
        "{p:?}"
    );
    assert_eq!((p[0].pos.line, p[0].pos.column), (2, 45));
    let p = refuse(
        "changes:\n  - change_type: { table: comments, column: id, type: integer }\n",
        &cat,
    );
    assert!(p[0].message.contains("part of the key"), "{p:?}");
    let p = refuse(
        "changes:\n  - change_type: { table: comments, column: legacy_score, type: INTEGER }\n",
        &cat,
    );
    assert!(p[0].message.contains("already of type integer"), "{p:?}");
    let p = refuse(
        "changes:\n  - change_type: { table: comments, column: author_name, type: varchar }\n",
        &cat,
    );
    assert!(p[0].message.contains("view `scores`"), "{p:?}");
    // in place builds no index: fine on 14.0–14.3
    expand(
        &parse("changes:\n  - change_type: { table: comments, column: summary, type: text }\n"),
        &story(140002),
    );
    let p = refuse(
        "changes:\n  - change_type: { table: comments, column: legacy_score, type: bigint }\n",
        &story(140002),
    );
    assert!(p[0].message.contains("14.4"), "{p:?}");
}

// ---------------------------------------------------------------- split / merge

#[test]
fn split_column_plan() {
    let p = expand(
        &example("split-comments-author-name.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    assert_eq!(p.phases.len(), 5);
    let f = p.phases[1].steps[2].display_sql();
    assert!(
        f.contains("IF NEW.author_first_name IS NULL AND NEW.author_last_name IS NULL THEN"),
        "{f}"
    );
    // author_name is nullable: so are the new columns
    assert!(p.phases[2].steps.len() == 1, "{:#?}", p.phases[2].steps);
    insta::assert_snapshot!("split_column", report::plan_text(&p));
}

#[test]
fn merge_columns_plan_carries_not_null() {
    let p = expand(&example("merge-posts-published-at.yaml").plan, &story(PG15));
    check_invariants(&p);
    let backfill = p.phases[2]
        .steps
        .iter()
        .map(|s| s.display_sql())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        backfill.contains("ALTER COLUMN published_at SET NOT NULL"),
        "{backfill}"
    );
    // the contract drops both old columns in the transaction that drops the triggers
    let contract = p.phases[4].steps[0].display_sql();
    assert!(
        contract.contains("DROP COLUMN IF EXISTS published_date;")
            && contract.contains("DROP COLUMN IF EXISTS published_time;"),
        "{contract}"
    );
    insta::assert_snapshot!("merge_columns", report::plan_text(&p));
}

#[test]
fn split_and_merge_refusals_and_validation() {
    let mut cat = story(PG15);
    cat.tables
        .get_mut("public.comments")
        .unwrap()
        .views
        .push(ViewDependency {
            view: QualifiedName::new("public", "authors"),
            columns: vec!["author_name".into()],
        });
    let p = refuse("changes:\n  - split_column: { table: comments, from: author_name, into: [ { name: a, type: text, using: author_name }, { name: contents, type: text, using: author_name } ], reverse: a }\n", &cat);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].message.contains("view `authors`"), "{p:?}");
    assert!(
        p[1].message.contains("already has a column `contents`"),
        "{p:?}"
    );
    let p = refuse("changes:\n  - merge_columns: { table: comments, from: [id, nope], into: { name: x, type: text, using: nope }, reverse: { id: '1', nope: x } }\n", &cat);
    assert!(p[0].message.contains("part of the key"), "{p:?}");
    assert!(p[1].message.contains("no column `nope`"), "{p:?}");
    for (yaml, needle) in [
        ("changes:\n  - split_column: { table: t, from: a, into: [ { name: b, type: text, using: a } ], reverse: b }\n", "at least two columns"),
        ("changes:\n  - split_column: { table: t, from: a, into: [ { name: b, type: text, using: a }, { name: a, type: text, using: a } ], reverse: b }\n", "listed twice"),
        ("changes:\n  - merge_columns: { table: t, from: [a, b], into: { name: c, type: text, using: a || b }, reverse: { a: c } }\n", "no expression for `b`"),
        ("changes:\n  - merge_columns: { table: t, from: [a, b], into: { name: c, type: text, using: a || b }, reverse: { a: c, b: c, d: c } }\n", "names `d`, which is not in `from`"),
        ("changes:\n  - merge_columns: { table: t, from: [a], into: { name: c, type: text, using: a }, reverse: { a: c } }\n", "at least two columns"),
        ("changes:\n  - change_type: { table: t, column: a, type: text, using: 'a; DROP TABLE t' }\n", "contains `;`"),
        ("changes:\n  - change_type: { table: t, column: a, type: text, usin: a }\n", "usin"),
        ("changes:\n  - change_type: { table: t, column: a, type: text }\n  - split_column: { table: t, from: a, into: [ { name: b, type: text, using: a }, { name: c, type: text, using: a } ], reverse: b }\n", "already changed by the change at line 2"),
    ] {
        let e = plan::parse(yaml, "x.yaml", "x").unwrap_err().to_string();
        assert!(e.starts_with("x.yaml:") && e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn offline_expansion_of_the_examples() {
    for f in [
        "change-comments-legacy-score-type.yaml",
        "split-comments-author-name.yaml",
        "merge-posts-published-at.yaml",
    ] {
        recipe::expand(&example(f).plan, Knowledge::Offline)
            .unwrap_or_else(|p| panic!("{f}: {p:?}"));
    }
}
