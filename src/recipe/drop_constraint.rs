//! `drop_constraint`: a gate (the application no longer relies on it), then `DROP
//! CONSTRAINT` (catalog only) before contract; the undo re-adds it without a long lock
//! (CHECK and FOREIGN KEY: NOT VALID, then VALIDATE if it was validated; UNIQUE: its
//! index rebuilt concurrently, then attached).

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::footprint;
use super::{Knowledge, Precondition};
use crate::catalog::{Catalog, Constraint, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{Ident, QualifiedName};

/// `drop_constraint: { table, name }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    pub table: At<String>,
    pub name: At<String>,
}

impl DropConstraint {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for DropConstraint {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let dc = self;
        QualifiedName::parse(&dc.table).map_err(|m| err(dc.table.pos, m))?;
        check::check_ident(&dc.name).map_err(|m| err(dc.name.pos, m))?;
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let dc = self;
        vec![dc.table_name()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let dc = self;
        let t = dc.table_name();
        let cols = cat
            .and_then(|c| c.table(&t))
            .and_then(|tt| tt.constraints.iter().find(|k| k.name == dc.name.value))
            .map(|k| k.columns.clone())
            .unwrap_or_default();
        if cols.is_empty() {
            vec![footprint::whole(t, dc.name.pos)]
        } else {
            cols.into_iter()
                .map(|c| footprint::Use {
                    table: t.clone(),
                    column: Some(c),
                    pos: dc.name.pos,
                })
                .collect()
        }
    }
}

pub(super) fn expand(
    dc: &DropConstraint,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = dc.table_name();
    let short = table.display_short();
    let name = Ident::new(dc.name.value.clone());
    let found = match knowledge {
        Knowledge::Live(cat) => Some(check(dc, cat)?),
        Knowledge::Offline => None,
    };
    let lock = match found {
        Some((_, con)) if con.kind == "f" => LockLevel::ShareRowExclusive,
        _ => LockLevel::AccessExclusive,
    };
    let mut c = Contribution {
        steps: vec![Step::sql(
            format!("drop constraint {name} from {short} (catalog only)"),
            &table,
            lock,
            format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name};"),
        )],
        ..Default::default()
    };
    if let Some((t, con)) = found {
        if con.kind == "u" {
            let idx = t
                .indexes
                .iter()
                .find(|i| i.constraint.as_deref() == Some(&con.name));
            if let Some(idx) = idx {
                if idx.name == con.name || t.is_partitioned() {
                    let build = common::IndexBuild {
                        table: &table,
                        live: Some(t),
                        name: &con.name,
                        unique: true,
                        tail: common::index_tail(&idx.definition).to_string(),
                        description: format!("rebuild the unique index {name} concurrently"),
                    };
                    c.rollback.extend(build.steps(true));
                } else {
                    // the index keeps its own name: rebuilt as it was, then attached
                    let index = QualifiedName::new(table.schema.as_str(), idx.name.clone());
                    c.rollback.push(common::create_index(
                        format!("rebuild the unique index {name} concurrently"),
                        &table,
                        index,
                        format!(
                            "{};",
                            idx.definition
                                .replacen(" INDEX ", " INDEX CONCURRENTLY ", 1)
                        ),
                    ));
                    c.rollback.push(
                        Step::sql(
                            format!("attach {name} as a UNIQUE constraint again (catalog only)"),
                            &table,
                            LockLevel::AccessExclusive,
                            format!(
                                "ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {};",
                                Ident::new(idx.name.clone())
                            ),
                        )
                        .skip_if(common::constraint_exists(&table, name.as_str())),
                    );
                }
            }
        } else {
            let def = con.definition.trim_end_matches(" NOT VALID");
            let mut undo = Contribution::default();
            common::add_not_valid_then_validate(
                &mut undo,
                &table,
                &name,
                def.to_string(),
                if con.kind == "f" {
                    "foreign key"
                } else {
                    "check"
                },
                lock,
            );
            if !con.validated {
                undo.steps.truncate(1);
            }
            c.rollback = undo.steps;
        }
    }
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            gate_after: Some(format!(
                "deploy the application version that no longer relies on {name} on {short} (e.g. ON CONFLICT on it, or catching its violations)"
            )),
            ..Default::default()
        },
    ));
    out.phases.push((PhaseKind::SwitchReads, c));
    Ok(out)
}

fn check<'a>(
    dc: &DropConstraint,
    cat: &'a Catalog,
) -> Result<(&'a Table, &'a Constraint), Vec<Precondition>> {
    let refuse = |pos, message| Err(vec![Precondition { pos, message }]);
    let Some(t) = cat.table(&dc.table_name()) else {
        return refuse(dc.table.pos, common::missing_table(&dc.table.value));
    };
    let short = t.name.display_short();
    let Some(con) = t.constraints.iter().find(|c| c.name == dc.name.value) else {
        let names: Vec<&str> = t.constraints.iter().map(|c| c.name.as_str()).collect();
        return refuse(
            dc.name.pos,
            format!(
                "`{short}` has no constraint `{}`; its constraints are: {}",
                dc.name.value,
                names.join(", ")
            ),
        );
    };
    if t.inherited_constraints.contains(&con.name) {
        return refuse(
            dc.name.pos,
            format!(
                "`{}` is inherited from a parent of `{short}`: PostgreSQL drops it only there; drop it on the parent",
                con.name
            ),
        );
    }
    if con.kind == "u"
        && t.indexes.iter().any(|i| {
            i.constraint.as_deref() == Some(con.name.as_str())
                && t.replica_identity_index() == Some(i.name.as_str())
        })
    {
        return refuse(
            dc.name.pos,
            format!(
                "the index of `{}` is the REPLICA IDENTITY of `{short}`: without it every UPDATE and DELETE of a published table fails; set another replica identity first (ALTER TABLE … REPLICA IDENTITY USING INDEX / FULL)",
                con.name
            ),
        );
    }
    match con.kind.as_str() {
        "c" | "f" => {}
        "u" => {
            if let Some(fk) = t.referenced_by.iter().find(|fk| fk.columns == con.columns) {
                return refuse(
                    dc.name.pos,
                    format!(
                        "foreign key `{}` on `{}` depends on `{}`; drop the foreign key first",
                        fk.name,
                        fk.table.display_short(),
                        con.name
                    ),
                );
            }
        }
        _ => {
            return refuse(
                dc.name.pos,
                format!(
                    "`{}` is a primary key, exclusion or NOT NULL constraint; drop_constraint handles CHECK, FOREIGN KEY and UNIQUE",
                    con.name
                ),
            )
        }
    }
    Ok((t, con))
}
