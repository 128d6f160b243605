//! Pieces several recipes share: NOT NULL without a long lock, concurrent index builds
//! and drops, catalog probes for idempotent re-runs, server-version checks.

use super::Knowledge;
use crate::catalog::Catalog;
use crate::program::{Action, Contribution, LockLevel, Step};
use crate::sql::{derived_name, quote_literal, Ident, QualifiedName};

/// The server's major version, 0 when expanding offline.
pub(super) fn major(knowledge: Knowledge<'_>) -> i32 {
    match knowledge {
        Knowledge::Live(cat) => cat.major_version(),
        Knowledge::Offline => 0,
    }
}

/// A query that is true when the table has a constraint of that name.
pub(super) fn constraint_exists(table: &QualifiedName, name: &str) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {}::regclass AND conname = {})",
        table.regclass_literal(),
        quote_literal(name)
    )
}

/// A condition that is true when the column exists and is NOT NULL.
fn column_not_null(table: &QualifiedName, column: &Ident) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {} AND attnotnull)",
        table.regclass_literal(),
        quote_literal(column.as_str())
    )
}

/// `CREATE INDEX CONCURRENTLY` is unsafe on PostgreSQL 14.0–14.3 (it can miss rows,
/// fixed in 14.4): the message to refuse with, or None.
pub(super) fn concurrent_index_refusal(cat: &Catalog) -> Option<String> {
    let v = cat.server_version_num;
    (140000..140004).contains(&v).then(|| {
        format!(
            "the server runs PostgreSQL 14.{}: CREATE INDEX CONCURRENTLY can silently corrupt indexes before 14.4; upgrade the server to 14.4 or later first",
            v % 100
        )
    })
}

/// Makes `column` NOT NULL without holding ACCESS EXCLUSIVE during the scan: PG18
/// declares `NOT NULL … NOT VALID` and validates it; earlier versions add a
/// `CHECK (col IS NOT NULL) NOT VALID`, validate it, `SET NOT NULL` (the validated check
/// lets PostgreSQL skip the scan) and drop the check. The undo steps are pushed in
/// creation order (callers that undo several things reverse their list once);
/// `undo` describes the step that makes the column nullable again.
pub(super) fn set_not_null(
    c: &mut Contribution,
    table: &QualifiedName,
    column: &Ident,
    check: &Ident,
    knowledge: Knowledge<'_>,
    undo: String,
) {
    let short = table.display_short();
    if major(knowledge) >= 18 {
        // On 18 this constraint *is* the column's NOT NULL from now on: give it the name
        // PostgreSQL would (`<table>_<column>_not_null`), not a pgphase helper name.
        let check = &Ident::new(derived_name(
            &format!("{}_{}", table.name.as_str(), column.as_str()),
            "_not_null",
        ));
        c.steps.push(
            Step::sql(
                format!(
                    "declare {column} NOT NULL without a scan: NOT VALID, enforced for new writes"
                ),
                table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} ADD CONSTRAINT {check} NOT NULL {column} NOT VALID;"),
            )
            .skip_if(constraint_exists(table, check.as_str())),
        );
        c.steps.push(Step::sql(
            format!("validate NOT NULL on {column} (scans {short}, reads and writes continue)"),
            table,
            LockLevel::ShareUpdateExclusive,
            format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check};"),
        ));
    } else {
        c.steps.push(
            Step::sql(
                format!("add CHECK ({column} IS NOT NULL) NOT VALID: enforced for new writes, no scan"),
                table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID;"),
            )
            .skip_if(format!(
                "SELECT ({}) OR {}",
                constraint_exists(table, check.as_str()),
                column_not_null(table, column)
            )),
        );
        c.steps.push(
            Step::sql(
                format!("validate the check (scans {short}; reads and writes continue)"),
                table,
                LockLevel::ShareUpdateExclusive,
                format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check};"),
            )
            .skip_if(format!(
                "SELECT NOT ({})",
                constraint_exists(table, check.as_str())
            )),
        );
        c.steps.push(Step::sql(
            format!("SET NOT NULL on {column}: the validated check lets PostgreSQL skip the scan"),
            table,
            LockLevel::AccessExclusive,
            format!("ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL;"),
        ));
        c.steps.push(Step::sql(
            "drop the helper check, now redundant",
            table,
            LockLevel::AccessExclusive,
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check};"),
        ));
    }
    c.rollback.push(drop_not_null(table, column, undo));
    c.rollback.push(Step::sql(
        "drop the NOT NULL helper constraint",
        table,
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check};"),
    ));
}

/// `DROP NOT NULL` (catalog only), skipped when the column is already nullable or gone.
pub(super) fn drop_not_null(table: &QualifiedName, column: &Ident, description: String) -> Step {
    Step::sql(
        description,
        table,
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL;"),
    )
    .skip_if(format!(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {} AND attnotnull AND NOT attisdropped)",
        table.regclass_literal(),
        quote_literal(column.as_str())
    ))
}

/// A concurrent index build; `sql` is the full `CREATE … INDEX CONCURRENTLY` statement.
pub(super) fn create_index(
    description: String,
    table: &QualifiedName,
    index: QualifiedName,
    sql: String,
) -> Step {
    Step {
        description,
        action: Action::CreateIndexConcurrently { index, sql },
        lock: LockLevel::ShareUpdateExclusive,
        table: Some(table.clone()),
        changes_row_type: false,
    }
}

/// A concurrent index drop (`IF EXISTS`).
pub(super) fn drop_index(description: String, table: &QualifiedName, index: QualifiedName) -> Step {
    Step {
        description,
        action: Action::DropIndexConcurrently { index },
        lock: LockLevel::ShareUpdateExclusive,
        table: Some(table.clone()),
        changes_row_type: false,
    }
}

/// `DROP CONSTRAINT IF EXISTS` (catalog only).
pub(super) fn drop_constraint(table: &QualifiedName, name: &Ident) -> Step {
    Step::sql(
        format!("drop constraint {name}"),
        table,
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name};"),
    )
}

/// A table missing from the live catalog, as a refusal message.
pub(super) fn missing_table(written: &str) -> String {
    format!(
        "table `{written}` does not exist in the database (check the name and schema; names are case-sensitive)"
    )
}

/// `ADD CONSTRAINT … NOT VALID` (new writes checked, no scan), then `VALIDATE` (scan
/// under SHARE UPDATE EXCLUSIVE); undo drops it.
pub(super) fn add_not_valid_then_validate(
    c: &mut Contribution,
    table: &QualifiedName,
    name: &Ident,
    definition: String,
    what: &str,
    lock: LockLevel,
) {
    c.steps.push(
        Step::sql(
            format!("add {what} {name} NOT VALID (new writes checked, no scan)"),
            table,
            lock,
            format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition} NOT VALID;"),
        )
        .skip_if(constraint_exists(table, name.as_str())),
    );
    c.steps.push(Step::sql(
        format!(
            "validate {name} (scans {}; reads and writes continue)",
            table.display_short()
        ),
        table,
        LockLevel::ShareUpdateExclusive,
        format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name};"),
    ));
    c.rollback.push(drop_constraint(table, name));
}

/// The key a backfill pages by (quoted column, type), or placeholders offline. Recipes
/// that backfill have checked in their preconditions that the table has one.
pub(super) fn backfill_key(t: Option<&crate::catalog::Table>) -> Vec<(String, String)> {
    match t {
        Some(t) => t
            .backfill_key()
            .expect("checked in preconditions")
            .iter()
            .map(|k| {
                let ty = t.column(k).map(|c| c.type_sql.clone()).unwrap_or_default();
                (crate::sql::quote_ident(k), ty)
            })
            .collect(),
        None => vec![("<primary key>".into(), "<its type>".into())],
    }
}
