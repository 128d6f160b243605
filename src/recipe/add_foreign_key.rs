//! `add_foreign_key`: index the referencing columns concurrently when no index leads
//! with them, then `ADD … NOT VALID` (SHARE ROW EXCLUSIVE on both tables, catalog only,
//! new writes checked) and `VALIDATE` (scan under SHARE UPDATE EXCLUSIVE).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::{footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput};
use crate::sql::{derived_name, quote_ident, Ident, QualifiedName};

/// `add_foreign_key: { table, name, columns: [..], references: { table, columns: [..] }, on_delete }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddForeignKey {
    pub table: At<String>,
    pub name: At<String>,
    pub columns: At<Vec<At<String>>>,
    pub references: At<ForeignKeyTarget>,
    /// `cascade`, `restrict`, `no action` (default), `set null`, `set default`.
    pub on_delete: Option<At<String>>,
}

impl AddForeignKey {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
    pub fn target_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.references.table).expect("validated at load")
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

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyTarget {
    pub table: At<String>,
    pub columns: At<Vec<At<String>>>,
}

impl ChangeKind for AddForeignKey {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge, cx.added)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let fk = self;
        QualifiedName::parse(&fk.table).map_err(|m| err(fk.table.pos, m))?;
        check::check_ident(&fk.name).map_err(|m| err(fk.name.pos, m))?;
        let target = &fk.references.value;
        QualifiedName::parse(&target.table).map_err(|m| err(target.table.pos, m))?;
        for cols in [&fk.columns, &target.columns] {
            if cols.value.is_empty() {
                return Err(err(
                    cols.pos,
                    "`columns` is empty: list the key columns".into(),
                ));
            }
            for c in &cols.value {
                check::check_ident(c).map_err(|m| err(c.pos, m))?;
            }
        }
        if fk.columns.value.len() != target.columns.value.len() {
            return Err(err(
                target.columns.pos,
                format!(
                    "{} referencing column(s) but {} referenced column(s): they must pair up",
                    fk.columns.value.len(),
                    target.columns.value.len()
                ),
            ));
        }
        if let Some(o) = &fk.on_delete {
            if check::on_delete_keywords(o).is_none() {
                return Err(err(
                            o.pos,
                            format!("`{}` is not an ON DELETE action; use cascade, restrict, no action, set null or set default", o.value),
                        ));
            }
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let fk = self;
        vec![fk.table_name(), fk.target_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let fk = self;
        let t = fk.table_name();
        let rt = fk.target_name();
        let mut u: Vec<footprint::Use> = fk
            .columns
            .value
            .iter()
            .map(|c| footprint::col(&t, c))
            .collect();
        u.extend(
            fk.references
                .columns
                .value
                .iter()
                .map(|c| footprint::col(&rt, c)),
        );
        u
    }

    fn builds_on_new_columns(&self) -> bool {
        true
    }

    fn apply(&self, cat: &mut Catalog) {
        let fk = self;
        let cols: Vec<String> = fk.columns.value.iter().map(|c| c.value.clone()).collect();
        planned::add_constraint(cat, &fk.table_name(), &fk.name.value, "f", &cols);
    }

    fn needs_column(&self, table: &QualifiedName, column: &str) -> bool {
        self.table_name() == *table && self.columns.value.iter().any(|c| c.value == column)
    }
}

pub(super) fn expand(
    fk: &AddForeignKey,
    knowledge: Knowledge<'_>,
    added: &[(QualifiedName, String)],
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = fk.table_name();
    let target = fk.target_name();
    let name = Ident::new(fk.name.value.clone());
    let cols: Vec<String> = fk.columns.value.iter().map(|c| quote_ident(c)).collect();
    let target_cols: Vec<String> = fk
        .references
        .columns
        .value
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    let (needs_index, live) = match knowledge {
        Knowledge::Live(cat) => (check(fk, cat, added)?, cat.table(&table)),
        Knowledge::Offline => (true, None),
    };
    let mut c = Contribution::default();
    if needs_index {
        let index_name = derived_name(&fk.name.value, "_idx");
        let build = common::IndexBuild {
            table: &table,
            live,
            name: &index_name,
            unique: false,
            tail: format!("USING btree ({})", cols.join(", ")),
            description: format!(
                "index the referencing columns ({}) concurrently, so deletes and key updates on {} do not scan {}",
                cols.join(", "),
                target.display_short(),
                table.display_short()
            ),
        };
        c.steps.extend(build.steps(false));
        c.rollback.extend(build.undo(false));
    }
    common::add_not_valid_then_validate(
        &mut c,
        &table,
        &name,
        format!(
            "FOREIGN KEY ({}) REFERENCES {target} ({}) ON DELETE {}",
            cols.join(", "),
            target_cols.join(", "),
            fk.on_delete_sql()
        ),
        "foreign key",
        LockLevel::ShareRowExclusive,
    );
    c.rollback.reverse();
    let mut out = RecipeOutput::default();
    out.phases.push((PhaseKind::Backfill, c));
    Ok(out)
}

/// Checks the change against the live tables; returns whether the referencing columns
/// need an index of their own.
fn check(
    fk: &AddForeignKey,
    cat: &Catalog,
    added: &[(QualifiedName, String)],
) -> Result<bool, Vec<Precondition>> {
    let table = fk.table_name();
    let mut problems = Vec::new();
    let Some(t) = cat.table(&table) else {
        return Err(vec![Precondition {
            pos: fk.table.pos,
            message: common::missing_table(&fk.table.value),
        }]);
    };
    let short = t.name.display_short();
    if t.is_partitioned() && cat.major_version() < 18 {
        problems.push(Precondition {
            pos: fk.table.pos,
            message: format!(
                "`{short}` is partitioned: PostgreSQL {} cannot add a foreign key NOT VALID to a partitioned table (18 can), and adding it valid would lock both tables for the whole scan; add it on each partition with add_foreign_key (then on `{short}` in a maintenance window), or upgrade to 18",
                cat.major_version()
            ),
        });
    }
    if t.constraints.iter().any(|c| c.name == fk.name.value) {
        problems.push(Precondition {
            pos: fk.name.pos,
            message: format!(
                "`{short}` already has a constraint `{}`; choose another name",
                fk.name.value
            ),
        });
    }
    for c in &fk.columns.value {
        if t.column(c).is_none() && !added.iter().any(|(at, n)| *at == table && *n == c.value) {
            problems.push(Precondition {
                pos: c.pos,
                message: format!(
                    "`{short}` has no column `{}` (and no add_column of this plan adds it)",
                    c.value
                ),
            });
        }
    }
    let target = &fk.references.value;
    match cat.table(&fk.target_name()) {
        None => problems.push(Precondition {
            pos: target.table.pos,
            message: common::missing_table(&target.table.value),
        }),
        Some(rt) => {
            let parts: Vec<String> = target
                .columns
                .value
                .iter()
                .map(|c| quote_ident(c))
                .collect();
            if !rt
                .indexes
                .iter()
                .any(|i| i.unique && i.valid && i.predicate.is_none() && i.key_parts == parts)
            {
                problems.push(Precondition {
                    pos: target.columns.pos,
                    message: format!(
                        "`{}` has no primary key or unique constraint on ({}): a foreign key must reference one; add it first",
                        rt.name.display_short(),
                        parts.join(", ")
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let parts: Vec<String> = fk.columns.value.iter().map(|c| quote_ident(c)).collect();
    Ok(!t
        .indexes
        .iter()
        .any(|i| i.valid && i.predicate.is_none() && i.key_parts.starts_with(&parts)))
}
