//! Pieces several recipes share: NOT NULL without a long lock, concurrent index builds
//! and drops, catalog probes for idempotent re-runs, server-version checks.

use crate::catalog::Catalog;
use crate::program::{Action, Contribution, LockLevel, Step};
use crate::recipe::Knowledge;
use crate::sql::{derived_name, quote_ident, quote_literal, Ident, QualifiedName};

/// The server's major version, 0 when expanding offline.
pub(in crate::recipe) fn major(knowledge: Knowledge<'_>) -> i32 {
    match knowledge {
        Knowledge::Live(cat) => cat.major_version(),
        Knowledge::Offline => 0,
    }
}

/// A query that is true when the table has a constraint of that name.
pub(in crate::recipe) fn constraint_exists(table: &QualifiedName, name: &str) -> String {
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
pub(in crate::recipe) fn concurrent_index_refusal(cat: &Catalog) -> Option<String> {
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
pub(in crate::recipe) fn set_not_null(
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
pub(in crate::recipe) fn drop_not_null(
    table: &QualifiedName,
    column: &Ident,
    description: String,
) -> Step {
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
pub(in crate::recipe) fn create_index(
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
pub(in crate::recipe) fn drop_index(
    description: String,
    table: &QualifiedName,
    index: QualifiedName,
) -> Step {
    Step {
        description,
        action: Action::DropIndexConcurrently { index },
        lock: LockLevel::ShareUpdateExclusive,
        table: Some(table.clone()),
        changes_row_type: false,
    }
}

/// `DROP CONSTRAINT IF EXISTS` (catalog only).
pub(in crate::recipe) fn drop_constraint(table: &QualifiedName, name: &Ident) -> Step {
    Step::sql(
        format!("drop constraint {name}"),
        table,
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name};"),
    )
}

/// A table missing from the live catalog, as a refusal message.
pub(in crate::recipe) fn missing_table(written: &str) -> String {
    format!(
        "table `{written}` does not exist in the database (check the name and schema; names are case-sensitive)"
    )
}

/// `ADD CONSTRAINT … NOT VALID` (new writes checked, no scan), then `VALIDATE` (scan
/// under SHARE UPDATE EXCLUSIVE); undo drops it.
pub(in crate::recipe) fn add_not_valid_then_validate(
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
pub(in crate::recipe) fn backfill_key(t: Option<&crate::catalog::Table>) -> Vec<(String, String)> {
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

/// The part of an index definition (`pg_get_indexdef`) after its table: `USING method
/// (keys with opclasses and ordering) [INCLUDE …] [NULLS NOT DISTINCT] [WITH (…)] [WHERE …]`.
pub(in crate::recipe) fn index_tail(definition: &str) -> &str {
    let on = definition.find(" ON ").unwrap_or(0);
    match definition[on..].find(" USING ") {
        Some(i) => definition[on + i + 1..].trim_end_matches(';'),
        None => definition,
    }
}

/// An index to build concurrently: on a partitioned table, where PostgreSQL cannot
/// build one concurrently, one per partition, then the parent index `ON ONLY` with each
/// attached in one short transaction (it becomes valid with the last one).
pub(in crate::recipe) struct IndexBuild<'a> {
    pub table: &'a QualifiedName,
    /// The live table (None offline: a plain build is shown).
    pub live: Option<&'a crate::catalog::Table>,
    pub name: &'a str,
    pub unique: bool,
    /// `USING method (…) …`, see [`index_tail`].
    pub tail: String,
    pub description: String,
}

impl IndexBuild<'_> {
    fn partitions(&self) -> Vec<(QualifiedName, String)> {
        match self.live {
            Some(t) if t.is_partitioned() => t
                .partitions
                .iter()
                .map(|p| {
                    let name = derived_name(&format!("{}_{}", p.name.name.as_str(), self.name), "");
                    (p.name.clone(), name)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
    fn unique_kw(&self) -> &'static str {
        if self.unique {
            "UNIQUE "
        } else {
            ""
        }
    }

    /// The build, as steps in order. `constraint`: attach the index as a UNIQUE
    /// constraint of that name (on a partitioned table: each partition's index as its
    /// partition's constraint, then the parent's constraint, which adopts them).
    pub fn steps(&self, constraint: bool) -> Vec<Step> {
        let index = QualifiedName::new(self.table.schema.as_str(), self.name);
        let n = quote_ident(self.name);
        let parts = self.partitions();
        let table = self.table;
        if parts.is_empty() {
            let mut steps = vec![create_index(
                self.description.clone(),
                table,
                index,
                format!(
                    "CREATE {}INDEX CONCURRENTLY {n} ON {table} {};",
                    self.unique_kw(),
                    self.tail
                ),
            )];
            if constraint {
                steps.push(
                    Step::sql(
                        format!("attach {n} as a UNIQUE constraint (catalog only)"),
                        table,
                        LockLevel::AccessExclusive,
                        format!("ALTER TABLE {table} ADD CONSTRAINT {n} UNIQUE USING INDEX {n};"),
                    )
                    .skip_if(constraint_exists(table, self.name)),
                );
            }
            return steps;
        }
        let mut steps = Vec::new();
        for (p, pname) in &parts {
            let pindex = QualifiedName::new(p.schema.as_str(), pname.clone());
            steps.push(create_index(
                format!(
                    "{} — partition {} (PostgreSQL builds partitioned indexes concurrently only partition by partition)",
                    self.description,
                    p.display_short()
                ),
                p,
                pindex,
                format!(
                    "CREATE {}INDEX CONCURRENTLY {} ON {p} {};",
                    self.unique_kw(),
                    quote_ident(pname),
                    self.tail
                ),
            ));
        }
        if constraint {
            // each partition's index becomes its partition's constraint; the parent's
            // constraint then adopts them (no build, no scan)
            for (p, pname) in &parts {
                let pn = quote_ident(pname);
                steps.push(
                    Step::sql(
                        format!(
                            "attach {pn} as a UNIQUE constraint of partition {} (catalog only)",
                            p.display_short()
                        ),
                        p,
                        LockLevel::AccessExclusive,
                        format!("ALTER TABLE {p} ADD CONSTRAINT {pn} UNIQUE USING INDEX {pn};"),
                    )
                    .skip_if(constraint_exists(p, pname)),
                );
            }
            let cols = self
                .tail
                .find('(')
                .zip(self.tail.find(')'))
                .map(|(a, b)| &self.tail[a..=b])
                .unwrap_or("()");
            steps.push(
                Step::sql(
                    format!("add the UNIQUE constraint {n} to {}: it adopts the partitions' constraints (catalog only)", table.display_short()),
                    table,
                    LockLevel::AccessExclusive,
                    format!("ALTER TABLE {table} ADD CONSTRAINT {n} UNIQUE {cols};"),
                )
                .skip_if(constraint_exists(table, self.name)),
            );
            return steps;
        }
        let mut sql = format!(
            "CREATE {}INDEX IF NOT EXISTS {n} ON ONLY {table} {};",
            self.unique_kw(),
            self.tail
        );
        for (p, pname) in &parts {
            sql.push_str(&format!(
                "\nALTER INDEX {index} ATTACH PARTITION {};",
                QualifiedName::new(p.schema.as_str(), pname.clone())
            ));
        }
        steps.push(
            Step::sql(
                format!(
                    "create {n} on {} ON ONLY and attach the partitions' indexes: valid once all are attached (catalog only, one short transaction)",
                    table.display_short()
                ),
                table,
                LockLevel::AccessExclusive,
                sql,
            )
            .skip_if(format!(
                "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass({}) AND indisvalid)",
                quote_literal(&index.to_string())
            )),
        );
        steps
    }

    /// The undo of [`IndexBuild::steps`], in creation order (callers run their undo
    /// lists reversed).
    pub fn undo(&self, constraint: bool) -> Vec<Step> {
        let index = QualifiedName::new(self.table.schema.as_str(), self.name);
        let n = Ident::new(self.name);
        let parts = self.partitions();
        let mut undo = Vec::new();
        if parts.is_empty() {
            undo.push(drop_index(
                format!("drop index {n} concurrently"),
                self.table,
                index,
            ));
            if constraint {
                undo.push(drop_constraint(self.table, &n));
            }
            return undo;
        }
        for (p, pname) in &parts {
            undo.push(drop_index(
                format!(
                    "drop index {} concurrently (left if never attached)",
                    quote_ident(pname)
                ),
                p,
                QualifiedName::new(p.schema.as_str(), pname.clone()),
            ));
            if constraint {
                undo.push(drop_constraint(p, &Ident::new(pname.clone())));
            }
        }
        undo.push(if constraint {
            drop_constraint(self.table, &n)
        } else {
            drop_partitioned_index(self.table, &index)
        });
        undo
    }
}

/// `DROP INDEX IF EXISTS` of a partitioned index (PostgreSQL cannot drop one
/// concurrently): catalog only, ACCESS EXCLUSIVE on the table and its partitions
/// for a moment, under lock_timeout.
pub(in crate::recipe) fn drop_partitioned_index(
    table: &QualifiedName,
    index: &QualifiedName,
) -> Step {
    Step::sql(
        format!(
            "drop the partitioned index {} with its partitions' indexes (catalog only; PostgreSQL cannot drop it concurrently)",
            index.name
        ),
        table,
        LockLevel::AccessExclusive,
        format!("DROP INDEX IF EXISTS {index};"),
    )
}
