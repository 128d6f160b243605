//! The expanded plan, as `pgphase plan` prints it, for hand-built catalogs: no server.
//!
//! Snapshots live in tests/snapshots/. After an intended change to the SQL a recipe
//! generates, regenerate them with `INSTA_UPDATE=always cargo test --test plan_snapshots`
//! and read the diff: every statement in these files runs against production tables.
//!
//! The refusal tests at the end assert on the message and the YAML position instead.

use std::collections::BTreeMap;
use std::path::Path;

use pgphase::catalog::{Catalog, Column, Constraint, Index, Table};
use pgphase::plan::{self, PlanFile};
use pgphase::program::{Action, PhaseKind, Program};
use pgphase::recipe::{self, Knowledge, Precondition};
use pgphase::report;
use pgphase::sql::QualifiedName;

const PG15: i32 = 150004;
const PG18: i32 = 180000;

// ---------------------------------------------------------------- catalog builders

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

/// A key part as `pg_get_indexdef(oid, k, true)` deparses it: quoted when needed.
fn key_part(col: &str) -> String {
    pgphase::sql::quote_ident(col)
}

fn primary_key(table: &QualifiedName, cols: &[&str]) -> (Index, Constraint) {
    let name = format!("{}_pkey", table.name.as_str());
    let parts: Vec<String> = cols.iter().map(|c| key_part(c)).collect();
    let index = Index {
        name: name.clone(),
        unique: true,
        primary: true,
        valid: true,
        method: "btree".into(),
        key_parts: parts.clone(),
        include: Vec::new(),
        predicate: None,
        columns: cols.iter().map(|c| c.to_string()).collect(),
        constraint: Some(name.clone()),
        definition: format!(
            "CREATE UNIQUE INDEX {} ON {table} USING btree ({})",
            key_part(&name),
            parts.join(", ")
        ),
    };
    let constraint = Constraint {
        name,
        kind: "p".into(),
        definition: format!("PRIMARY KEY ({})", parts.join(", ")),
        columns: cols.iter().map(|c| c.to_string()).collect(),
        validated: true,
        table: table.clone(),
    };
    (index, constraint)
}

fn table(name: &QualifiedName, columns: Vec<Column>, pk: Option<&[&str]>) -> Table {
    let mut t = Table {
        name: name.clone(),
        columns,
        primary_key: None,
        unique_not_null_keys: Vec::new(),
        indexes: Vec::new(),
        constraints: Vec::new(),
        referenced_by: Vec::new(),
        triggers: Vec::new(),
        estimated_rows: 50_000,
        views: Vec::new(),
        kind: "r".into(),
        persistence: "p".into(),
        ..Default::default()
    };
    if let Some(cols) = pk {
        let (i, c) = primary_key(name, cols);
        t.primary_key = Some(cols.iter().map(|c| c.to_string()).collect());
        t.indexes.push(i);
        t.constraints.push(c);
    }
    t
}

/// The story's table, as `Catalog::load` sees it after `workload::create_comments_table`.
fn story_comments() -> Table {
    let name = QualifiedName::new("public", "comments");
    table(
        &name,
        vec![
            column(
                "id",
                "bigint",
                true,
                Some("nextval('comments_id_seq'::regclass)"),
            ),
            column("post_id", "bigint", true, None),
            column("user_id", "bigint", true, None),
            column("contents", "text", true, None),
            column(
                "created_at",
                "timestamp with time zone",
                true,
                Some("now()"),
            ),
        ],
        Some(&["id"]),
    )
}

fn catalog(version: i32, tables: Vec<Table>) -> Catalog {
    Catalog {
        server_version_num: version,
        tables: tables
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- plan helpers

const STORY_PLAN: &str = "plans/rename-comments-contents-to-body.yaml";

fn story_plan_file() -> PlanFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(STORY_PLAN);
    PlanFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn parse(yaml: &str) -> plan::Plan {
    plan::parse(yaml, "plans/x.yaml", "x").unwrap_or_else(|e| panic!("{e}"))
}

/// A one-change rename plan; the change is on line 4.
fn rename_yaml(table: &str, from: &str, to: &str) -> String {
    format!(
        "name: snap\nsettings: {{ lock_timeout: 2s, backfill: {{ batch_size: 500 }} }}\nchanges:\n  - rename_column: {{ table: '{table}', from: '{from}', to: '{to}' }}\n"
    )
}

fn expand(plan: &plan::Plan, cat: &Catalog) -> Program {
    recipe::expand(plan, Knowledge::Live(cat)).unwrap_or_else(|p| panic!("refused: {p:#?}"))
}

fn refuse(yaml: &str, cat: &Catalog) -> Vec<Precondition> {
    match recipe::expand(&parse(yaml), Knowledge::Live(cat)) {
        Ok(p) => panic!(
            "expected a refusal, got a program:\n{}",
            report::plan_text(&p)
        ),
        Err(problems) => problems,
    }
}

/// 1-based (line, column) of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (u64, u64) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() as u64 + 1;
    let column = (at - before.rfind('\n').map(|i| i + 1).unwrap_or(0)) as u64 + 1;
    (line, column)
}

fn steps_of(p: &Program, kind: PhaseKind) -> Vec<String> {
    let i = p
        .phase_index(kind)
        .unwrap_or_else(|| panic!("no {kind} phase"));
    p.phases[i].steps.iter().map(|s| s.display_sql()).collect()
}

fn rollback_of(p: &Program, kind: PhaseKind) -> Vec<String> {
    let i = p
        .phase_index(kind)
        .unwrap_or_else(|| panic!("no {kind} phase"));
    p.phases[i]
        .rollback
        .iter()
        .map(|s| s.display_sql())
        .collect()
}

/// Structural checks every expansion must pass, whatever the snapshot says.
fn check_invariants(p: &Program) {
    let kinds: Vec<PhaseKind> = p.phases.iter().map(|ph| ph.kind).collect();
    assert_eq!(kinds, PhaseKind::ALL.to_vec(), "five phases in order");
    let gated: Vec<PhaseKind> = p
        .phases
        .iter()
        .filter(|ph| ph.gate.is_some())
        .map(|ph| ph.kind)
        .collect();
    assert_eq!(gated, vec![PhaseKind::Backfill, PhaseKind::SwitchReads]);
    for ph in &p.phases {
        assert_eq!(ph.point_of_no_return, ph.kind == PhaseKind::Contract);
        for st in ph.steps.iter().chain(&ph.rollback) {
            let sql = st.display_sql();
            match &st.action {
                Action::CreateIndexConcurrently { .. } | Action::DropIndexConcurrently { .. } => {
                    assert!(sql.contains("CONCURRENTLY"), "{sql}");
                    assert!(!st.runs_in_transaction(), "{sql}");
                }
                _ => {
                    assert!(st.runs_in_transaction(), "{sql}");
                    assert!(!sql.contains("CONCURRENTLY"), "{sql}");
                }
            }
            if sql.contains(" NOT VALID") {
                assert!(sql.starts_with("ALTER TABLE"), "{sql}");
            }
        }
    }
    // What expand and dual_write create has an undo step.
    for kind in [PhaseKind::Expand, PhaseKind::DualWrite] {
        let i = p.phase_index(kind).unwrap();
        assert!(
            !p.phases[i].rollback.is_empty(),
            "{kind} has no rollback steps"
        );
    }
}

// ---------------------------------------------------------------- snapshots

#[test]
fn story_plan_text() {
    let file = story_plan_file();
    let cat = catalog(PG15, vec![story_comments()]);
    let program = expand(&file.plan, &cat);
    check_invariants(&program);
    // The story's table: NOT NULL carried over through a validated CHECK (PG < 18).
    let backfill = steps_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        backfill.contains("CHECK (body IS NOT NULL) NOT VALID"),
        "{backfill}"
    );
    assert!(
        backfill.contains("ALTER COLUMN body SET NOT NULL"),
        "{backfill}"
    );
    insta::assert_snapshot!("story_plan_text", report::plan_text(&program));
}

#[test]
fn story_plan_json() {
    let file = story_plan_file();
    let cat = catalog(PG15, vec![story_comments()]);
    let program = expand(&file.plan, &cat);
    let json = report::plan_json(&program);
    assert_eq!(json["phases"].as_array().unwrap().len(), 5);
    assert_eq!(json["phases"][4]["point_of_no_return"], true);
    insta::assert_snapshot!(
        "story_plan_json",
        serde_json::to_string_pretty(&json).unwrap()
    );
}

/// `contents` with a default, a collation, an index, a partial unique index whose
/// predicate uses it, a CHECK and a (not validated) foreign key.
fn rich_comments() -> Table {
    let mut t = story_comments();
    let name = t.name.clone();
    {
        let c = t.columns.iter_mut().find(|c| c.name == "contents").unwrap();
        c.default = Some("'n/a'::text".into());
        c.collation = Some("\"C\"".into());
    }
    t.indexes.push(Index {
        name: "comments_contents_idx".into(),
        unique: false,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: vec!["contents".into()],
        include: Vec::new(),
        predicate: None,
        columns: vec!["contents".into()],
        constraint: None,
        definition: "CREATE INDEX comments_contents_idx ON public.comments USING btree (contents)"
            .into(),
    });
    t.indexes.push(Index {
        name: "comments_one_visible_per_user".into(),
        unique: true,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: vec!["post_id".into(), "user_id".into()],
        include: Vec::new(),
        predicate: Some("(contents <> 'contents'::text)".into()),
        columns: vec!["contents".into(), "post_id".into(), "user_id".into()],
        constraint: None,
        definition: "CREATE UNIQUE INDEX comments_one_visible_per_user ON public.comments USING btree (post_id, user_id) WHERE (contents <> 'contents'::text)".into(),
    });
    t.constraints.push(Constraint {
        name: "contents_not_empty".into(),
        kind: "c".into(),
        definition: "CHECK (length(contents) > 0)".into(),
        columns: vec!["contents".into()],
        validated: true,
        table: name.clone(),
    });
    t.constraints.push(Constraint {
        name: "comments_contents_fkey".into(),
        kind: "f".into(),
        definition: "FOREIGN KEY (contents) REFERENCES tags(name)".into(),
        columns: vec!["contents".into()],
        validated: true,
        table: name,
    });
    t
}

#[test]
fn carry_over_default_collation_indexes_and_constraints() {
    let file = story_plan_file();
    let cat = catalog(PG15, vec![rich_comments()]);
    let program = expand(&file.plan, &cat);
    check_invariants(&program);

    let expand_sql = steps_of(&program, PhaseKind::Expand).join("\n");
    assert!(
        expand_sql.contains("ADD COLUMN IF NOT EXISTS body text COLLATE \"C\";"),
        "{expand_sql}"
    );
    assert!(
        !expand_sql.contains("DEFAULT"),
        "no default before contract: {expand_sql}"
    );

    let backfill = steps_of(&program, PhaseKind::Backfill);
    let all = backfill.join("\n");
    for expected in [
        "CREATE INDEX CONCURRENTLY comments_body_idx ON public.comments USING btree (body);",
        "CREATE UNIQUE INDEX CONCURRENTLY comments_one_visible_per_user_body ON public.comments USING btree (post_id, user_id) WHERE (body <> 'contents'::text);",
        "ADD CONSTRAINT body_not_empty CHECK (length(body) > 0) NOT VALID;",
        "VALIDATE CONSTRAINT body_not_empty;",
        "ADD CONSTRAINT comments_body_fkey FOREIGN KEY (body) REFERENCES tags(name) NOT VALID;",
        "VALIDATE CONSTRAINT comments_body_fkey;",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
    // NOT VALID comes before its VALIDATE.
    let pos = |needle: &str| backfill.iter().position(|s| s.contains(needle)).unwrap();
    assert!(pos("body_not_empty CHECK") < pos("VALIDATE CONSTRAINT body_not_empty"));
    assert!(pos("comments_body_fkey FOREIGN KEY") < pos("VALIDATE CONSTRAINT comments_body_fkey"));

    let rollback = rollback_of(&program, PhaseKind::Backfill).join("\n");
    for expected in [
        "DROP INDEX CONCURRENTLY IF EXISTS public.comments_body_idx;",
        "DROP INDEX CONCURRENTLY IF EXISTS public.comments_one_visible_per_user_body;",
        "DROP CONSTRAINT IF EXISTS body_not_empty;",
        "DROP CONSTRAINT IF EXISTS comments_body_fkey;",
    ] {
        assert!(
            rollback.contains(expected),
            "missing `{expected}` in:\n{rollback}"
        );
    }

    // The default moves to the new column only in contract, after the old one is gone.
    let contract = steps_of(&program, PhaseKind::Contract).join("\n");
    let drop = contract.find("DROP COLUMN IF EXISTS contents").unwrap();
    let default = contract
        .find("ALTER COLUMN body SET DEFAULT 'n/a'::text;")
        .unwrap();
    assert!(drop < default, "{contract}");

    insta::assert_snapshot!("carry_over", report::plan_text(&program));
}

/// A foreign key that was added NOT VALID and never validated is carried over the same
/// way: no VALIDATE step (it could fail on rows the original never checked).
#[test]
fn not_validated_foreign_key_stays_not_validated() {
    let mut t = rich_comments();
    let fk = t
        .constraints
        .iter_mut()
        .find(|c| c.name == "comments_contents_fkey")
        .unwrap();
    fk.validated = false;
    fk.definition = "FOREIGN KEY (contents) REFERENCES tags(name) NOT VALID".into();
    let program = expand(&story_plan_file().plan, &catalog(PG15, vec![t]));
    let all = steps_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        all.contains(
            "ADD CONSTRAINT comments_body_fkey FOREIGN KEY (body) REFERENCES tags(name) NOT VALID;"
        ),
        "{all}"
    );
    assert!(!all.contains("NOT VALID NOT VALID"), "{all}");
    assert!(
        !all.contains("VALIDATE CONSTRAINT comments_body_fkey"),
        "{all}"
    );
}

#[test]
fn composite_primary_key_pages_by_row_comparison() {
    let name = QualifiedName::new("public", "comments");
    let t = table(
        &name,
        vec![
            column("tenant_id", "integer", true, None),
            column("id", "bigint", true, None),
            column("contents", "text", false, None),
        ],
        Some(&["tenant_id", "id"]),
    );
    let program = expand(&story_plan_file().plan, &catalog(PG15, vec![t]));
    check_invariants(&program);
    let backfill = steps_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        backfill.contains(
            "WHERE (tenant_id, id) > (CAST(convert_from($1::bytea, getdatabaseencoding()) AS integer), CAST(convert_from($2::bytea, getdatabaseencoding()) AS bigint))"
        ),
        "{backfill}"
    );
    assert!(
        backfill.contains("ORDER BY tenant_id, id LIMIT 1 OFFSET $3::int8 - 1"),
        "{backfill}"
    );
    assert!(
        backfill.contains(
            "AND (tenant_id, id) <= (CAST(convert_from($3::bytea, getdatabaseencoding()) AS integer), CAST(convert_from($4::bytea, getdatabaseencoding()) AS bigint))"
        ),
        "{backfill}"
    );
    // A nullable column: no NOT NULL carry-over at all.
    assert!(!backfill.contains("NOT NULL"), "{backfill}");
    insta::assert_snapshot!("composite_primary_key", report::plan_text(&program));
}

#[test]
fn hostile_identifiers_are_quoted() {
    let name = QualifiedName::new("App Data", "Comments");
    let mut t = table(
        &name,
        vec![
            column("Id", "integer", true, None),
            column("Contents", "text", true, None),
        ],
        Some(&["Id"]),
    );
    t.indexes.push(Index {
        name: "Comments_Contents_idx".into(),
        unique: false,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: vec!["\"Contents\"".into()],
        include: Vec::new(),
        predicate: None,
        columns: vec!["Contents".into()],
        constraint: None,
        definition: "CREATE INDEX \"Comments_Contents_idx\" ON \"App Data\".\"Comments\" USING btree (\"Contents\")".into(),
    });
    t.constraints.push(Constraint {
        name: "Contents it's long enough".into(),
        kind: "c".into(),
        definition: "CHECK (length(\"Contents\") > 3)".into(),
        columns: vec!["Contents".into()],
        validated: true,
        table: name.clone(),
    });
    let cat = catalog(PG15, vec![t]);
    assert!(cat.tables.contains_key("\"App Data\".\"Comments\""));
    let yaml = "name: hostile\nchanges:\n  - rename_column: { table: '\"App Data\".\"Comments\"', from: Contents, to: select }\n";
    let program = expand(&parse(yaml), &cat);
    check_invariants(&program);
    let text = report::plan_text(&program);
    for expected in [
        "ALTER TABLE \"App Data\".\"Comments\" ADD COLUMN IF NOT EXISTS \"select\" text;",
        "NEW.\"select\" := NEW.\"Contents\";",
        "ON \"App Data\".\"Comments\" FOR EACH ROW EXECUTE FUNCTION",
        "SELECT convert_to(pgphase_k0::text, getdatabaseencoding()) FROM (SELECT \"Id\" AS pgphase_k0 FROM \"App Data\".\"Comments\" WHERE \"Id\" > CAST(convert_from($1::bytea, getdatabaseencoding()) AS integer) ORDER BY \"Id\"",
        "SET \"select\" = \"Contents\"",
        "CHECK (\"select\" IS NOT NULL) NOT VALID;",
        "CREATE INDEX CONCURRENTLY \"Comments_select_idx\" ON \"App Data\".\"Comments\" USING btree (\"select\");",
        "DROP INDEX CONCURRENTLY IF EXISTS \"App Data\".\"Comments_select_idx\";",
        "ADD CONSTRAINT \"select it's long enough\" CHECK (length(\"select\") > 3) NOT VALID;",
        "ALTER TABLE \"App Data\".\"Comments\" DROP COLUMN IF EXISTS \"Contents\";",
        "WHERE \"select\" IS DISTINCT FROM \"Contents\";",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // The idempotence probes (not shown by `plan`) quote the name as a literal.
    let skips: Vec<String> = program
        .phases
        .iter()
        .flat_map(|ph| &ph.steps)
        .filter_map(|st| match &st.action {
            Action::Sql {
                skip_if: Some(q), ..
            } => Some(q.clone()),
            _ => None,
        })
        .collect();
    assert!(!skips.is_empty());
    for q in &skips {
        assert!(q.contains("'\"App Data\".\"Comments\"'::regclass"), "{q}");
    }
    assert!(
        skips
            .iter()
            .any(|q| q.contains("conname = 'select it''s long enough'")),
        "{skips:#?}"
    );
    // Every step's SQL must name the table only in its quoted, qualified form.
    for ph in &program.phases {
        for st in ph.steps.iter().chain(&ph.rollback) {
            let sql = st.display_sql();
            assert!(
                !sql.contains(" App Data")
                    && !sql.contains(" Comments ")
                    && !sql.contains("public."),
                "unquoted or wrongly qualified name in:\n{sql}"
            );
        }
    }
    insta::assert_snapshot!("hostile_identifiers", text);
}

#[test]
fn postgres_18_declares_not_null_not_valid() {
    let program = expand(
        &story_plan_file().plan,
        &catalog(PG18, vec![story_comments()]),
    );
    check_invariants(&program);
    let backfill = steps_of(&program, PhaseKind::Backfill);
    let all = backfill.join("\n");
    let add = backfill
        .iter()
        .position(|s| s.contains(" NOT NULL body NOT VALID;"))
        .unwrap_or_else(|| panic!("{all}"));
    let validate = backfill
        .iter()
        // named as PostgreSQL names NOT NULL constraints: it stays the column's own
        .position(|s| s.contains("VALIDATE CONSTRAINT comments_body_not_null;"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(add < validate);
    // No CHECK detour and no SET NOT NULL on 18.
    assert!(!all.contains("IS NOT NULL) NOT VALID"), "{all}");
    assert!(!all.contains("SET NOT NULL"), "{all}");
    let rollback = rollback_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        rollback.contains("ALTER COLUMN body DROP NOT NULL"),
        "{rollback}"
    );
    insta::assert_snapshot!("postgres_18", report::plan_text(&program));
}

#[test]
fn type_without_equality_compares_as_text() {
    let mut t = story_comments();
    {
        let c = t.columns.iter_mut().find(|c| c.name == "contents").unwrap();
        c.type_sql = "json".into();
        c.has_equality = false;
    }
    let program = expand(&story_plan_file().plan, &catalog(PG15, vec![t]));
    check_invariants(&program);
    let text = report::plan_text(&program);
    for expected in [
        "ADD COLUMN IF NOT EXISTS body json;",
        "ELSIF (NEW.body)::text IS DISTINCT FROM (OLD.body)::text THEN",
        "(NEW.contents)::text IS DISTINCT FROM (OLD.contents)::text OR (NEW.body)::text IS DISTINCT FROM (NEW.contents)::text",
        "AND ((body)::text IS DISTINCT FROM (contents)::text)",
        "WHERE (body)::text IS DISTINCT FROM (contents)::text;",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // No bare json comparison anywhere (json has no `=` operator).
    assert!(!text.contains("NEW.body IS DISTINCT"), "{text}");
    insta::assert_snapshot!("json_column", text);
}

#[test]
fn offline_expansion_shows_the_shape() {
    let file = story_plan_file();
    let program = recipe::expand(&file.plan, Knowledge::Offline).expect("offline never refuses");
    let kinds: Vec<PhaseKind> = program.phases.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, PhaseKind::ALL.to_vec());
    assert!(
        program.notes[0].starts_with("expanded offline"),
        "{:?}",
        program.notes
    );
    // Nothing is carried over offline: that is decided against the live catalog at start.
    let backfill = steps_of(&program, PhaseKind::Backfill);
    assert_eq!(backfill.len(), 1, "{backfill:#?}");
    insta::assert_snapshot!("offline", report::plan_text(&program));
}

/// Two changes on two tables share the phases and the gates: one deploy per gate.
#[test]
fn two_changes_share_phases_and_gates() {
    let posts = table(
        &QualifiedName::new("public", "posts"),
        vec![
            column("id", "bigint", true, None),
            column("title", "text", false, None),
        ],
        Some(&["id"]),
    );
    let yaml = "name: two\nchanges:\n  - rename_column: { table: comments, from: contents, to: body }\n  - rename_column: { table: posts, from: title, to: headline }\n";
    let program = expand(&parse(yaml), &catalog(PG15, vec![story_comments(), posts]));
    check_invariants(&program);
    let i = program.phase_index(PhaseKind::Backfill).unwrap();
    assert_eq!(program.phases[i].gate.as_ref().unwrap().items.len(), 2);
    // Rollback undoes the later change first.
    let rb = rollback_of(&program, PhaseKind::Expand);
    assert!(rb[0].contains("public.posts"), "{rb:#?}");
    assert!(rb[1].contains("public.comments"), "{rb:#?}");
}

/// A UNIQUE constraint on the column is rebuilt as an index and attached with
/// `ADD CONSTRAINT … UNIQUE USING INDEX`; its undo must drop the constraint before the
/// index, because PostgreSQL refuses to drop an index a constraint requires
/// ("cannot drop index comments_body_key because constraint comments_body_key on
/// table comments requires it").
#[test]
fn unique_constraint_undo_drops_constraint_before_index() {
    let mut t = story_comments();
    let name = t.name.clone();
    t.indexes.push(Index {
        name: "comments_contents_key".into(),
        unique: true,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: vec!["contents".into()],
        include: Vec::new(),
        predicate: None,
        columns: vec!["contents".into()],
        constraint: Some("comments_contents_key".into()),
        definition:
            "CREATE UNIQUE INDEX comments_contents_key ON public.comments USING btree (contents)"
                .into(),
    });
    t.constraints.push(Constraint {
        name: "comments_contents_key".into(),
        kind: "u".into(),
        definition: "UNIQUE (contents)".into(),
        columns: vec!["contents".into()],
        validated: true,
        table: name,
    });
    let program = expand(&story_plan_file().plan, &catalog(PG15, vec![t]));
    let steps = steps_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        steps.contains("ADD CONSTRAINT comments_body_key UNIQUE USING INDEX comments_body_key;"),
        "{steps}"
    );
    let rb = rollback_of(&program, PhaseKind::Backfill);
    let drop_constraint = rb
        .iter()
        .position(|s| s.contains("DROP CONSTRAINT IF EXISTS comments_body_key"))
        .unwrap();
    let drop_index = rb
        .iter()
        .position(|s| s.contains("DROP INDEX CONCURRENTLY IF EXISTS public.comments_body_key"))
        .unwrap();
    assert!(drop_constraint < drop_index, "{rb:#?}");
}

// ---------------------------------------------------------------- refusals

fn only(problems: &[Precondition]) -> &Precondition {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    &problems[0]
}

#[test]
fn refuses_a_missing_table() {
    let yaml = rename_yaml("comentz", "contents", "body");
    let p = refuse(&yaml, &catalog(PG15, vec![story_comments()]));
    let p = only(&p);
    assert!(
        p.message.contains("table `comentz` does not exist"),
        "{}",
        p.message
    );
    let (line, column) = position_of(&yaml, "'comentz'");
    assert_eq!((p.pos.line, p.pos.column), (line, column));
    assert_eq!(line, 4);
}

#[test]
fn refuses_a_missing_column_and_lists_the_columns() {
    let yaml = rename_yaml("comments", "content", "body");
    let p = refuse(&yaml, &catalog(PG15, vec![story_comments()]));
    let p = only(&p);
    assert_eq!(
        p.message,
        "`comments` has no column `content`; its columns are: id, post_id, user_id, contents, created_at"
    );
    assert_eq!((p.pos.line, p.pos.column), position_of(&yaml, "'content'"));
}

#[test]
fn refuses_when_the_target_column_exists() {
    let mut t = story_comments();
    t.columns.push(column("body", "text", false, None));
    let yaml = rename_yaml("comments", "contents", "body");
    let p = refuse(&yaml, &catalog(PG15, vec![t]));
    let p = only(&p);
    assert!(
        p.message.contains("`comments` already has a column `body`"),
        "{}",
        p.message
    );
    assert_eq!((p.pos.line, p.pos.column), position_of(&yaml, "'body'"));
}

#[test]
fn refuses_a_table_without_a_usable_key() {
    let name = QualifiedName::new("public", "comments");
    // A unique index on a nullable column is no key to page by.
    let mut t = table(
        &name,
        vec![
            column("id", "bigint", false, None),
            column("contents", "text", true, None),
        ],
        None,
    );
    t.indexes.push(Index {
        name: "comments_id_key".into(),
        unique: true,
        primary: false,
        valid: true,
        method: "btree".into(),
        key_parts: vec!["id".into()],
        include: Vec::new(),
        predicate: None,
        columns: vec!["id".into()],
        constraint: None,
        definition: "CREATE UNIQUE INDEX comments_id_key ON public.comments USING btree (id)"
            .into(),
    });
    let yaml = rename_yaml("comments", "contents", "body");
    let p = refuse(&yaml, &catalog(PG15, vec![t.clone()]));
    let p = only(&p);
    assert!(
        p.message
            .contains("no primary key or unique NOT NULL key to page the backfill by"),
        "{}",
        p.message
    );
    assert_eq!((p.pos.line, p.pos.column), position_of(&yaml, "'comments'"));

    // …while a unique NOT NULL key is enough.
    t.unique_not_null_keys = vec![vec!["id".into()]];
    t.columns[0].not_null = true;
    let program = expand(&parse(&yaml), &catalog(PG15, vec![t]));
    let backfill = steps_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        backfill
            .contains("WHERE id > CAST(convert_from($1::bytea, getdatabaseencoding()) AS bigint)"),
        "{backfill}"
    );
}

#[test]
fn refuses_renaming_a_primary_key_column() {
    let yaml = rename_yaml("comments", "id", "comment_id");
    let p = refuse(&yaml, &catalog(PG15, vec![story_comments()]));
    let p = only(&p);
    assert!(
        p.message.contains("`id` is part of the key of `comments`"),
        "{}",
        p.message
    );
    assert_eq!((p.pos.line, p.pos.column), position_of(&yaml, "'id'"));
}

#[test]
fn refuses_a_column_referenced_by_another_tables_foreign_key() {
    let mut t = story_comments();
    t.referenced_by.push(Constraint {
        name: "quotes_text_fkey".into(),
        kind: "f".into(),
        definition: "FOREIGN KEY (text) REFERENCES comments(contents)".into(),
        // for referenced_by, the referenced columns (of this table)
        columns: vec!["contents".into()],
        validated: true,
        table: QualifiedName::new("archive", "quotes"),
    });
    let yaml = rename_yaml("comments", "contents", "body");
    let p = refuse(&yaml, &catalog(PG15, vec![t]));
    let p = only(&p);
    assert_eq!(
        p.message,
        "foreign key `quotes_text_fkey` on `archive.quotes` references `comments.contents`; drop it first and re-add it on `body` afterwards"
    );
    assert_eq!((p.pos.line, p.pos.column), position_of(&yaml, "'contents'"));
}

#[test]
fn reports_every_problem_at_once_with_its_own_position() {
    // The target exists AND there is no key: both reported, each at its own value.
    let name = QualifiedName::new("public", "comments");
    let t = table(
        &name,
        vec![
            column("contents", "text", false, None),
            column("body", "text", false, None),
        ],
        None,
    );
    let yaml = "name: snap\nchanges:\n  - rename_column:\n      table: comments\n      from: contents\n      to: body\n";
    let problems = refuse(yaml, &catalog(PG15, vec![t]));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let lines: Vec<u64> = problems.iter().map(|p| p.pos.line).collect();
    assert!(lines.contains(&6), "`to` is on line 6: {problems:#?}");
    assert!(lines.contains(&4), "`table` is on line 4: {problems:#?}");
    let to = problems.iter().find(|p| p.pos.line == 6).unwrap();
    assert_eq!(to.pos.column, 11, "{to:?}");
    assert!(to.message.contains("already has a column `body`"));
}

/// A name with a line break could end a `--` comment in the sync function and become
/// PL/pgSQL code: control characters are refused when the plan is loaded, at the value.
#[test]
fn a_line_break_in_a_name_is_refused_at_load() {
    let yaml = "name: nl\nchanges:\n  - rename_column: { table: comments, from: contents, to: \"body\\nRAISE EXCEPTION 'injected';\" }\n";
    let err = plan::parse(yaml, "plans/x.yaml", "x").unwrap_err();
    assert_eq!(err.pos.map(|p| p.line), Some(3), "{err}");
    assert!(err.to_string().contains("control character"), "{err}");
}

/// Rolling back after backfill must make `body` nullable again before the dual_write
/// undo removes the trigger that fills it: otherwise, between that step and the expand
/// undo (or for good, if `DROP COLUMN body` then times out on its lock), every INSERT
/// of the old application fails with `null value in column "body" … violates not-null
/// constraint`.
#[test]
fn backfill_undo_makes_the_new_column_nullable_again() {
    let program = expand(
        &story_plan_file().plan,
        &catalog(PG15, vec![story_comments()]),
    );
    let rollback = rollback_of(&program, PhaseKind::Backfill).join("\n");
    assert!(
        rollback.contains("ALTER TABLE public.comments ALTER COLUMN body DROP NOT NULL;"),
        "{rollback}"
    );
}
