//! `rename_table`, the view approach: expand renames the table and, in the same short
//! transaction, creates a view under the old name (`SELECT *` of one table: automatically
//! updatable, so the old application's SELECT, INSERT, UPDATE, DELETE, RETURNING, column
//! defaults and ON CONFLICT keep working). The view is owned by the table's owner and
//! carries the table's grants, table-wide and per column, so every role keeps exactly
//! its access through the old name. GATE: the application uses the new name. Contract
//! drops the view. Undo: drop the view and rename back, in one transaction.
//!
//! Row-level security: a view reads its table with its owner's rights, which bypass the
//! policies. With RLS enabled the view is `security_invoker` (PostgreSQL 15+): the
//! caller's own rights and policies apply on the table. Such a view checks SELECT on
//! every column of the table (`SELECT *`), so a role with only column grants could not
//! read through it: refused then, and on 13/14 (no security_invoker) whenever RLS is on.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::footprint;
use super::Change;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::catalog::{Grant, Relation};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{quote_ident, quote_literal, QualifiedName};

/// `rename_table: { from, to }`: `to` is a bare name (the table stays in its schema) or
/// `schema.name` in the same schema.
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    pub from: At<String>,
    pub to: At<String>,
}

impl RenameTable {
    #[allow(clippy::wrong_self_convention)] // the `from:` table, not a conversion
    pub fn from_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.from).expect("validated at load")
    }
    /// The new name, in `from`'s schema when written bare.
    pub fn to_name(&self) -> QualifiedName {
        let to = QualifiedName::parse(&self.to).expect("validated at load");
        if check::names_a_schema(&self.to) {
            to
        } else {
            QualifiedName::new(self.from_name().schema.as_str(), to.name.as_str())
        }
    }
}

impl ChangeKind for RenameTable {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(cx.plan, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let rt = self;
        let from = QualifiedName::parse(&rt.from).map_err(|m| err(rt.from.pos, m))?;
        let to = QualifiedName::parse(&rt.to).map_err(|m| err(rt.to.pos, m))?;
        check::check_ident(to.name.as_str()).map_err(|m| err(rt.to.pos, m))?;
        if check::names_a_schema(&rt.to) && to.schema != from.schema {
            return Err(err(
                        rt.to.pos,
                        format!(
                            "`to` is in schema `{}` but `{}` is in `{}`: rename_table keeps the table in its schema (ALTER TABLE … RENAME cannot move it, and the old name's view would resolve differently under each search_path); write the new name without a schema, and move the table in a separate change",
                            to.schema, rt.from.value, from.schema
                        ),
                    ));
        }
        if rt.to_name() == from {
            return Err(err(
                rt.to.pos,
                format!(
                    "`to` is the same as `from` (`{}`): nothing to rename",
                    rt.to.value
                ),
            ));
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let rt = self;
        vec![rt.from_name(), rt.to_name()]
    }

    fn relations(&self) -> Vec<QualifiedName> {
        let rt = self;
        vec![rt.from_name(), rt.to_name()]
    }

    fn types(&self) -> Vec<QualifiedName> {
        let rt = self;
        vec![rt.to_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let rt = self;
        vec![
            footprint::whole(rt.from_name(), rt.from.pos),
            footprint::whole(rt.to_name(), rt.to.pos),
        ]
    }

    fn validate_in_plan(&self, i: usize, changes: &[At<Change>]) -> Result<(), (Pos, String)> {
        let here = changes[i].pos;
        let names = [self.from_name(), self.to_name()];
        for (j, other) in changes.iter().enumerate() {
            if i == j {
                continue;
            }
            let hit = other
                .value
                .as_kind()
                .tables()
                .into_iter()
                .find(|t| names.contains(t));
            if let Some(t) = hit {
                return Err((
                    if j > i { other.pos } else { here },
                    format!(
                        "table `{}` is renamed by the change at line {} and changed by the change at line {}: rename it in a plan of its own and make the other plan depend on it (depends_on)",
                        t.display_short(),
                        here.line,
                        other.pos.line
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn expand(
    plan: &str,
    rt: &RenameTable,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let from = rt.from_name();
    let to = rt.to_name();
    let (old, new) = (from.display_short(), to.display_short());
    let mut notes = Vec::new();
    let mut table: Option<&Relation> = None;
    if let Knowledge::Live(cat) = knowledge {
        let mut problems = Vec::new();
        match cat.relation(&from) {
            None => problems.push(Precondition {
                pos: rt.from.pos,
                message: common::missing_table(&rt.from.value),
            }),
            Some(r) if r.kind != "r" && r.kind != "p" => problems.push(Precondition {
                pos: rt.from.pos,
                message: format!(
                    "`{old}` is a {}, not a table: rename_table renames ordinary and partitioned tables",
                    r.kind_text()
                ),
            }),
            Some(r) => {
                if r.row_security && cat.major_version() < 15 {
                    problems.push(Precondition {
                        pos: rt.from.pos,
                        message: format!(
                            "row-level security is enabled on `{old}`: on PostgreSQL {} the view that keeps the old name working would run with its owner's rights and bypass the policies for every query through `{old}` (security_invoker views need PostgreSQL 15); upgrade to 15 or later, or rename it in a maintenance window",
                            cat.major_version()
                        ),
                    });
                } else if r.row_security {
                    let partial = column_only_grantees(r);
                    if !partial.is_empty() {
                        problems.push(Precondition {
                            pos: rt.from.pos,
                            message: format!(
                                "row-level security is enabled on `{old}` and {} hold only column grants on it: the view that keeps the old name working must check the caller's rights (security_invoker), which for `SELECT *` means every column, so those roles could not read through `{old}`; grant them the privilege on the whole table for the window, or rename it in a maintenance window",
                                partial.join(", ")
                            ),
                        });
                    }
                }
                table = Some(r);
            }
        }
        if let Some(r) = cat.relation(&to) {
            problems.push(Precondition {
                pos: rt.to.pos,
                message: format!(
                    "`{new}` already exists (a {}); choose another name",
                    r.kind_text()
                ),
            });
        } else if let Some(t) = cat.type_info(&to) {
            problems.push(Precondition {
                pos: rt.to.pos,
                message: format!(
                    "a type `{new}` ({}) exists: the table's row type takes the table's name, so the rename would fail; choose another name",
                    t.kind_text()
                ),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    // checked above: RLS on means PostgreSQL 15+
    let invoker = table.is_some_and(|t| t.row_security);
    let mut sql = format!(
        "ALTER TABLE {from} RENAME TO {};\nCREATE VIEW {from}{} AS SELECT * FROM {to};\n",
        to.name,
        if invoker {
            " WITH (security_invoker = true)"
        } else {
            ""
        }
    );
    match table {
        Some(t) => {
            sql.push_str(&format!(
                "ALTER VIEW {from} OWNER TO {};\n",
                quote_ident(&t.owner)
            ));
            for g in grant_statements(&from, t) {
                sql.push_str(&g);
                sql.push('\n');
            }
        }
        None => sql.push_str(
            "-- ALTER VIEW … OWNER TO <the table's owner>, and one GRANT per privilege of the table's ACL (read at start)\n",
        ),
    }
    sql.push_str(&format!(
        "COMMENT ON VIEW {from} IS {};",
        quote_literal(&format!(
            "pgphase plan {plan}: the old name of {to}, dropped at contract"
        ))
    ));
    if matches!(knowledge, Knowledge::Offline) {
        notes.push(format!(
            "when `{old}` has row-level security enabled the view is created WITH (security_invoker = true) (PostgreSQL 15+; refused on 13/14)"
        ));
    } else if invoker {
        notes.push(format!(
            "`{old}` has row-level security: the view is security_invoker, so the caller's grants on `{new}` and its policies apply through `{old}` as before"
        ));
    } else {
        notes.push(format!(
            "the view `{old}` reads `{new}` with its owner's rights (the table's owner); callers need the view's grants, copied from the table, table-wide and per column"
        ));
    }
    notes.push(format!(
        "through the old name `{old}` until contract: SELECT, INSERT, UPDATE, DELETE (RETURNING, defaults, ON CONFLICT) work; TRUNCATE, COPY {old} FROM/TO and ALTER TABLE on it do not (it is a view); grants made on `{new}` after start do not reach the view"
    ));
    notes.push(format!(
        "`{new}` keeps its indexes', constraints', sequences' and triggers' names (e.g. {}_pkey); rename them in a later plan if wanted",
        from.name.as_str()
    ));

    let is_view = |name: &QualifiedName| {
        format!(
            "EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass({}) AND relkind = 'v')",
            name.regclass_literal()
        )
    };
    let is_table = |name: &QualifiedName| {
        format!(
            "EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass({}) AND relkind IN ('r', 'p'))",
            name.regclass_literal()
        )
    };
    let mut out = RecipeOutput {
        notes,
        ..Default::default()
    };
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "rename {old} to {new} and create the view {old} over it, in one transaction (catalog only): both names work"
                ),
                &from,
                LockLevel::AccessExclusive,
                sql,
            )
            .skip_if(format!("SELECT {} AND {}", is_table(&to), is_view(&from)))],
            rollback: vec![Step::sql(
                format!("drop the view {old} and rename {new} back to {old}, in one transaction"),
                &to,
                LockLevel::AccessExclusive,
                format!(
                    "DROP VIEW IF EXISTS {from};\nALTER TABLE {to} RENAME TO {};",
                    from.name
                ),
            )
            .skip_if(format!("SELECT NOT {}", is_table(&to)))],
            gate_after: Some(format!(
                "deploy the application version that uses `{new}` instead of `{old}` (and drain the old version: the view `{old}` is dropped after this gate)"
            )),
        },
    ));
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                format!("drop the view {old} (the old name)"),
                &from,
                LockLevel::AccessExclusive,
                format!("DROP VIEW IF EXISTS {from};"),
            )
            .skip_if(format!("SELECT NOT {}", is_view(&from)))],
            ..Default::default()
        },
    ));
    Ok(out)
}

/// Roles (PUBLIC as such) holding a column privilege without the same privilege on the
/// whole table.
fn column_only_grantees(t: &Relation) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in t.grants.iter().filter(|g| g.column.is_some()) {
        let whole = t
            .grants
            .iter()
            .any(|w| w.column.is_none() && w.grantee == g.grantee && w.privilege == g.privilege);
        let name = g
            .grantee
            .as_deref()
            .map_or("PUBLIC".to_string(), |r| format!("`{r}`"));
        if !whole && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// `GRANT`s that give the view the table's ACL: one statement per grantee, grant option
/// and column set. The owner's own rights come with owning the view.
fn grant_statements(view: &QualifiedName, table: &Relation) -> Vec<String> {
    // (grantee, with grant option, column, privileges)
    type Group = (Option<String>, bool, Option<String>, Vec<String>);
    let mut groups: Vec<Group> = Vec::new();
    for Grant {
        grantee,
        privilege,
        grantable,
        column,
    } in &table.grants
    {
        if grantee.as_deref() == Some(table.owner.as_str()) {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(g, o, c, _)| g == grantee && o == grantable && c == column)
        {
            Some((_, _, _, privs)) => privs.push(privilege.clone()),
            None => groups.push((
                grantee.clone(),
                *grantable,
                column.clone(),
                vec![privilege.clone()],
            )),
        }
    }
    groups
        .into_iter()
        .map(|(grantee, grantable, column, privs)| {
            let privs = match &column {
                Some(c) => privs
                    .iter()
                    .map(|p| format!("{p} ({})", quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => privs.join(", "),
            };
            format!(
                "GRANT {privs} ON {view} TO {}{};",
                grantee.as_deref().map_or("PUBLIC".into(), quote_ident),
                if grantable { " WITH GRANT OPTION" } else { "" }
            )
        })
        .collect()
}
