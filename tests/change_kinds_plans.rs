//! `pgphase plan` output for add_column, drop_column, add_index and drop_index, for
//! hand-built catalogs (no server), and their refusals with the YAML position.
//! Regenerate with `INSTA_UPDATE=always cargo test --test change_kinds_plans` and read
//! the diff: every statement runs against production tables.

use std::path::Path;

use pgphase::catalog::{
    Catalog, Column, Constraint, Grant, Index, Relation, Table, TypeInfo, ViewDependency,
};
use pgphase::plan::{self, PlanFile};
use pgphase::program::{Action, PhaseKind, Program};
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

fn index(
    table: &QualifiedName,
    name: &str,
    cols: &[&str],
    unique: bool,
    constraint: Option<&str>,
) -> Index {
    let parts: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    Index {
        name: name.into(),
        unique,
        primary: constraint.is_some_and(|c| c.ends_with("_pkey")),
        valid: true,
        method: "btree".into(),
        key_parts: parts.clone(),
        include: Vec::new(),
        predicate: None,
        columns: cols.iter().map(|c| c.to_string()).collect(),
        constraint: constraint.map(Into::into),
        definition: format!(
            "CREATE {}INDEX {} ON {table} USING btree ({})",
            if unique { "UNIQUE " } else { "" },
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

fn table(name: &str, columns: Vec<Column>) -> Table {
    let q = QualifiedName::parse(name).unwrap();
    Table {
        name: q.clone(),
        columns,
        primary_key: Some(vec!["id".into()]),
        unique_not_null_keys: Vec::new(),
        indexes: vec![index(
            &q,
            &format!("{}_pkey", q.name.as_str()),
            &["id"],
            true,
            Some(&format!("{}_pkey", q.name.as_str())),
        )],
        constraints: vec![constraint(
            &q,
            &format!("{}_pkey", q.name.as_str()),
            "p",
            "PRIMARY KEY (id)",
            &["id"],
        )],
        referenced_by: Vec::new(),
        triggers: Vec::new(),
        estimated_rows: 50_000,
        views: Vec::new(),
        kind: "r".into(),
        persistence: "p".into(),
        ..Default::default()
    }
}

/// `comments` and `posts` as the example plans expect them.
fn story(version: i32) -> Catalog {
    let mut comments = table(
        "comments",
        vec![
            column(
                "id",
                "bigint",
                true,
                Some("nextval('comments_id_seq'::regclass)"),
            ),
            column("post_id", "bigint", true, None),
            column("contents", "text", true, None),
            column("legacy_score", "integer", true, None),
            column("author_name", "text", false, None),
            column(
                "created_at",
                "timestamp with time zone",
                true,
                Some("now()"),
            ),
        ],
    );
    let q = comments.name.clone();
    comments.indexes.push(index(
        &q,
        "comments_contents_idx",
        &["contents"],
        false,
        None,
    ));
    comments.indexes.push(index(
        &q,
        "comments_legacy_score_idx",
        &["legacy_score"],
        false,
        None,
    ));
    let posts = table(
        "posts",
        vec![
            column("id", "bigint", true, None),
            column("title", "text", true, None),
        ],
    );
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

fn expand(p: &plan::Plan, cat: &Catalog) -> Program {
    recipe::expand(p, Knowledge::Live(cat)).unwrap_or_else(|p| panic!("refused: {p:#?}"))
}

fn refuse(yaml: &str, cat: &Catalog) -> Vec<Precondition> {
    let p = plan::parse(yaml, "plans/x.yaml", "x").unwrap_or_else(|e| panic!("{e}"));
    match recipe::expand(&p, Knowledge::Live(cat)) {
        Ok(p) => panic!("expected a refusal, got:\n{}", report::plan_text(&p)),
        Err(problems) => problems,
    }
}

fn kinds(p: &Program) -> Vec<PhaseKind> {
    p.phases.iter().map(|ph| ph.kind).collect()
}

/// Every statement on a live table is CONCURRENTLY outside a transaction, or catalog
/// only / a scan under SHARE UPDATE EXCLUSIVE; every phase before contract has an undo.
fn check_invariants(p: &Program) {
    for ph in &p.phases {
        for st in ph.steps.iter().chain(&ph.rollback) {
            let sql = st.display_sql();
            match &st.action {
                Action::CreateIndexConcurrently { .. } | Action::DropIndexConcurrently { .. } => {
                    assert!(
                        sql.contains("CONCURRENTLY") && !st.runs_in_transaction(),
                        "{sql}"
                    )
                }
                _ => assert!(!sql.contains("CONCURRENTLY"), "{sql}"),
            }
            if sql.contains("VALIDATE CONSTRAINT") {
                assert_eq!(
                    st.lock,
                    pgphase::program::LockLevel::ShareUpdateExclusive,
                    "{sql}"
                );
            }
        }
        // a phase that only validates what an earlier phase added changes nothing to undo
        let only_validates = ph
            .steps
            .iter()
            .all(|s| s.display_sql().contains("VALIDATE CONSTRAINT"));
        if ph.kind != PhaseKind::Contract && !ph.steps.is_empty() && !only_validates {
            assert!(!ph.rollback.is_empty(), "{} has no undo", ph.kind);
        }
    }
}

#[test]
fn add_column_transifex_procedure() {
    let p = expand(&example("add-comments-language.yaml").plan, &story(PG15));
    check_invariants(&p);
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::Backfill]);
    let expand_sql = p.phases[0]
        .steps
        .iter()
        .map(|s| s.display_sql())
        .collect::<Vec<_>>()
        .join("\n");
    // volatile and backfilled defaults are set separately: no rewrite
    assert!(expand_sql.contains("ADD COLUMN IF NOT EXISTS token uuid;\nALTER TABLE public.comments ALTER COLUMN token SET DEFAULT gen_random_uuid();"), "{expand_sql}");
    assert!(p.phases[0].gate.is_some());
    insta::assert_snapshot!("add_column_transifex", report::plan_text(&p));
}

#[test]
fn add_column_constant_default_is_catalog_only_and_needs_no_gate() {
    let yaml = "changes:\n  - add_column: { table: comments, column: { name: flagged, type: boolean, nullable: false, default: 'false' } }\n";
    let p = expand(&plan::parse(yaml, "x.yaml", "x").unwrap(), &story(PG15));
    check_invariants(&p);
    let sql = p.phases[0].steps[0].display_sql();
    assert_eq!(
        sql,
        "ALTER TABLE public.comments ADD COLUMN IF NOT EXISTS flagged boolean DEFAULT false;"
    );
    // no backfill: NOT NULL follows at once, through a validated check
    assert!(p.phases.iter().all(|ph| ph
        .steps
        .iter()
        .all(|s| !matches!(s.action, Action::Backfill(_)))));
    insta::assert_snapshot!("add_column_constant_default", report::plan_text(&p));
}

#[test]
fn drop_column_plan() {
    let p = expand(
        &example("drop-comments-legacy-score.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    assert_eq!(
        kinds(&p),
        [
            PhaseKind::Expand,
            PhaseKind::SwitchReads,
            PhaseKind::Contract
        ]
    );
    assert!(
        p.phases[0].gate.is_some(),
        "gate before anything is dropped"
    );
    assert!(p.phases[2].point_of_no_return);
    insta::assert_snapshot!("drop_column", report::plan_text(&p));
}

#[test]
fn index_plans() {
    let p = expand(
        &example("add-index-comments-post-created.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    insta::assert_snapshot!("add_index", report::plan_text(&p));
    let p = expand(
        &example("drop-index-comments-contents.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    insta::assert_snapshot!("drop_index", report::plan_text(&p));
}

#[test]
fn several_changes_share_phases_in_dependency_order() {
    // the index is written first, on a column the next change adds
    let yaml = "changes:\n  - add_index: { table: comments, name: comments_lang_idx, columns: [lang] }\n  - add_column: { table: comments, column: { name: lang, type: text }, backfill: \"'en'\" }\n  - drop_column: { table: comments, column: legacy_score }\n";
    let p = expand(&plan::parse(yaml, "x.yaml", "x").unwrap(), &story(PG15));
    check_invariants(&p);
    let backfill = &p.phases[p.phase_index(PhaseKind::Backfill).unwrap()];
    assert!(
        matches!(backfill.steps[0].action, Action::Backfill(_)),
        "backfill before the index on it"
    );
    assert!(matches!(
        backfill.steps[1].action,
        Action::CreateIndexConcurrently { .. }
    ));
    // one gate after expand for both columns, and the warning that contract's DROP
    // COLUMN changes the row type
    let gate = p.phases[0].gate.as_ref().unwrap();
    assert_eq!(gate.items.len(), 2, "{gate:#?}");
    assert_eq!(gate.warnings.len(), 1, "{gate:#?}");
    assert!(gate.warnings[0]
        .starts_with("the next phases change the row type of comments (in contract)"));
    insta::assert_snapshot!("shared_phases", report::plan_text(&p));
}

#[test]
fn constraint_plans() {
    for (file, snap) in [
        ("set-comments-author-not-null.yaml", "set_not_null"),
        ("add-check-comments-contents-length.yaml", "add_check"),
        ("add-foreign-key-comments-post.yaml", "add_foreign_key"),
    ] {
        let p = expand(&example(file).plan, &story(PG15));
        check_invariants(&p);
        insta::assert_snapshot!(snap, report::plan_text(&p));
    }
    // PostgreSQL 18 declares NOT NULL NOT VALID and validates it
    let p = expand(
        &example("set-comments-author-not-null.yaml").plan,
        &story(180000),
    );
    let sql = p.phases[1]
        .steps
        .iter()
        .map(|s| s.display_sql())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(sql.contains("NOT NULL author_name NOT VALID"), "{sql}");
    // an existing index on the referencing columns is used
    let mut cat = story(PG15);
    let q = QualifiedName::new("public", "comments");
    cat.tables
        .get_mut("public.comments")
        .unwrap()
        .indexes
        .push(index(
            &q,
            "comments_post_created_idx",
            &["post_id", "created_at"],
            false,
            None,
        ));
    let p = expand(&example("add-foreign-key-comments-post.yaml").plan, &cat);
    assert!(p.phases[0]
        .steps
        .iter()
        .all(|s| !matches!(s.action, Action::CreateIndexConcurrently { .. })));
}

#[test]
fn column_option_plans() {
    for (file, snap) in [
        ("drop-comments-legacy-score-not-null.yaml", "drop_not_null"),
        ("set-default-comments-author.yaml", "set_default"),
        ("drop-default-comments-created-at.yaml", "drop_default"),
        ("add-unique-posts-title.yaml", "add_unique"),
    ] {
        let p = expand(&example(file).plan, &story(PG15));
        check_invariants(&p);
        insta::assert_snapshot!(snap, report::plan_text(&p));
    }
    let cat = story(PG15);
    let p = refuse(
        "changes:\n  - drop_default: { table: comments, column: contents }\n",
        &cat,
    );
    assert!(p[0].message.contains("has no default"), "{p:?}");
    let p = refuse(
        "changes:\n  - drop_not_null: { table: comments, column: author_name }\n",
        &cat,
    );
    assert!(p[0].message.contains("already nullable"), "{p:?}");
    let p = refuse(
        "changes:\n  - drop_not_null: { table: comments, column: id }\n",
        &cat,
    );
    assert!(p[0].message.contains("primary key"), "{p:?}");
    let p = refuse(
        "changes:\n  - add_unique: { table: posts, name: posts_pkey, columns: [nope] }\n",
        &cat,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    let p = refuse(
        "changes:\n  - set_default: { table: comments, column: nope, default: '1' }\n",
        &cat,
    );
    assert!(p[0].message.contains("no column `nope`"), "{p:?}");
}

#[test]
fn table_plans() {
    let p = expand(
        &example("create-table-comment-reactions.yaml").plan,
        &story(PG15),
    );
    check_invariants(&p);
    insta::assert_snapshot!("create_table", report::plan_text(&p));
    let mut cat = story(PG15);
    let drafts = table("comment_drafts", vec![column("id", "bigint", true, None)]);
    cat.tables.insert(drafts.name.to_string(), drafts);
    let p = expand(&example("drop-table-comment-drafts.yaml").plan, &cat);
    check_invariants(&p);
    assert!(p.phases[0].gate.is_some() && p.phases[1].point_of_no_return);
    insta::assert_snapshot!("drop_table", report::plan_text(&p));
    let e = plan::parse("changes:\n  - create_table: { name: t, columns: [ { name: a, type: int, primary_key: true } ], primary_key: [a] }\n", "x.yaml", "x").unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn a_created_table_comes_before_what_uses_it() {
    // written in the wrong order on purpose
    let yaml = "changes:
  - add_foreign_key: { table: comment_reactions, name: reactions_comment_fkey, columns: [comment_id], references: { table: comments, columns: [id] } }
  - add_unique: { table: comments, name: comments_token_key, columns: [token] }
  - add_column: { table: comments, column: { name: token, type: uuid, default: gen_random_uuid() } }
  - create_table: { name: comment_reactions, columns: [ { name: id, type: bigint, primary_key: true }, { name: comment_id, type: bigint, nullable: false } ] }
";
    let p = expand(&plan::parse(yaml, "x.yaml", "x").unwrap(), &story(PG15));
    check_invariants(&p);
    let expand_sql: Vec<String> = p.phases[0].steps.iter().map(|s| s.display_sql()).collect();
    assert!(
        expand_sql[0].contains("ADD COLUMN IF NOT EXISTS token"),
        "{expand_sql:#?}"
    );
    assert!(
        expand_sql[1].starts_with("CREATE TABLE IF NOT EXISTS public.comment_reactions"),
        "{expand_sql:#?}"
    );
    insta::assert_snapshot!("dependency_order", report::plan_text(&p));
}

#[test]
fn drop_constraint_plan() {
    let mut cat = story(PG15);
    let q = QualifiedName::new("public", "comments");
    let t = cat.tables.get_mut("public.comments").unwrap();
    t.constraints.push(constraint(
        &q,
        "comments_contents_not_empty",
        "c",
        "CHECK (contents <> ''::text)",
        &["contents"],
    ));
    let p = expand(
        &example("drop-constraint-comments-contents-not-empty.yaml").plan,
        &cat,
    );
    check_invariants(&p);
    insta::assert_snapshot!("drop_constraint", report::plan_text(&p));
    let p = refuse(
        "changes:\n  - drop_constraint: { table: comments, name: comments_pkey }\n",
        &cat,
    );
    assert!(p[0].message.contains("primary key"), "{p:?}");
    let p = refuse(
        "changes:\n  - drop_constraint: { table: comments, name: nope }\n",
        &cat,
    );
    assert!(p[0].message.contains("has no constraint `nope`"), "{p:?}");
}

#[test]
fn constraint_refusals() {
    let cat = story(PG15);
    let p = refuse(
        "changes:\n  - set_not_null: { table: comments, column: contents }\n",
        &cat,
    );
    assert!(p[0].message.contains("already NOT NULL"), "{p:?}");
    let p = refuse(
        "changes:\n  - add_check: { table: comments, name: comments_pkey, check: 'true' }\n",
        &cat,
    );
    assert!(
        p[0].message
            .contains("already has a constraint `comments_pkey`"),
        "{p:?}"
    );
    let p = refuse("changes:\n  - add_foreign_key: { table: comments, name: fk, columns: [post_id], references: { table: posts, columns: [title] } }\n", &cat);
    assert!(
        p[0].message
            .contains("no primary key or unique constraint on (title)"),
        "{p:?}"
    );
    let e = plan::parse("changes:\n  - add_foreign_key: { table: c, name: fk, columns: [a, b], references: { table: p, columns: [id] } }\n", "x.yaml", "x").unwrap_err();
    assert!(e.to_string().contains("must pair up"), "{e}");
}

#[test]
fn offline_expansion() {
    for f in [
        "drop-constraint-comments-contents-not-empty.yaml",
        "create-table-comment-reactions.yaml",
        "drop-table-comment-drafts.yaml",
        "drop-comments-legacy-score-not-null.yaml",
        "set-default-comments-author.yaml",
        "drop-default-comments-created-at.yaml",
        "add-unique-posts-title.yaml",
        "set-comments-author-not-null.yaml",
        "add-check-comments-contents-length.yaml",
        "add-foreign-key-comments-post.yaml",
        "add-comments-language.yaml",
        "drop-comments-legacy-score.yaml",
        "add-index-comments-post-created.yaml",
        "drop-index-comments-contents.yaml",
    ] {
        recipe::expand(&example(f).plan, Knowledge::Offline)
            .unwrap_or_else(|p| panic!("{f}: {p:?}"));
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn refusals_point_at_the_yaml() {
    let cat = story(PG15);
    let p = refuse(
        "changes:\n  - add_column: { table: nope, column: { name: a, type: text } }\n",
        &cat,
    );
    assert_eq!((p[0].pos.line, p[0].pos.column), (2, 26), "{p:?}");
    assert!(p[0].message.contains("table `nope` does not exist"));

    let p = refuse("changes:\n  - add_column: { table: comments, column: { name: x, type: bigint, references: { table: posts, column: title } } }\n", &cat);
    assert!(
        p[0].message
            .contains("`posts.title` is neither the primary key nor unique"),
        "{p:?}"
    );

    let p = refuse(
        "changes:\n  - drop_column: { table: comments, column: id }\n",
        &cat,
    );
    assert!(p[0].message.contains("part of the primary key"), "{p:?}");
    assert_eq!((p[0].pos.line, p[0].pos.column), (2, 45));

    let mut viewed = cat.clone();
    viewed
        .tables
        .get_mut("public.comments")
        .unwrap()
        .views
        .push(ViewDependency {
            view: QualifiedName::new("public", "scores"),
            columns: vec!["legacy_score".into()],
        });
    let p = refuse(
        "changes:\n  - drop_column: { table: comments, column: legacy_score }\n",
        &viewed,
    );
    assert!(
        p[0].message
            .contains("view `scores` uses `comments.legacy_score`"),
        "{p:?}"
    );

    let p = refuse("changes:\n  - add_index: { table: comments, name: comments_contents_idx, columns: [nope] }\n", &cat);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].message.contains("already has an index"), "{p:?}");
    assert!(p[1].message.contains("no column `nope`"), "{p:?}");

    let p = refuse("changes:\n  - drop_index: { name: comments_pkey }\n", &cat);
    assert!(
        p[0].message
            .contains("implements constraint `comments_pkey`"),
        "{p:?}"
    );
    let p = refuse("changes:\n  - drop_index: { name: nope_idx }\n", &cat);
    assert!(p[0].message.contains("does not exist"), "{p:?}");
}

#[test]
fn rename_column_refuses_a_column_a_view_uses_and_index_rebuilds_on_14_0_to_14_3() {
    let mut cat = story(PG15);
    cat.tables
        .get_mut("public.comments")
        .unwrap()
        .views
        .push(ViewDependency {
            view: QualifiedName::new("public", "recent"),
            columns: vec!["contents".into()],
        });
    let yaml = "changes:\n  - rename_column: { table: comments, from: contents, to: body }\n";
    let p = refuse(yaml, &cat);
    assert!(
        p[0].message
            .contains("view `recent` uses `comments.contents`"),
        "{p:?}"
    );
    assert_eq!((p[0].pos.line, p[0].pos.column), (2, 45));
    // comments_contents_idx would be rebuilt concurrently
    let p = refuse(yaml, &story(140002));
    assert!(p[0].message.contains("14.4"), "{p:?}");
}

#[test]
fn concurrent_index_builds_are_refused_on_14_0_to_14_3() {
    let yaml = "changes:\n  - add_index: { table: comments, name: comments_post_idx, columns: [post_id] }\n";
    let p = refuse(yaml, &story(140003));
    assert!(p[0].message.contains("14.4"), "{p:?}");
    assert_eq!((p[0].pos.line, p[0].pos.column), (2, 41));
    expand(&plan::parse(yaml, "x.yaml", "x").unwrap(), &story(140004));
    let yaml = "changes:\n  - add_column: { table: comments, column: { name: t, type: text, unique: true } }\n";
    assert!(refuse(yaml, &story(140000))[0].message.contains("14.4"));
}

#[test]
fn load_time_validation() {
    for (yaml, needle) in [
        ("changes:\n  - add_column: { table: t, column: { name: a, type: text, nullable: false } }\n", "neither `default` nor `backfill`"),
        ("changes:\n  - add_column: { table: t, column: { name: a, type: text, default: '1; DROP TABLE t' } }\n", "contains `;`"),
        ("changes:\n  - add_column: { table: t, column: { name: a, type: bigint, references: { table: u, column: id, on_delete: explode } } }\n", "not an ON DELETE action"),
        ("changes:\n  - add_index: { table: t, name: i, columns: [] }\n", "`columns` is empty"),
        ("changes:\n  - add_index: { table: t, name: i, columns: [a], method: fancy }\n", "not an index method"),
        ("changes:\n  - add_column: { table: t, column: { name: a, type: text } }\n  - drop_column: { table: t, column: a }\n", "already changed by the change at line 2"),
    ] {
        let e = plan::parse(yaml, "x.yaml", "x").unwrap_err().to_string();
        assert!(e.starts_with("x.yaml:") && e.contains(needle), "{needle}: {e}");
    }
}

/// The `sql` escape hatch: its parts run as written, flagged, with lint's findings.
#[test]
fn sql_change_plan_is_flagged_with_lint_findings() {
    let f = example("sql-comments-stats-view.yaml");
    let p = recipe::expand(&f.plan, Knowledge::Offline).unwrap();
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::Contract]);
    check_invariants(&p);
    insta::assert_snapshot!("sql_change", report::plan_text(&p));

    // lint's findings become notes (missing-lock-timeout does not apply: pgphase sets it)
    let yaml = "changes:
  - sql:
      expand: ALTER TABLE comments ALTER COLUMN contents SET NOT NULL
      rollback: ALTER TABLE comments ALTER COLUMN contents DROP NOT NULL
      contract: DROP TABLE comment_drafts
";
    let p = recipe::expand(
        &plan::parse(yaml, "x.yaml", "x").unwrap(),
        Knowledge::Offline,
    )
    .unwrap();
    let notes = p.notes.join("\n");
    assert!(notes.contains("[set-not-null]"), "{notes}");
    assert!(notes.contains("[drop-table]"), "{notes}");
    assert!(!notes.contains("missing-lock-timeout"), "{notes}");
    // only a contract: the deploy gate still comes before it
    let yaml = "changes:\n  - sql: { contract: DROP VIEW IF EXISTS v }\n";
    let p = recipe::expand(
        &plan::parse(yaml, "x.yaml", "x").unwrap(),
        Knowledge::Offline,
    )
    .unwrap();
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::Contract]);
    assert!(p.phases[0].steps.is_empty() && p.phases[0].gate.is_some());
}

#[test]
fn sql_change_load_time_validation() {
    for (yaml, needle) in [
        ("changes:\n  - sql: { gate: deploy }\n", "needs `expand`"),
        ("changes:\n  - sql: { expand: CREATE VIEW v AS SELECT 1 }\n", "`expand` needs a `rollback`"),
        ("changes:\n  - sql: { rollback: DROP VIEW v, contract: DROP VIEW w }\n", "there is no `expand`"),
        ("changes:\n  - sql: { expand: CREATE VIEW v AS SELECT 1, rollback: DROP VIEW v, gate: x }\n", "there is no `contract`"),
        ("changes:\n  - sql: { contract: 'CREATE INDEX CONCURRENTLY i ON t (a)' }\n", "CONCURRENTLY cannot run inside a transaction"),
        ("changes:\n  - sql: { contract: 'COMMIT; DROP TABLE t' }\n", "transaction control"),
        ("changes:\n  - sql: { contract: 'VACUUM t' }\n", "cannot run inside a transaction"),
        ("changes:\n  - sql: { contract: '  ' }\n", "no SQL statement"),
        ("changes:\n  - sql: { contract: DROP VIEW v, extra: 1 }\n", "unknown field"),
    ] {
        let e = plan::parse(yaml, "x.yaml", "x").unwrap_err().to_string();
        assert!(e.starts_with("x.yaml:") && e.contains(needle), "{needle}: {e}");
    }
}
fn grant(grantee: Option<&str>, privilege: &str, column: Option<&str>) -> Grant {
    Grant {
        grantee: grantee.map(Into::into),
        privilege: privilege.into(),
        grantable: false,
        column: column.map(Into::into),
    }
}

/// The story's catalog with `comments` as rename_table sees it: owned by `blog_owner`,
/// DML for `blog_api`, SELECT for `reporting` with grant option, two columns for
/// `moderation`.
fn story_relations(version: i32, row_security: bool) -> Catalog {
    let mut cat = story(version);
    let name = QualifiedName::new("public", "comments");
    let mut grants = vec![grant(Some("blog_owner"), "SELECT", None)];
    for p in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
        grants.push(grant(Some("blog_api"), p, None));
    }
    grants.push(Grant {
        grantable: true,
        ..grant(Some("reporting"), "SELECT", None)
    });
    grants.push(grant(Some("moderation"), "SELECT", Some("id")));
    grants.push(grant(Some("moderation"), "SELECT", Some("contents")));
    cat.relations.insert(
        name.to_string(),
        Relation {
            name,
            kind: "r".into(),
            owner: "blog_owner".into(),
            row_security,
            grants,
        },
    );
    cat
}

#[test]
fn rename_table_plan() {
    let file = example("rename-table-comments-to-post-comments.yaml");
    let p = expand(&file.plan, &story_relations(PG15, false));
    check_invariants(&p);
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::Contract]);
    assert!(p.phases[0].gate.is_some());
    let sql = p.phases[0].steps[0].display_sql();
    assert!(!sql.contains("security_invoker"), "{sql}");
    insta::assert_snapshot!("rename_table", report::plan_text(&p));
    // row-level security: security_invoker on 15+ ...
    let mut cat = story_relations(PG15, true);
    cat.relations
        .get_mut("public.comments")
        .unwrap()
        .grants
        .retain(|g| g.column.is_none());
    let p = expand(&file.plan, &cat);
    assert!(p.phases[0].steps[0]
        .display_sql()
        .contains("CREATE VIEW public.comments WITH (security_invoker = true) AS SELECT * FROM public.post_comments;"));
    // ... refused with column-only grants, and on 14
    let yaml = "changes:\n  - rename_table: { from: comments, to: post_comments }\n";
    let e = refuse(yaml, &story_relations(PG15, true));
    assert!(
        e[0].message
            .contains("`moderation` hold only column grants"),
        "{e:?}"
    );
    assert_eq!((e[0].pos.line, e[0].pos.column), (2, 27));
    let e = refuse(yaml, &story_relations(140010, true));
    assert!(
        e[0].message
            .contains("security_invoker views need PostgreSQL 15"),
        "{e:?}"
    );
    // the new name is taken (any relation kind), the old is not a table
    let mut cat = story_relations(PG15, false);
    cat.relations.insert(
        "public.post_comments".into(),
        Relation {
            name: QualifiedName::new("public", "post_comments"),
            kind: "v".into(),
            owner: "x".into(),
            row_security: false,
            grants: Vec::new(),
        },
    );
    let e = refuse(yaml, &cat);
    assert!(
        e[0].message
            .contains("`post_comments` already exists (a view)"),
        "{e:?}"
    );
    assert_eq!(e[0].pos.column, 41);
    let e = refuse(
        "changes:\n  - rename_table: { from: post_comments, to: x }\n",
        &cat,
    );
    assert!(e[0].message.contains("is a view, not a table"), "{e:?}");
}

#[test]
fn rename_table_and_enum_load_time_validation() {
    for (yaml, needle, at) in [
        ("changes:\n  - rename_table: { from: comments, to: archive.comments }\n", "keeps the table in its schema", "x.yaml:2:"),
        ("changes:\n  - rename_table: { from: app.comments, to: post_comments }\n  - add_index: { table: app.comments, name: i, columns: [a] }\n", "renamed by the change at line 2 and changed by the change at line 3", "x.yaml:3:"),
        ("changes:\n  - add_column: { table: post_comments, column: { name: a, type: text } }\n  - rename_table: { from: comments, to: post_comments }\n", "renamed by the change at line 3", "x.yaml:3:"),
        ("changes:\n  - rename_table: { from: comments, to: public.comments }\n", "nothing to rename", "x.yaml:2:"),
        ("changes:\n  - add_enum_value: { type: s, value: a, before: b, after: c }\n", "either `before` or `after`", "x.yaml:2:"),
        ("changes:\n  - add_enum_value: { type: s, value: a, after: a }\n", "next to itself", "x.yaml:2:"),
        ("changes:\n  - add_enum_value: { type: s, value: '' }\n", "cannot be empty", "x.yaml:2:"),
        ("changes:\n  - add_enum_value: { type: s, value: a }\n  - add_enum_value: { type: public.s, value: a }\n", "already added by the change at line 2", "x.yaml:3:"),
    ] {
        let e = plan::parse(yaml, "x.yaml", "x").unwrap_err().to_string();
        assert!(e.starts_with(at) && e.contains(needle), "{needle}: {e}");
    }
    // `to` in the same schema, written qualified or not
    for to in ["comments2", "app.comments2"] {
        let p = plan::parse(
            &format!("changes:\n  - rename_table: {{ from: app.comments, to: {to} }}\n"),
            "x.yaml",
            "x",
        )
        .unwrap();
        let pgphase::plan::Change::RenameTable(rt) = &p.changes[0].value else {
            panic!()
        };
        assert_eq!(rt.to_name(), QualifiedName::new("app", "comments2"));
    }
}

fn with_status_enum(mut cat: Catalog) -> Catalog {
    let name = QualifiedName::new("public", "comment_status");
    cat.types.insert(
        name.to_string(),
        TypeInfo {
            name,
            kind: "e".into(),
            labels: vec!["pending".into(), "published".into(), "hidden".into()],
        },
    );
    cat
}

#[test]
fn add_enum_value_plan() {
    let file = example("add-enum-value-comment-status-flagged.yaml");
    let p = expand(&file.plan, &with_status_enum(story(PG15)));
    check_invariants(&p);
    // the gate sits between adding the value and the end of the plan: a real gate
    assert_eq!(kinds(&p), [PhaseKind::Expand, PhaseKind::SwitchReads]);
    assert!(p.phases[0].gate.is_some() && p.phases[1].gate.is_none());
    assert!(p.phases.iter().all(|ph| !ph.point_of_no_return));
    assert_eq!(
        p.phases[0].steps[0].lock,
        pgphase::program::LockLevel::Exclusive
    );
    insta::assert_snapshot!("add_enum_value", report::plan_text(&p));
    // already in place: accepted (the step is skipped); elsewhere: refused
    let at = |place: &str| {
        format!("changes:\n  - add_enum_value: {{ type: comment_status, value: hidden{place} }}\n")
    };
    let p = expand(
        &plan::parse(&at(""), "x.yaml", "x").unwrap(),
        &with_status_enum(story(PG15)),
    );
    assert!(
        p.notes.iter().any(|n| n.contains("already in")),
        "{:?}",
        p.notes
    );
    let p = expand(
        &plan::parse(&at(", after: published"), "x.yaml", "x").unwrap(),
        &with_status_enum(story(PG15)),
    );
    assert!(
        p.notes.iter().any(|n| n.contains("already in")),
        "{:?}",
        p.notes
    );
    let e = refuse(&at(", before: published"), &with_status_enum(story(PG15)));
    assert!(
        e[0].message.contains("elsewhere than the plan puts it"),
        "{e:?}"
    );
    let e = refuse(
        "changes:\n  - add_enum_value: { type: comment_status, value: x, after: deleted }\n",
        &with_status_enum(story(PG15)),
    );
    assert!(e[0].message.contains("no value 'deleted'"), "{e:?}");
    assert_eq!((e[0].pos.line, e[0].pos.column), (2, 62));
    let e = refuse(
        "changes:\n  - add_enum_value: { type: mood, value: x }\n",
        &with_status_enum(story(PG15)),
    );
    assert!(e[0].message.contains("type `mood` does not exist"), "{e:?}");
}
