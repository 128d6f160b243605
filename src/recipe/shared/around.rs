//! What lives around a column a change replaces or removes: every object that depends
//! on it (`catalog::Dependent`), checked the same way for every change kind. Each one
//! is either carried over by the recipe, dropped with the column by design (said in
//! the plan's notes), or refused here, before anything runs, naming the object and
//! what to do. Indexes, constraints and views are the recipes' own business (they
//! carry or refuse them with their own messages).

use crate::catalog::{Dependent, DependentKind, Table};
use crate::program::ContractDrop;
use crate::sql::quote_ident;

/// What a change does to the column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(in crate::recipe) enum Fate<'a> {
    /// `rename_column`: a new column `to` takes over, contract drops the old one.
    Renamed { to: &'a str },
    /// `change_type`, shadow route: a copy of the new type takes the column's place,
    /// contract drops the old copy.
    Retyped,
    /// `change_type` in place: one `ALTER COLUMN … TYPE`.
    RetypedInPlace,
    /// `split_column` / `merge_columns`: new columns take over, contract drops the old.
    Replaced { new: &'a str },
    /// `drop_column`.
    Dropped,
}

impl Fate<'_> {
    /// Why an object that keeps the column from being dropped is a problem.
    fn blocks(self) -> &'static str {
        match self {
            Fate::RetypedInPlace => "PostgreSQL cannot change the type of a column it uses",
            _ => "contract could not drop the column (after the point of no return)",
        }
    }
    fn after(self) -> String {
        match self {
            Fate::Renamed { to } => format!("on `{to}` after the rename"),
            Fate::Retyped | Fate::RetypedInPlace => "after the type change".into(),
            Fate::Replaced { new } => format!("on {new} afterwards"),
            Fate::Dropped => "without the column".into(),
        }
    }
}

/// Refusals for the objects around `column` of `t` that this change does not carry
/// over (and that are not the recipe's own business: indexes, constraints, views).
pub(in crate::recipe) fn refusals(t: &Table, column: &str, fate: Fate<'_>) -> Vec<String> {
    let col = format!("`{column}`");
    let mut out = Vec::new();
    for d in t.dependents_of(column).filter(|d| !d.is_pgphase()) {
        if let Some(m) = refusal(d, &col, column, fate) {
            out.push(m);
        }
    }
    out.extend(structural(t, column, fate));
    out.dedup();
    out
}

fn refusal(d: &Dependent, col: &str, column: &str, fate: Fate<'_>) -> Option<String> {
    let name = quote_ident(&d.name);
    let (blocks, after) = (fate.blocks(), fate.after());
    Some(match d.kind {
        DependentKind::Index | DependentKind::Constraint | DependentKind::View => return None,
        DependentKind::Trigger => format!(
            "trigger `{}` names {col} in its column list (UPDATE OF) or WHEN condition: {blocks}; rewrite the trigger without naming the column (test it inside the function), or drop it first and recreate it {after}",
            d.name
        ),
        DependentKind::Policy => format!(
            "row-level security policy {name} uses {col}: {blocks}; drop the policy first and recreate it {after} (in a maintenance window: the table is unprotected in between), or make it not use the column"
        ),
        DependentKind::Rule => format!(
            "rule {name} uses {col}: {blocks}; drop the rule first and recreate it {after}"
        ),
        DependentKind::Publication => format!(
            "publication {name} publishes {col} in its column list or row filter: {blocks}, and what the subscribers receive would change under them; change the publication first (ALTER PUBLICATION … SET TABLE), and its subscribers"
        ),
        DependentKind::GeneratedColumn => format!(
            "generated column `{}` is computed from {col}: {blocks}; drop the generated column first and recreate it {after}",
            d.name
        ),
        DependentKind::Function => format!(
            "function {name} (a BEGIN ATOMIC body) uses {col}: {blocks}; drop the function first and recreate it {after}"
        ),
        DependentKind::Sequence => match fate {
            Fate::Renamed { .. } | Fate::Dropped | Fate::RetypedInPlace => return None,
            _ => format!(
                "sequence {name} is owned by {col} (serial): contract would drop it with the old column; give the column a plain default first (ALTER SEQUENCE … OWNED BY NONE), or change it in a maintenance window"
            ),
        },
        DependentKind::Statistics => return None,
        DependentKind::TriggerFunction => match fate {
            // the column keeps its name: the function goes on working with it
            Fate::Retyped | Fate::RetypedInPlace => return None,
            _ => format!(
                "{} names {col} in its source: PostgreSQL records no dependency on it, so the column would be {} under it and every write through the trigger would then fail; make the function not name the column (e.g. read it with to_jsonb(NEW) ->> '{column}'), or change the column in a maintenance window",
                d.description,
                if fate == Fate::Dropped { "dropped" } else { "replaced" }
            ),
        },
        DependentKind::ReplicaIdentity => match fate {
            Fate::Renamed { .. } | Fate::Retyped | Fate::RetypedInPlace => return None,
            Fate::Replaced { .. } | Fate::Dropped => format!(
                "index {name} on {col} is the table's REPLICA IDENTITY: without it every UPDATE and DELETE of a published table fails; set another replica identity first (ALTER TABLE … REPLICA IDENTITY USING INDEX / FULL)"
            ),
        },
        DependentKind::Other => format!(
            "{} depends on {col}: {blocks}; drop it first and recreate it {after}",
            d.description
        ),
    })
}

/// The table's shape: inheritance, partitions, inherited columns, types that refuse NULL.
fn structural(t: &Table, column: &str, fate: Fate<'_>) -> Vec<String> {
    let short = t.name.display_short();
    let mut out = Vec::new();
    let Some(c) = t.column(column) else {
        return out;
    };
    let replaces = !matches!(fate, Fate::RetypedInPlace | Fate::Dropped);
    if c.inherited {
        let parent = t
            .partition_of
            .iter()
            .chain(&t.inherits)
            .map(|p| format!("`{}`", p.display_short()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(format!(
            "`{short}.{column}` is inherited from {parent}: PostgreSQL renames, retypes and drops it only there; change the parent (its partitions and children follow)"
        ));
    }
    if replaces && !t.children.is_empty() {
        let children = t
            .children
            .iter()
            .map(|c| format!("`{}`", c.display_short()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(format!(
            "`{short}` has inheritance children ({children}): the new column, its NOT NULL and the old column's drop reach them, but the sync triggers fire for rows of `{short}` only, so the old application's writes into a child would not be synced (and fail once the column is NOT NULL); move them to declarative partitioning (PARTITION BY) first, or change the column in a maintenance window"
        ));
    }
    if replaces && t.is_partitioned() {
        for p in t.partitions.iter().filter(|p| p.kind != "r") {
            out.push(format!(
                "partition `{}` of `{short}` is {}: pgphase builds the partitioned indexes one partition at a time and supports one level of ordinary partitions; change it in a maintenance window",
                p.name.display_short(),
                if p.kind == "f" { "a foreign table" } else { "itself partitioned" }
            ));
        }
    }
    if let Fate::Renamed { to } = fate {
        if c.type_rejects_null {
            out.push(format!(
                "`{short}.{column}` is of type {}, a domain that refuses NULL: the new column `{to}` could not be added to a table with rows, and the old application's inserts, which leave it out, would fail; drop the domain's NOT NULL (put NOT NULL on the column instead: ALTER DOMAIN … DROP NOT NULL, ALTER TABLE … SET NOT NULL) first",
                c.type_sql
            ));
        }
    }
    out
}

/// A refusal for a new column of type `type_sql` that refuses NULL (a domain with NOT
/// NULL), which a change adds nullable, with no default.
pub(in crate::recipe) fn null_rejecting_type(
    cat: &crate::catalog::Catalog,
    type_sql: &str,
    column: &str,
) -> Option<String> {
    cat.rejects_null(type_sql).then(|| {
        format!(
            "type {} refuses NULL (a domain with NOT NULL or a CHECK that NULL fails): `{column}` could not be added to a table with rows, and the old application's inserts, which leave it out, would fail; use the domain's base type, or drop its NOT NULL first",
            type_sql.trim()
        )
    })
}

/// What contract drops — a column of `t`, or `t` itself — with the identities of the
/// objects that depend on it now, so the check before contract can tell what appeared
/// since (see `run::check_contract`).
pub(in crate::recipe) fn contract_drop(t: &Table, column: Option<&str>) -> ContractDrop {
    let known = t
        .dependents
        .iter()
        .filter(|d| column.is_none_or(|c| d.uses(c)))
        .map(|d| d.identity)
        .collect();
    ContractDrop {
        table: t.name.clone(),
        column: column.map(str::to_string),
        attnum: column.and_then(|c| t.column(c)).map(|c| c.attnum),
        known,
        name_stays: false,
    }
}

/// A note for a change that adds columns to a published table: logical replication
/// sends every column, and a subscriber's table without them stops replicating.
pub(in crate::recipe) fn publication_note(t: &Table, columns: &str) -> Option<String> {
    (!t.publications.is_empty()).then(|| {
        format!(
            "`{}` is published ({}): a logical-replication subscriber's table needs {columns} before this plan adds them here (apply the same plan on the subscriber first); pgphase changes this database only",
            t.name.display_short(),
            t.publications.join(", ")
        )
    })
}
