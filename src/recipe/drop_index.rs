//! `drop_index`: `DROP INDEX CONCURRENTLY` (reads and writes continue), before contract,
//! so rollback can rebuild it concurrently exactly as it was.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::footprint;
use super::{Knowledge, Precondition};
use crate::catalog::{Catalog, Index, Table};
use crate::phase::PhaseKind;
use crate::plan::{At, Pos};
use crate::program::{Contribution, RecipeOutput};
use crate::sql::quote_ident;
use crate::sql::QualifiedName;

/// `drop_index: { name }` (`index` or `schema.index`).
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    pub name: At<String>,
}

impl DropIndex {
    pub fn index_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
}

impl ChangeKind for DropIndex {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let di = self;
        QualifiedName::parse(&di.name).map_err(|m| err(di.name.pos, m))?;
        Ok(())
    }

    fn indexes(&self) -> Vec<QualifiedName> {
        let di = self;
        vec![di.index_name()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let di = self;
        let index = di.index_name();
        let found = cat.and_then(|c| {
            c.tables.values().find_map(|t| {
                (t.name.schema == index.schema)
                    .then(|| t.indexes.iter().find(|i| i.name == index.name.as_str()))
                    .flatten()
                    .map(|i| (t, i))
            })
        });
        match found {
            Some((t, i)) => i
                .columns
                .iter()
                .map(|c| footprint::Use {
                    table: t.name.clone(),
                    column: Some(c.clone()),
                    pos: di.name.pos,
                })
                .collect(),
            None => Vec::new(),
        }
    }

    fn index_changed(&self) -> Option<(QualifiedName, Pos)> {
        Some((self.index_name(), self.name.pos))
    }
}

pub(super) fn expand(
    di: &DropIndex,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let index = di.index_name();
    let mut out = RecipeOutput::default();
    let mut c = Contribution::default();
    match knowledge {
        Knowledge::Live(cat) => {
            let (t, idx) = check(di, cat)?;
            let n = quote_ident(&idx.name);
            c.steps.push(if t.is_partitioned() {
                common::drop_partitioned_index(&t.name, &index)
            } else {
                common::drop_index(
                    format!(
                        "drop index {n} on {} concurrently (reads and writes continue)",
                        t.name.display_short()
                    ),
                    &t.name,
                    index.clone(),
                )
            });
            let build = common::IndexBuild {
                table: &t.name,
                live: Some(t),
                name: &idx.name,
                unique: idx.unique,
                tail: common::index_tail(&idx.definition).to_string(),
                description: format!("rebuild index {n} concurrently, as it was"),
            };
            c.rollback = build.steps(false);
        }
        Knowledge::Offline => {
            // the table is read from the catalog at `start`
            let placeholder = crate::sql::QualifiedName::new(index.schema.as_str(), "<its table>");
            c.steps.push(common::drop_index(
                format!(
                    "drop index {} concurrently (reads and writes continue)",
                    index.name
                ),
                &placeholder,
                index,
            ));
        }
    }
    out.phases.push((PhaseKind::SwitchReads, c));
    Ok(out)
}

fn check<'a>(
    di: &DropIndex,
    cat: &'a Catalog,
) -> Result<(&'a Table, &'a Index), Vec<Precondition>> {
    let index = di.index_name();
    let refuse = |message: String| {
        vec![Precondition {
            pos: di.name.pos,
            message,
        }]
    };
    let found = cat.tables.values().find_map(|t| {
        (t.name.schema == index.schema)
            .then(|| {
                t.indexes
                    .iter()
                    .find(|i| i.name == index.name.as_str())
                    .map(|i| (t, i))
            })
            .flatten()
    });
    let Some((t, idx)) = found else {
        return Err(refuse(format!(
            "index `{}` does not exist in the database (check the name and schema; names are case-sensitive)",
            di.name.value
        )));
    };
    if t.attached_indexes.contains(&idx.name) {
        return Err(refuse(format!(
            "index `{}` belongs to a partitioned index of the parent of `{}`: PostgreSQL drops it only with that index; drop the parent's index instead",
            di.name.value,
            t.name.display_short()
        )));
    }
    if t.replica_identity_index() == Some(idx.name.as_str()) {
        return Err(refuse(format!(
            "index `{}` is the REPLICA IDENTITY of `{}`: without it every UPDATE and DELETE of a published table fails; set another replica identity first (ALTER TABLE … REPLICA IDENTITY USING INDEX / FULL)",
            di.name.value,
            t.name.display_short()
        )));
    }
    if let Some(con) = &idx.constraint {
        return Err(refuse(format!(
            "index `{}` implements constraint `{con}` of `{}`; drop the constraint instead (drop_constraint)",
            di.name.value,
            t.name.display_short()
        )));
    }
    Ok((t, idx))
}
