//! `add_column`: add the column nullable (catalog only), give it its default, wait for
//! the application that writes it, backfill existing rows in batches, then add its
//! constraints (NOT VALID → VALIDATE), its unique index (CONCURRENTLY) and NOT NULL
//! (through a validated check). The application reads it once the plan completed.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::{Catalog, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Action, BackfillSpec, Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::QualifiedName;
use crate::sql::{derived_name, quote_ident, Ident};

/// `add_column: { table, column: { name, type, nullable, default, unique, check, references }, backfill }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub table: At<String>,
    pub column: At<NewColumn>,
    /// SQL expression over the row, evaluated for existing rows (batched backfill).
    pub backfill: Option<At<String>>,
}

impl AddColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewColumn {
    pub name: At<String>,
    /// SQL type, passed through as written (`text`, `varchar(20)`, `numeric(10,2)`).
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    /// Defaults to true.
    pub nullable: Option<At<bool>>,
    /// SQL expression, passed through as written.
    pub default: Option<At<String>>,
    #[serde(default)]
    pub unique: bool,
    /// SQL boolean expression, passed through as written.
    pub check: Option<At<String>>,
    pub references: Option<At<References>>,
}

impl NewColumn {
    pub fn nullable(&self) -> bool {
        self.nullable.as_ref().is_none_or(|n| n.value)
    }
}

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct References {
    pub table: At<String>,
    pub column: At<String>,
    /// `cascade`, `restrict`, `no action` (default), `set null`, `set default`.
    pub on_delete: Option<At<String>>,
}

impl References {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    /// The `ON DELETE` action as SQL keywords (validated at load).
    pub fn on_delete_sql(&self) -> &'static str {
        check::on_delete_keywords(
            self.on_delete
                .as_ref()
                .map_or("no action", |o| o.value.as_str()),
        )
        .expect("validated at load")
    }
}

impl ChangeKind for AddColumn {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ac = self;
        QualifiedName::parse(&ac.table).map_err(|m| err(ac.table.pos, m))?;
        let col = &ac.column.value;
        check::check_ident(&col.name).map_err(|m| err(col.name.pos, m))?;
        check::check_sql_text(&col.type_sql, "type").map_err(|m| err(col.type_sql.pos, m))?;
        for (e, what) in [
            (&col.default, "default"),
            (&col.check, "check"),
            (&ac.backfill, "backfill"),
        ] {
            if let Some(e) = e {
                check::check_sql_text(e, what).map_err(|m| err(e.pos, m))?;
            }
        }
        if let Some(r) = &col.references {
            QualifiedName::parse(&r.table).map_err(|m| err(r.table.pos, m))?;
            check::check_ident(&r.column).map_err(|m| err(r.column.pos, m))?;
            if let Some(o) = &r.on_delete {
                if check::on_delete_keywords(o).is_none() {
                    return Err(err(
                                o.pos,
                                format!("`{}` is not an ON DELETE action; use cascade, restrict, no action, set null or set default", o.value),
                            ));
                }
            }
        }
        if !col.nullable() && col.default.is_none() && ac.backfill.is_none() {
            let pos = col.nullable.as_ref().map_or(ac.column.pos, |n| n.pos);
            return Err(err(
                        pos,
                        format!(
                            "`{}` is NOT NULL but has neither `default` nor `backfill`: existing rows would have no value; give one of them (or make it nullable)",
                            col.name.value
                        ),
                    ));
        }
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let ac = self;
        vec![(ac.table_name(), &ac.column.name)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let ac = self;
        let mut t = vec![ac.table_name()];
        if let Some(r) = &ac.column.references {
            t.push(r.table_name());
        }
        t
    }

    fn column_types(&self) -> Vec<String> {
        let ac = self;
        vec![ac.column.type_sql.value.clone()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let ac = self;
        let t = ac.table_name();
        let mut u = vec![footprint::col(&t, &ac.column.name)];
        if let Some(b) = &ac.backfill {
            u.extend(footprint::in_expression(cat, &t, b));
        }
        if let Some(r) = &ac.column.references {
            u.push(footprint::col(&r.table_name(), &r.column));
        }
        u
    }

    fn apply(&self, cat: &mut Catalog) {
        let ac = self;
        let spec = &ac.column.value;
        if let Some(t) = planned::table(cat, &ac.table_name()) {
            if t.column(&spec.name).is_none() {
                t.columns.push(crate::catalog::Column {
                    name: spec.name.value.clone(),
                    type_sql: spec.type_sql.value.trim().to_string(),
                    not_null: !spec.nullable(),
                    default: spec.default.as_ref().map(|d| d.value.trim().to_string()),
                    has_equality: true,
                    ..Default::default()
                });
            }
        };
    }

    fn creates_columns(&self) -> Vec<(QualifiedName, String)> {
        vec![(self.table_name(), self.column.name.value.clone())]
    }

    fn added_column(&self) -> Option<(QualifiedName, String)> {
        Some((self.table_name(), self.column.name.value.clone()))
    }
}

pub(super) fn expand(
    plan: &str,
    batch_size: u32,
    ac: &AddColumn,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ac.table_name();
    let spec = &ac.column.value;
    let col = Ident::new(spec.name.value.clone());
    let short = table.display_short();
    // A constant default is stored once in the catalog and read for every existing row
    // (no rewrite); not when `backfill` gives existing rows their own values.
    let inline_default = spec
        .default
        .as_ref()
        .filter(|d| ac.backfill.is_none() && is_constant(d));
    // Existing rows get `backfill`, else a default that is not inlined.
    let backfill_expr = ac
        .backfill
        .as_ref()
        .or(spec.default.as_ref().filter(|_| inline_default.is_none()));

    let t = match knowledge {
        Knowledge::Live(cat) => Some(check(ac, cat, backfill_expr.is_some())?),
        Knowledge::Offline => None,
    };

    let mut out = RecipeOutput::default();
    if let Some(t) = t {
        out.notes.extend(super::shared::around::publication_note(
            t,
            &format!("`{}`", col.as_str()),
        ));
    }
    let writes_gate = backfill_expr.is_some() || !spec.nullable();

    // 1. expand: catalog-only statements in one short transaction.
    let mut sql = format!(
        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {col} {}",
        spec.type_sql.value.trim()
    );
    let description = match (inline_default, &spec.default) {
        (Some(d), _) => {
            sql.push_str(&format!(" DEFAULT {};", d.value.trim()));
            format!("add {col} to {short}, nullable, with the constant default {} (catalog only: existing rows read it from the catalog)", d.value.trim())
        }
        (None, Some(d)) => {
            sql.push_str(&format!(
                ";\nALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {};",
                d.value.trim()
            ));
            format!("add {col} to {short}, nullable, then set its default {} for new rows (two catalog-only statements: no rewrite of existing rows)", d.value.trim())
        }
        (None, None) => {
            sql.push(';');
            format!("add {col} to {short}, nullable (catalog only)")
        }
    };
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![
                Step::sql(description, &table, LockLevel::AccessExclusive, sql).changes_row_type(),
            ],
            rollback: vec![Step::sql(
                format!("drop {col} from {short}"),
                &table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {col};"),
            )
            .changes_row_type()],
            gate_after: writes_gate.then(|| {
                format!(
                    "deploy the application version that writes `{}` on {short} in every insert{} (the old version must be drained before the next phase{}); it may read the column once existing rows are backfilled, when this plan has completed",
                    col.as_str(),
                    if spec.default.is_some() { " or relies on its default" } else { "" },
                    if spec.nullable() { "" } else { ", which makes it NOT NULL" }
                )
            }),
        },
    ));

    // 2. backfill existing rows, then constraints, index and NOT NULL.
    let mut c = Contribution::default();
    if let Some(expr) = backfill_expr {
        let key = super::shared::common::backfill_key(t);
        c.steps.push(Step {
            description: format!(
                "fill {col} for existing rows with {}, in key order, one short transaction per batch with a checkpoint",
                expr.value.trim()
            ),
            action: Action::Backfill(BackfillSpec {
                table: table.clone(),
                key,
                set: format!("{col} = {}", expr.value.trim()),
                needs_work: format!("{col} IS NULL"),
                batch_size,
            }),
            lock: LockLevel::RowExclusive,
            table: Some(table.clone()),
            changes_row_type: false,
        });
    }
    let tag = object_tag(plan, &[&table.to_string(), col.as_str(), "add_column"]);
    let base = format!("{}_{}", table.name.as_str(), col.as_str());
    if let Some(check) = &spec.check {
        let name = Ident::new(derived_name(&base, "_check"));
        common::add_not_valid_then_validate(
            &mut c,
            &table,
            &name,
            format!("CHECK ({})", check.value.trim()),
            "check",
            LockLevel::AccessExclusive,
        );
    }
    if let Some(r) = &spec.references {
        let name = Ident::new(derived_name(&base, "_fkey"));
        let rt = r.table_name();
        let rc = Ident::new(r.column.value.clone());
        common::add_not_valid_then_validate(
            &mut c,
            &table,
            &name,
            format!(
                "FOREIGN KEY ({col}) REFERENCES {rt} ({rc}) ON DELETE {}",
                r.on_delete_sql()
            ),
            "foreign key",
            LockLevel::ShareRowExclusive,
        );
    }
    if spec.unique {
        let name = derived_name(&base, "_key");
        let build = common::IndexBuild {
            table: &table,
            live: t,
            name: &name,
            unique: true,
            tail: format!("USING btree ({col})"),
            description: format!(
                "build the unique index {} on {col} concurrently (reads and writes continue)",
                quote_ident(&name)
            ),
        };
        c.steps.extend(build.steps(true));
        c.rollback.extend(build.undo(true));
    }
    if !spec.nullable() {
        common::set_not_null(
            &mut c,
            &table,
            &col,
            &Ident::new(format!("pgphase_not_null_{tag}")),
            knowledge,
            format!("make {col} nullable again"),
        );
    }
    c.rollback.reverse();
    if !c.steps.is_empty() {
        out.phases.push((PhaseKind::Backfill, c));
    }
    Ok(out)
}

/// A default that is one constant (a number, a string or boolean literal, NULL, with an
/// optional cast): stored once in the catalog on PostgreSQL 11+, no rewrite. Anything
/// else (`now()`, `gen_random_uuid()`, `nextval(…)`) may be volatile: it is set
/// separately after the column is added, and existing rows are backfilled with it.
fn is_constant(default: &str) -> bool {
    let d = default.trim();
    let body = match d.find("::") {
        Some(i) if !d[..i].contains('\'') || d[..i].ends_with('\'') => &d[..i],
        _ => d,
    };
    let cast_ok = d.get(body.len()..).is_none_or(|cast| {
        cast.is_empty()
            || cast[2..].chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ',' | '[' | ']')
            })
    });
    let b = body.trim();
    let literal = b.parse::<f64>().is_ok()
        || matches!(b.to_ascii_lowercase().as_str(), "true" | "false" | "null")
        || (b.len() >= 2
            && b.starts_with('\'')
            && b.ends_with('\'')
            && !b[1..b.len() - 1].replace("''", "").contains('\''));
    literal && cast_ok
}

fn check<'a>(
    ac: &AddColumn,
    cat: &'a Catalog,
    backfill: bool,
) -> Result<&'a Table, Vec<Precondition>> {
    let p = |pos: Pos, message: String| vec![Precondition { pos, message }];
    let table = ac.table_name();
    let Some(t) = cat.table(&table) else {
        return Err(p(ac.table.pos, common::missing_table(&ac.table.value)));
    };
    let short = t.name.display_short();
    let spec = &ac.column.value;
    let mut problems = Vec::new();
    if t.column(&spec.name).is_some() {
        problems.push(Precondition {
            pos: spec.name.pos,
            message: format!(
                "`{short}` already has a column `{}`; choose another name",
                spec.name.value
            ),
        });
    }
    if let Some(parent) = &t.partition_of {
        problems.push(Precondition {
            pos: ac.table.pos,
            message: format!(
                "`{short}` is a partition of `{}`: PostgreSQL adds columns to the partitioned table only; add it there",
                parent.display_short()
            ),
        });
    }
    if !(spec
        .default
        .as_ref()
        .is_some_and(|d| is_constant(d) && !backfill))
    {
        if let Some(m) = super::shared::around::null_rejecting_type(cat, &spec.type_sql, &spec.name)
        {
            problems.push(Precondition {
                pos: spec.type_sql.pos,
                message: format!("{m} (or give it a constant default)"),
            });
        }
    }
    if t.is_partitioned() && spec.unique {
        problems.push(Precondition {
            pos: ac.column.pos,
            message: format!(
                "`{short}` is partitioned by ({}): a unique constraint on `{}` alone cannot be enforced across partitions; add the column without `unique`, then add_unique on it with the partition key",
                t.partition_key.join(", "),
                spec.name.value
            ),
        });
    }
    if t.is_partitioned() && cat.major_version() < 18 && spec.references.is_some() {
        problems.push(Precondition {
            pos: ac.column.pos,
            message: format!(
                "`{short}` is partitioned: PostgreSQL {} cannot add a foreign key NOT VALID to a partitioned table (18 can), and validating it in one statement would lock the table for the whole scan; add the column without `references`, then the foreign key per partition in a maintenance window",
                cat.major_version()
            ),
        });
    }
    if backfill && t.backfill_key().is_none() {
        problems.push(Precondition {
            pos: ac.table.pos,
            message: format!(
                "`{short}` has no primary key or unique NOT NULL key to page the backfill by; add a primary key first"
            ),
        });
    }
    if spec.unique {
        if let Some(m) = common::concurrent_index_refusal(cat) {
            problems.push(Precondition {
                pos: ac.column.pos,
                message: m,
            });
        }
    }
    if let Some(r) = &spec.references {
        let rt = r.table_name();
        match cat.table(&rt) {
            None => problems.push(Precondition {
                pos: r.table.pos,
                message: common::missing_table(&r.table.value),
            }),
            Some(target) => {
                let rc = &r.column.value;
                if target.column(rc).is_none() {
                    problems.push(Precondition {
                        pos: r.column.pos,
                        message: format!("`{}` has no column `{rc}`", target.name.display_short()),
                    });
                } else if !target.indexes.iter().any(|i| {
                    // the primary key's index included
                    i.unique && i.valid && i.predicate.is_none() && i.key_parts == [quote_ident(rc)]
                }) {
                    problems.push(Precondition {
                        pos: r.column.pos,
                        message: format!(
                            "`{}.{rc}` is neither the primary key nor unique: a foreign key must reference a unique column; add a unique index on it first",
                            target.name.display_short()
                        ),
                    });
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(t)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::is_constant;

    #[test]
    fn constant_defaults() {
        for d in [
            "0",
            "1.5",
            "-3",
            "'x'",
            "'it''s'",
            "true",
            "NULL",
            "'a'::text",
            "'{}'::jsonb",
            "0::bigint",
            "'x'::character varying(20)",
        ] {
            assert!(is_constant(d), "{d}");
        }
        for d in [
            "now()",
            "gen_random_uuid()",
            "nextval('s')",
            "'a' || 'b'",
            "random()::text",
            "'x'::text || now()",
        ] {
            assert!(!is_constant(d), "{d}");
        }
    }
}
