//! New columns derived from old ones (`split_column`, `merge_columns`): added nullable,
//! kept in sync with the old ones by triggers in both directions (forward `using`,
//! `reverse`), backfilled in batches, given NOT NULL where the old columns were all NOT
//! NULL; then the application switches, and contract drops the old columns with the
//! triggers.

use super::common;
use super::derived::{probe, Sync, SyncColumn};
use crate::catalog::Table;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::recipe::{object_tag, Knowledge, Precondition};
use crate::sql::{Ident, QualifiedName};

#[allow(clippy::too_many_arguments)]
pub(in crate::recipe) fn derived(
    plan: &str,
    batch_size: u32,
    kind: &str,
    (table_at, table): (&At<String>, QualifiedName),
    old: &[&At<String>],
    new: &[&DerivedColumn],
    reverse: Vec<String>,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let t = match knowledge {
        Knowledge::Live(cat) => {
            let t = check(kind, table_at, cat.table(&table), old, new);
            let types: Vec<Precondition> = new
                .iter()
                .filter_map(|n| {
                    super::around::null_rejecting_type(cat, &n.type_sql, &n.name).map(|message| {
                        Precondition {
                            pos: n.type_sql.pos,
                            message,
                        }
                    })
                })
                .collect();
            match t {
                Ok(t) if types.is_empty() => Some(t),
                Ok(_) => return Err(types),
                Err(mut p) => {
                    p.extend(types);
                    return Err(p);
                }
            }
        }
        Knowledge::Offline => None,
    };
    let short = table.display_short();
    let mut parts: Vec<&str> = vec![kind];
    parts.extend(old.iter().map(|o| o.value.as_str()));
    parts.extend(new.iter().map(|n| n.name.value.as_str()));
    let table_text = table.to_string();
    parts.insert(0, &table_text);
    let tag = object_tag(plan, &parts);
    let (function, trigger, update_trigger, dollar_tag) = Sync::named(&table, &tag);
    let old_cols: Vec<SyncColumn> = old
        .iter()
        .map(|o| {
            let live = t.and_then(|t| t.column(o));
            let mut c = SyncColumn::new(o, live.map(|c| c.type_sql.clone()));
            if let Some(l) = live {
                c.has_equality = l.has_equality;
            }
            c
        })
        .collect();
    let new_cols: Vec<SyncColumn> = new
        .iter()
        .map(|n| SyncColumn::new(&n.name, Some(n.type_sql.value.trim().to_string())))
        .collect();
    let sync = Sync {
        table: table.clone(),
        function,
        trigger,
        update_trigger,
        dollar_tag,
        old: old_cols.clone(),
        new: new_cols.clone(),
        forward: new
            .iter()
            .map(|n| n.using.value.trim().to_string())
            .collect(),
        reverse: Some(reverse.clone()),
    };
    let old_names = list(old.iter().map(|o| o.value.as_str()));
    let new_names = list(new.iter().map(|n| n.name.value.as_str()));
    let mut out = RecipeOutput::default();

    // 1. expand: the new columns, nullable, no default (one catalog-only transaction).
    let add: String = new
        .iter()
        .map(|n| {
            format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {};\n",
                Ident::new(n.name.value.clone()),
                n.type_sql.value.trim()
            )
        })
        .collect();
    let drop: String = new
        .iter()
        .map(|n| {
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n",
                Ident::new(n.name.value.clone())
            )
        })
        .collect();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!("add {new_names} to {short}: nullable, no default, so the old application's writes are unaffected"),
                &table,
                LockLevel::AccessExclusive,
                add.trim_end().to_string(),
            )
            .changes_row_type()],
            rollback: vec![Step::sql(
                format!("drop {new_names} from {short}"),
                &table,
                LockLevel::AccessExclusive,
                drop.trim_end().to_string(),
            )
            .changes_row_type()],
            gate_after: None,
        },
    ));

    // 2. dual_write: both directions must plan before a trigger can run them.
    let forward_probe: Vec<String> = new_cols
        .iter()
        .zip(new)
        .map(|(c, n)| cast(&n.using, c.type_sql.as_deref()))
        .collect();
    let reverse_probe: Vec<String> = old_cols
        .iter()
        .zip(&reverse)
        .map(|(c, r)| cast(r, c.type_sql.as_deref()))
        .collect();
    let mut dual = sync.dual_write(&format!("{old_names} ↔ {new_names}"));
    dual.steps.splice(
        0..0,
        probe(
            &table,
            common::backfill_key(t),
            &forward_probe,
            &[format!("SELECT {} FROM {table}", reverse_probe.join(", "))],
        ),
    );
    out.phases.push((PhaseKind::DualWrite, dual));

    // 3. backfill, then NOT NULL on the new columns that get it.
    let mut backfill = Contribution {
        steps: vec![sync.backfill(common::backfill_key(t), batch_size)],
        rollback: Vec::new(),
        gate_after: Some(format!(
            "deploy the application version that reads and writes {new_names} instead of {old_names} on {short} (the triggers keep both in sync until contract)"
        )),
    };
    let all_old_not_null =
        t.is_some_and(|t| old.iter().all(|o| t.column(o).is_some_and(|c| c.not_null)));
    for (i, n) in new.iter().enumerate() {
        let not_null = match &n.nullable {
            Some(b) => !b.value,
            None => all_old_not_null,
        };
        if !not_null {
            continue;
        }
        let col = Ident::new(n.name.value.clone());
        common::set_not_null(
            &mut backfill,
            &table,
            &col,
            &Ident::new(format!("pgphase_not_null_{tag}_{i}")),
            knowledge,
            format!("make {col} nullable again, before the sync trigger is removed"),
        );
    }
    backfill.rollback.reverse();
    out.phases.push((PhaseKind::Backfill, backfill));

    // 4. switch_reads: prove the columns agree before the old ones stop being written.
    out.phases.push((
        PhaseKind::SwitchReads,
        Contribution {
            steps: vec![sync.verify(common::backfill_key(t))],
            rollback: Vec::new(),
            gate_after: Some(format!(
                "confirm no running instance of the application still uses {old_names} on {short} (the old version is fully drained)"
            )),
        },
    ));

    // 5. contract: triggers, old columns (their indexes and constraints go with them),
    // function, in one short transaction.
    let drop_old: String = old
        .iter()
        .map(|o| {
            format!(
                "ALTER TABLE {table} DROP COLUMN IF EXISTS {};\n",
                Ident::new(o.value.clone())
            )
        })
        .collect();
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "drop the sync triggers and {old_names} (with their indexes and constraints)"
                ),
                &table,
                LockLevel::AccessExclusive,
                format!(
                    "{}\n{drop_old}{}",
                    sync.drop_triggers_sql(),
                    sync.drop_function_sql()
                ),
            )
            .changes_row_type()],
            rollback: Vec::new(),
            gate_after: None,
        },
    ));
    if let Some(t) = t {
        out.notes
            .extend(super::around::publication_note(t, &new_names));
        for o in old {
            out.drops
                .push(super::around::contract_drop(t, Some(o.value.as_str())));
        }
        let uses_old = |cols: &[String]| cols.iter().any(|c| old.iter().any(|o| o.value == *c));
        let mut dropped: Vec<String> = t
            .indexes
            .iter()
            .filter(|i| uses_old(&i.columns))
            .map(|i| i.name.clone())
            .chain(
                t.constraints
                    .iter()
                    .filter(|k| matches!(k.kind.as_str(), "c" | "u") && uses_old(&k.columns))
                    .map(|k| k.name.clone()),
            )
            .chain(
                t.statistics
                    .iter()
                    .filter(|s| uses_old(&s.columns))
                    .map(|s| format!("statistics {}", s.name.name)),
            )
            .collect();
        for o in old {
            let Some(c) = t.column(o) else { continue };
            if let Some(text) = super::carry::column_properties_text(c) {
                dropped.push(format!("`{}`'s {text}", o.value));
            }
            if let Some(d) = &c.default {
                dropped.push(format!("`{}`'s default {d}", o.value));
            }
        }
        if !dropped.is_empty() {
            out.notes.push(format!(
                "{kind} on {short}: contract drops {} with {old_names}; add what the new columns need (add_index, add_check, add_unique, statistics, grants, comments) in a plan that depends on this one",
                dropped.join(", ")
            ));
        }
    }
    Ok(out)
}

fn cast(expr: &str, ty: Option<&str>) -> String {
    match ty {
        Some(t) => format!("CAST(({}) AS {t})", expr.trim()),
        None => format!("({})", expr.trim()),
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check<'a>(
    kind: &str,
    table_at: &At<String>,
    table: Option<&'a Table>,
    old: &[&At<String>],
    new: &[&DerivedColumn],
) -> Result<&'a Table, Vec<Precondition>> {
    let Some(t) = table else {
        return Err(vec![Precondition {
            pos: table_at.pos,
            message: common::missing_table(&table_at.value),
        }]);
    };
    let short = t.name.display_short();
    let mut problems = Vec::new();
    let mut refuse = |pos: Pos, message: String| problems.push(Precondition { pos, message });
    let key = t.backfill_key();
    if key.is_none() {
        refuse(
            table_at.pos,
            format!("`{short}` has no primary key or unique NOT NULL key to page the backfill by; add a primary key first"),
        );
    }
    for o in old {
        let Some(col) = t.column(o) else {
            let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
            refuse(
                o.pos,
                format!(
                    "`{short}` has no column `{}`; its columns are: {}",
                    o.value,
                    cols.join(", ")
                ),
            );
            continue;
        };
        if key.as_ref().is_some_and(|k| k.contains(&o.value)) {
            refuse(o.pos, format!("`{}` is part of the key of `{short}` (the backfill pages by it, and contract would drop it); {kind} does not support key columns", o.value));
        }
        if col.generated.is_some() || col.identity.is_some() {
            refuse(o.pos, format!("`{}` is an identity or generated column; the sync triggers cannot write it: {kind} supports plain columns only", o.value));
        }
        for fk in t
            .constraints
            .iter()
            .filter(|c| c.kind == "f" && c.columns.contains(&o.value))
        {
            refuse(o.pos, format!("foreign key `{}` uses `{short}.{}`; drop it first (drop_constraint) and add what the new columns need afterwards", fk.name, o.value));
        }
        for fk in t
            .referenced_by
            .iter()
            .filter(|c| c.columns.contains(&o.value))
        {
            refuse(o.pos, format!("foreign key `{}` on `{}` references `{short}.{}`; drop it first: contract would drop the column it references", fk.name, fk.table.display_short(), o.value));
        }
        let new_names = list(new.iter().map(|n| n.name.value.as_str()));
        let fate = super::around::Fate::Replaced { new: &new_names };
        for m in super::around::refusals(t, &o.value, fate) {
            refuse(o.pos, m);
        }
        for v in t.views.iter().filter(|v| v.columns.contains(&o.value)) {
            refuse(o.pos, format!("view `{}` uses `{short}.{}`; contract could not drop the column (after the point of no return): drop the view first and recreate it on the new columns afterwards", v.view.display_short(), o.value));
        }
    }
    for n in new {
        if t.column(&n.name).is_some() {
            refuse(
                n.name.pos,
                format!(
                    "`{short}` already has a column `{}`; choose another name, or drop that column first",
                    n.name.value
                ),
            );
        }
    }
    if problems.is_empty() {
        Ok(t)
    } else {
        Err(problems)
    }
}

/// A column derived from existing ones: `{ name, type, using, nullable }`. `using` is an
/// SQL expression over the row (the old columns); `nullable` defaults to true unless
/// every old column is NOT NULL.
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DerivedColumn {
    pub name: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    pub using: At<String>,
    pub nullable: Option<At<bool>>,
}

/// A type or an SQL expression written in the plan: passed through as written, so it
/// must be one non-empty fragment, not a statement list.
/// Names, types and expressions of derived columns; none may be one of `old`.
pub(crate) fn check_derived(
    cols: &[DerivedColumn],
    old: &[&At<String>],
) -> Result<(), (Pos, String)> {
    let mut seen: Vec<&str> = Vec::new();
    for c in cols {
        check::check_ident(&c.name).map_err(|m| (c.name.pos, m))?;
        check::check_sql_text(&c.type_sql, "type").map_err(|m| (c.type_sql.pos, m))?;
        check::check_sql_text(&c.using, "using").map_err(|m| (c.using.pos, m))?;
        if seen.contains(&c.name.value.as_str()) || old.iter().any(|o| o.value == c.name.value) {
            return Err((
                c.name.pos,
                format!(
                    "column `{}` is listed twice (a new column needs a name of its own)",
                    c.name.value
                ),
            ));
        }
        seen.push(&c.name.value);
    }
    Ok(())
}
