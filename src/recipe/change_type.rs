//! `change_type`. The application first reads the column through a cast to the new
//! type (`col::new_type` in its SELECT lists and RETURNING), so no statement it holds
//! (prepared and cached by its driver) sees its result type change: PostgreSQL refuses
//! such a cached statement (`cached plan must not change result type`), even for a
//! typmod change such as varchar(80) → varchar(200).
//!
//! A binary-coercible change (varchar(n) → varchar(m ≥ n) / text, numeric precision up,
//! timestamp precision up, cidr → inet, …) is then one catalog-only `ALTER COLUMN … TYPE`
//! under lock_timeout, after the gate. Anything else takes the shadow route: a hidden
//! column of the new type kept in sync by triggers (`using`), backfilled in batches,
//! given the column's NOT NULL / indexes / CHECKs; once the old version is drained,
//! contract swaps it in and drops the old column in one short transaction.

use super::kind::{ChangeKind, Context};
use super::shared::common;
use super::shared::derived::{probe, Sync, SyncColumn};
use super::shared::{footprint, planned};
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::catalog::{Column, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{derived_name, quote_ident, quote_literal, Ident, QualifiedName};

/// `change_type: { table, column, type, using, reverse }`: `using` computes the new
/// type from the old value, `reverse` the old type from the new value; both are SQL
/// expressions over the column (default: a plain cast).
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeType {
    pub table: At<String>,
    pub column: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    pub using: Option<At<String>>,
    pub reverse: Option<At<String>>,
}

impl ChangeType {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for ChangeType {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ct = self;
        QualifiedName::parse(&ct.table).map_err(|m| err(ct.table.pos, m))?;
        check::check_ident(&ct.column).map_err(|m| err(ct.column.pos, m))?;
        check::check_sql_text(&ct.type_sql, "type").map_err(|m| err(ct.type_sql.pos, m))?;
        for (e, what) in [(&ct.using, "using"), (&ct.reverse, "reverse")] {
            if let Some(e) = e {
                check::check_sql_text(e, what).map_err(|m| err(e.pos, m))?;
            }
        }
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let ct = self;
        vec![(ct.table_name(), &ct.column)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let ct = self;
        vec![ct.table_name()]
    }

    fn column_types(&self) -> Vec<String> {
        let ct = self;
        vec![ct.type_sql.value.clone()]
    }

    fn uses(&self, cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let ct = self;
        let t = ct.table_name();
        let mut u = vec![footprint::col(&t, &ct.column)];
        for e in ct.using.iter().chain(&ct.reverse) {
            u.extend(footprint::in_expression(cat, &t, e));
        }
        u
    }

    fn replaced(&self) -> Vec<footprint::Replaced> {
        let ct = self;
        vec![footprint::Replaced {
            table: ct.table_name(),
            column: ct.column.value.clone(),
            how: "retyped (replaced by a copy of the new type)".into(),
            fix: "put that change in a plan that depends_on this one".to_string(),
        }]
    }

    fn apply(&self, cat: &mut Catalog) {
        let ct = self;
        if let Some(t) = planned::table(cat, &ct.table_name()) {
            if let Some(c) = t.columns.iter_mut().find(|c| c.name == ct.column.value) {
                c.type_sql = ct.type_sql.value.trim().to_string();
            }
        };
    }
}

pub(super) fn expand(
    plan: &str,
    batch_size: u32,
    ct: &ChangeType,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ct.table_name();
    let new_type = ct.type_sql.value.trim().to_string();
    let (t, col) = match knowledge {
        Knowledge::Live(cat) => {
            let (t, col) = found(ct, cat.table(&table))?;
            (Some(t), Some(col))
        }
        Knowledge::Offline => (None, None),
    };
    if let (Some(t), Some(col)) = (t, col) {
        if same_type(&col.type_sql, &new_type) {
            return Err(vec![Precondition {
                pos: ct.type_sql.pos,
                message: format!(
                    "`{}.{}` is already of type {}: nothing to change",
                    t.name.display_short(),
                    col.name,
                    col.type_sql
                ),
            }]);
        }
        if binary_coercible(&col.type_sql, &new_type) && in_place_ok(t, col) {
            check_in_place(ct, t)?;
            return Ok(in_place(&table, t, col, &new_type));
        }
        check_shadow(ct, t, col, knowledge)?;
    }
    Ok(shadow(
        plan, batch_size, ct, &table, t, col, &new_type, knowledge,
    ))
}

/// The table and the column, or a refusal.
fn found<'a>(
    ct: &ChangeType,
    table: Option<&'a Table>,
) -> Result<(&'a Table, &'a Column), Vec<Precondition>> {
    let p = |pos: Pos, message: String| vec![Precondition { pos, message }];
    let Some(t) = table else {
        return Err(p(ct.table.pos, common::missing_table(&ct.table.value)));
    };
    let Some(col) = t.column(&ct.column) else {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(p(
            ct.column.pos,
            format!(
                "`{}` has no column `{}`; its columns are: {}",
                t.name.display_short(),
                ct.column.value,
                cols.join(", ")
            ),
        ));
    };
    Ok((t, col))
}

/// In place unless a foreign key (either side) or an exclusion constraint uses the
/// column (conservative: whether PostgreSQL re-checks them is not proven here). A CHECK
/// would be re-validated by `ALTER COLUMN TYPE` with a scan under ACCESS EXCLUSIVE, so
/// the in-place route drops it and adds it back NOT VALID in the same transaction, then
/// validates it under SHARE UPDATE EXCLUSIVE.
fn in_place_ok(t: &Table, col: &Column) -> bool {
    !t.constraints
        .iter()
        .any(|c| matches!(c.kind.as_str(), "f" | "x") && c.columns.contains(&col.name))
        && !t
            .referenced_by
            .iter()
            .any(|c| c.columns.contains(&col.name))
}

fn check_in_place(ct: &ChangeType, t: &Table) -> Result<(), Vec<Precondition>> {
    let mut problems: Vec<Precondition> = views_using(ct, t);
    for message in super::shared::around::refusals(
        t,
        &ct.column.value,
        super::shared::around::Fate::RetypedInPlace,
    ) {
        problems.push(Precondition {
            pos: ct.column.pos,
            message,
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn views_using(ct: &ChangeType, t: &Table) -> Vec<Precondition> {
    t.views
        .iter()
        .filter(|v| v.columns.contains(&ct.column.value))
        .map(|v| Precondition {
            pos: ct.column.pos,
            message: format!(
                "view `{}` uses `{}.{}`; PostgreSQL cannot change the type of a column a view uses: drop the view first and recreate it afterwards",
                v.view.display_short(),
                t.name.display_short(),
                ct.column.value
            ),
        })
        .collect()
}

fn in_place(table: &QualifiedName, t: &Table, col: &Column, new_type: &str) -> RecipeOutput {
    let c = Ident::new(col.name.clone());
    let coll = col
        .collation
        .as_ref()
        .filter(|_| collatable(new_type))
        .map(|k| format!(" COLLATE {k}"))
        .unwrap_or_default();
    let old_coll = col
        .collation
        .as_ref()
        .map(|k| format!(" COLLATE {k}"))
        .unwrap_or_default();
    let short = t.name.display_short();
    let checks: Vec<_> = t
        .constraints
        .iter()
        .filter(|k| k.kind == "c" && k.columns.contains(&col.name))
        .collect();
    let mut sql = String::new();
    for k in &checks {
        sql.push_str(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {};\n",
            quote_ident(&k.name)
        ));
    }
    sql.push_str(&format!(
        "ALTER TABLE {table} ALTER COLUMN {c} TYPE {new_type}{coll};"
    ));
    // ALTER COLUMN … TYPE resets the storage to the type's default: set it back
    sql.push_str(&super::shared::carry::storage_sql(table, col, &c));
    for k in &checks {
        sql.push_str(&format!(
            "\nALTER TABLE {table} ADD CONSTRAINT {} {} NOT VALID;",
            quote_ident(&k.name),
            k.definition.trim_end_matches(" NOT VALID")
        ));
    }
    let mut steps = vec![Step::sql(
        if checks.is_empty() {
            format!(
                "change {c} on {short} from {} to {new_type} in place: binary-coercible, catalog only (no rewrite, indexes kept)",
                col.type_sql
            )
        } else {
            format!(
                "change {c} on {short} from {} to {new_type} in place: binary-coercible, catalog only (no rewrite, indexes kept); its CHECKs are dropped and added back NOT VALID in the same transaction, since ALTER COLUMN TYPE would re-check them with a scan under ACCESS EXCLUSIVE",
                col.type_sql
            )
        },
        table,
        LockLevel::AccessExclusive,
        sql,
    )
    .changes_row_type()];
    for k in checks.iter().filter(|k| k.validated) {
        steps.push(Step::sql(
            format!(
                "validate {} (scans {short}; reads and writes continue)",
                quote_ident(&k.name)
            ),
            table,
            LockLevel::ShareUpdateExclusive,
            format!(
                "ALTER TABLE {table} VALIDATE CONSTRAINT {};",
                quote_ident(&k.name)
            ),
        ));
    }
    // Undo: the old type (PostgreSQL checks every value against it: a scan, or a
    // rewrite, under ACCESS EXCLUSIVE), then the CHECKs validated again if the change
    // left them NOT VALID.
    let mut rollback = vec![Step::sql(
        format!(
            "change {c} back to {}: PostgreSQL checks every value against the old type (a scan, or a rewrite, under ACCESS EXCLUSIVE) and refuses if a wider value was written",
            col.type_sql
        ),
        table,
        LockLevel::AccessExclusive,
        format!(
            "ALTER TABLE {table} ALTER COLUMN {c} TYPE {}{old_coll};",
            col.type_sql
        ),
    )
    .changes_row_type()];
    rollback.extend(steps.iter().skip(1).cloned());
    let mut out = RecipeOutput::default();
    // Nothing to add first: the gate alone, then the change.
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: Vec::new(),
            rollback: Vec::new(),
            gate_after: Some(format!(
                "{}, and drain the old version: the next phase changes the type in place",
                read_through_cast(&c, &short, &col.type_sql, new_type)
            )),
        },
    ));
    out.phases.push((
        PhaseKind::SwitchReads,
        Contribution {
            steps,
            rollback,
            gate_after: None,
        },
    ));
    out.notes.push(format!(
        "change_type on {short}.{}: {} → {new_type} is binary-coercible: changed in place (catalog only), no shadow column; still a new result type for every statement that returns the column, hence the gate",
        col.name, col.type_sql
    ));
    out
}

fn check_shadow(
    ct: &ChangeType,
    t: &Table,
    col: &Column,
    knowledge: Knowledge<'_>,
) -> Result<(), Vec<Precondition>> {
    let short = t.name.display_short();
    let name = &ct.column.value;
    let mut problems = views_using(ct, t);
    let mut refuse = |message: String| {
        problems.push(Precondition {
            pos: ct.column.pos,
            message,
        })
    };
    match t.backfill_key() {
        None => refuse(format!(
            "`{short}` has no primary key or unique NOT NULL key to page the backfill by; add a primary key first"
        )),
        Some(k) if k.contains(name) => refuse(format!(
            "`{name}` is part of the key of `{short}` (the backfill pages by it); changing a key column's type this way is not supported: add a surrogate key first, or run ALTER COLUMN TYPE in a maintenance window"
        )),
        _ => {}
    }
    if col.generated.is_some() || col.identity.is_some() {
        refuse(format!(
            "`{name}` is an identity or generated column; change_type supports plain columns only"
        ));
    }
    for fk in t
        .constraints
        .iter()
        .filter(|c| c.kind == "f" && c.columns.contains(name))
    {
        refuse(format!(
            "foreign key `{}` uses `{short}.{name}`; drop it first (drop_constraint) and add it again after the type change (add_foreign_key)",
            fk.name
        ));
    }
    for fk in t.referenced_by.iter().filter(|c| c.columns.contains(name)) {
        refuse(format!(
            "foreign key `{}` on `{}` references `{short}.{name}`; drop it first and add it again after the type change (the referencing column's type must change too)",
            fk.name,
            fk.table.display_short()
        ));
    }
    for c in t
        .constraints
        .iter()
        .filter(|c| c.kind == "x" && c.columns.contains(name))
    {
        refuse(format!(
            "exclusion constraint `{}` uses `{name}`; exclusion constraints cannot be rebuilt without blocking writes",
            c.name
        ));
    }
    if col
        .default
        .as_deref()
        .is_some_and(|d| d.contains("nextval("))
    {
        refuse(format!(
            "`{name}` takes its default from a sequence (serial): the sequence may be owned by the column, and contract would drop it with the old copy; change the type in a maintenance window, or give the column a plain default first"
        ));
    }
    // generated columns, triggers, policies, rules, publications… naming the column
    for m in super::shared::around::refusals(t, name, super::shared::around::Fate::Retyped) {
        refuse(m);
    }
    if let Knowledge::Live(cat) = knowledge {
        if let Some(m) = super::shared::around::null_rejecting_type(cat, &ct.type_sql, name) {
            refuse(m);
        }
    }
    let rebuilds_index = t.indexes.iter().any(|i| i.columns.contains(name));
    if let Knowledge::Live(cat) = knowledge {
        if let Some(m) = common::concurrent_index_refusal(cat).filter(|_| rebuilds_index) {
            refuse(m);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The hidden names of the shadow route.
struct Names {
    tag: String,
    shadow: Ident,
    old_copy: Ident,
    not_null_check: Ident,
}

impl Names {
    fn new(plan: &str, table: &QualifiedName, column: &str) -> Names {
        let tag = object_tag(plan, &[&table.to_string(), column, "change_type"]);
        Names {
            shadow: Ident::new(derived_name(column, &format!("_new_{tag}"))),
            old_copy: Ident::new(derived_name(column, &format!("_old_{tag}"))),
            not_null_check: Ident::new(format!("pgphase_not_null_{tag}")),
            tag,
        }
    }
}

/// The sync of the shadow route: `col` (old type) drives the shadow through `using`.
fn sync(
    table: &QualifiedName,
    names: &Names,
    source: SyncColumn,
    target: SyncColumn,
    expr: String,
) -> Sync {
    let (function, trigger, update_trigger, dollar_tag) = Sync::named(table, &names.tag);
    Sync {
        table: table.clone(),
        function,
        trigger,
        update_trigger,
        dollar_tag,
        old: vec![source],
        new: vec![target],
        forward: vec![expr],
        reverse: None,
    }
}

/// What the application must do before the column's type changes under it: read the
/// column through a cast to the new type, so that every statement it holds (prepared
/// and cached by its driver) returns the same type before and after.
fn read_through_cast(c: &Ident, short: &str, old_type: &str, new_type: &str) -> String {
    format!(
        "deploy the application version that reads `{col}` on {short} as `{col}::{new_type}` in every SELECT list and RETURNING that returns it (its result type then stays {new_type} when the type changes, so statements its driver cached keep working) and writes only values that {old_type} holds until this plan has completed",
        col = c.as_str(),
    )
}

#[allow(clippy::too_many_arguments)]
fn shadow(
    plan: &str,
    batch_size: u32,
    ct: &ChangeType,
    table: &QualifiedName,
    t: Option<&Table>,
    col: Option<&Column>,
    new_type: &str,
    knowledge: Knowledge<'_>,
) -> RecipeOutput {
    let short = table.display_short();
    let c = Ident::new(ct.column.value.clone());
    let names = Names::new(plan, table, c.as_str());
    let (shadow_col, old_copy) = (&names.shadow, &names.old_copy);
    let old_type = col.map(|c| c.type_sql.clone());
    let old_type_text = old_type
        .clone()
        .unwrap_or_else(|| format!("<type of {}>", c.as_str()));
    let using = ct
        .using
        .as_ref()
        .map(|u| u.value.trim().to_string())
        .unwrap_or_else(|| c.to_string());
    let mut old_sc = SyncColumn::new(c.as_str(), old_type.clone());
    old_sc.has_equality = col.map(|c| c.has_equality).unwrap_or(true);
    let before = sync(
        table,
        &names,
        old_sc,
        SyncColumn::new(shadow_col.as_str(), Some(new_type.to_string())),
        using.clone(),
    );

    let mut out = RecipeOutput::default();
    if ct.reverse.is_some() {
        out.notes.push(format!(
            "change_type on {short}.{}: `reverse` is not used (the type changes at contract, after the old version is drained, so nothing computes the old type from the new one); it can be removed from the plan",
            c.as_str()
        ));
    }
    // 1. expand: the shadow column, nullable, no default.
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!("add the shadow column {shadow_col} {new_type} to {short}: nullable, no default, hidden from the application until contract{}", col.and_then(super::shared::carry::column_properties_text).map(|w| format!("; with {c}'s {w}")).unwrap_or_default()),
                table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {shadow_col} {new_type};{}", carried_properties(table, col, shadow_col, new_type)),
            )
            .changes_row_type()],
            rollback: vec![Step::sql(
                format!("drop the shadow column {shadow_col}"),
                table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {shadow_col};"),
            )
            .changes_row_type()],
            gate_after: None,
        },
    ));

    // 2. dual_write: prove the expression plans, then the sync triggers.
    let checks = probe(
        table,
        common::backfill_key(t),
        &[format!("CAST(({using}) AS {new_type})")],
        &[],
    );
    let mut dual = before.dual_write(&format!("{shadow_col} := {using} on every write of {c}"));
    dual.steps.splice(0..0, checks);
    out.phases.push((PhaseKind::DualWrite, dual));

    // 3. backfill, then carry over NOT NULL, indexes and CHECKs onto the shadow.
    let mut backfill = Contribution {
        steps: vec![before.backfill(common::backfill_key(t), batch_size)],
        rollback: Vec::new(),
        gate_after: Some(read_through_cast(&c, &short, &old_type_text, new_type)),
    };
    let mut copies = Vec::new();
    let mut statistics = Vec::new();
    if let (Some(t), Some(col)) = (t, col) {
        let mut taken: Vec<String> = t.indexes.iter().map(|i| i.name.clone()).collect();
        taken.extend(t.constraints.iter().map(|c| c.name.clone()));
        let tag = names.tag.clone();
        let mut new_name = |old: &str| -> String {
            let mut candidate = derived_name(old, &format!("_new_{tag}"));
            let mut n = 1;
            while taken.contains(&candidate) {
                candidate = derived_name(old, &format!("_new{n}_{tag}"));
                n += 1;
            }
            taken.push(candidate.clone());
            candidate
        };
        copies = super::shared::carry_over::carry_over(
            &mut backfill,
            t,
            col,
            table,
            (&c, shadow_col),
            &names.not_null_check,
            &mut new_name,
            knowledge,
        );
        let tag = names.tag.clone();
        statistics = super::shared::carry::statistics(
            &mut backfill,
            t,
            table,
            (c.as_str(), shadow_col.as_str()),
            &mut |orig| derived_name(orig, &format!("_new_{tag}")),
        );
        // PostgreSQL 18 names NOT NULL constraints: swap those names too.
        if col.not_null && common::major(knowledge) >= 18 {
            if let Some(nn) = t
                .constraints
                .iter()
                .find(|k| k.kind == "n" && k.columns.contains(&col.name))
            {
                let copy = derived_name(
                    &format!("{}_{}", table.name.as_str(), shadow_col.as_str()),
                    "_not_null",
                );
                copies.push((nn.name.clone(), copy));
            }
        }
    }
    out.phases.push((PhaseKind::Backfill, backfill));

    // 4. switch_reads: verify every row before the point of no return.
    out.phases.push((
        PhaseKind::SwitchReads,
        Contribution {
            steps: vec![before.verify(common::backfill_key(t))],
            rollback: Vec::new(),
            gate_after: Some(format!(
                "confirm no running instance of the application still reads `{}` on {short} without the cast to {new_type} (the old version is fully drained): contract swaps in the new type",
                c.as_str()
            )),
        },
    ));

    // 5. contract: the swap and the drop of the old column, in one short transaction.
    let default = col.and_then(|c| c.default.clone());
    // the copy of an index is renamed like an index, the copy of a constraint (index
    // backed or not) like a constraint
    let rename = |original: &str, from: &str, to: &str| -> String {
        let plain_index = t.is_some_and(|t| {
            t.indexes.iter().any(|i| i.name == original)
                && !t.constraints.iter().any(|k| k.name == original)
        });
        if plain_index {
            format!(
                "ALTER INDEX {} RENAME TO {};\n",
                QualifiedName::new(table.schema.as_str(), from),
                quote_ident(to)
            )
        } else {
            format!(
                "ALTER TABLE {table} RENAME CONSTRAINT {} TO {};\n",
                quote_ident(from),
                quote_ident(to)
            )
        }
    };
    let hidden = |orig: &str| derived_name(orig, &format!("_old_{}", names.tag));
    let mut swap = String::new();
    swap.push_str(&before.drop_triggers_sql());
    swap.push('\n');
    swap.push_str(&format!(
        "ALTER TABLE {table} RENAME COLUMN {c} TO {old_copy};\nALTER TABLE {table} RENAME COLUMN {shadow_col} TO {c};\n"
    ));
    if let Some(d) = &default {
        swap.push_str(&format!(
            "ALTER TABLE {table} ALTER COLUMN {c} SET DEFAULT {d};\n"
        ));
    }
    for (orig, copy) in &copies {
        swap.push_str(&rename(orig, orig, &hidden(orig)));
        swap.push_str(&rename(orig, copy, orig));
    }
    swap.push_str(&identity_sql(table, t, &copies));
    swap.push_str(&format!(
        "ALTER TABLE {table} DROP COLUMN IF EXISTS {old_copy};\n{}{}",
        super::shared::carry::statistics_renames(&statistics),
        before.drop_function_sql()
    ));
    let shadow_gone = format!(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {} AND NOT attisdropped)",
        table.regclass_literal(),
        quote_literal(shadow_col.as_str())
    );
    if let Some(t) = t {
        out.drops.push(crate::program::ContractDrop {
            name_stays: true, // the shadow takes the column's name
            ..super::shared::around::contract_drop(t, Some(c.as_str()))
        });
        out.notes.extend(super::shared::around::publication_note(
            t,
            &format!("`{shadow_col}`"),
        ));
    }
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "swap in one short transaction (catalog only): {shadow_col} becomes {c} with its default, indexes and constraint names; the old column (as {old_copy}), its indexes and constraints, the sync triggers and the function are dropped"
                ),
                table,
                LockLevel::AccessExclusive,
                swap,
            )
            .skip_if(shadow_gone)
            .changes_row_type()],
            rollback: Vec::new(),
            gate_after: None,
        },
    ));
    out
}

/// The column's comment, grants, statistics target — and storage and compression
/// between text types — given to the shadow column with its `ADD COLUMN`: after the
/// swap it is the column.
fn carried_properties(
    table: &QualifiedName,
    col: Option<&Column>,
    shadow: &Ident,
    new_type: &str,
) -> String {
    col.map(|c| {
        let alike = collatable(&c.type_sql) && collatable(new_type);
        super::shared::carry::column_properties(table, c, shadow, alike)
    })
    .unwrap_or_default()
}

/// The replica identity, when it is an index on the column: after the swap its copy
/// on the new column carries the original name, and becomes the replica identity
/// before the old copy (and its index) is dropped.
fn identity_sql(table: &QualifiedName, t: Option<&Table>, copies: &[(String, String)]) -> String {
    t.and_then(|t| super::shared::carry::replica_identity_copy(t, copies))
        .map(|(orig, _)| {
            format!(
                "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {};\n",
                quote_ident(orig)
            )
        })
        .unwrap_or_default()
}

/// A type's text as `format_type` prints it, reduced to (base, modifiers), for the
/// handful of types whose binary-coercible changes are recognised. None: unknown.
fn parse_type(text: &str) -> Option<(&'static str, Vec<i64>)> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    let (mods, rest) = match (lower.find('('), lower.find(')')) {
        (Some(a), Some(b)) if a < b => {
            let mods: Option<Vec<i64>> = lower[a + 1..b]
                .split(',')
                .map(|m| m.trim().parse::<i64>().ok())
                .collect();
            let rest = format!("{}{}", &lower[..a].trim_end(), &lower[b + 1..]);
            (mods?, rest)
        }
        (None, None) => (Vec::new(), lower.clone()),
        _ => return None,
    };
    let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let base = match rest.as_str() {
        "varchar" | "character varying" => "varchar",
        "text" => "text",
        "numeric" | "decimal" => "numeric",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        "interval" => "interval",
        "varbit" | "bit varying" => "varbit",
        "cidr" => "cidr",
        "inet" => "inet",
        _ => return None,
    };
    let mods = if base == "numeric" && mods.len() == 1 {
        vec![mods[0], 0]
    } else {
        mods
    };
    Some((base, mods))
}

/// Whether the two spellings name the same type (refused: nothing to change).
fn same_type(old: &str, new: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .to_ascii_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (parse_type(old), parse_type(new)) {
        (Some(a), Some(b)) => a == b,
        _ => norm(old) == norm(new),
    }
}

fn collatable(ty: &str) -> bool {
    matches!(parse_type(ty), Some(("varchar" | "text", _)))
}

/// Conservative: true only for changes PostgreSQL makes without a rewrite or a scan.
pub(super) fn binary_coercible(old: &str, new: &str) -> bool {
    let (Some((ob, om)), Some((nb, nm))) = (parse_type(old), parse_type(new)) else {
        return false;
    };
    let wider = |o: &[i64], n: &[i64]| n.is_empty() || (!o.is_empty() && n[0] >= o[0]);
    match (ob, nb) {
        ("varchar", "varchar") => wider(&om, &nm),
        ("varchar", "text") => true,
        ("text", "varchar") => nm.is_empty(),
        ("numeric", "numeric") => {
            nm.is_empty() || (om.len() == 2 && nm.len() == 2 && nm[0] >= om[0] && nm[1] == om[1])
        }
        ("timestamp", "timestamp")
        | ("timestamptz", "timestamptz")
        | ("time", "time")
        | ("timetz", "timetz")
        | ("interval", "interval")
        | ("varbit", "varbit") => wider(&om, &nm),
        ("cidr", "inet") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_coercible_changes() {
        for (o, n) in [
            ("character varying(20)", "varchar(40)"),
            ("character varying(20)", "text"),
            ("character varying(20)", "varchar"),
            ("text", "character varying"),
            ("numeric(10,2)", "numeric(12, 2)"),
            ("numeric(10,2)", "numeric"),
            ("timestamp(3) without time zone", "timestamp"),
            ("timestamp(3) with time zone", "timestamptz(6)"),
            ("time(0) without time zone", "time(3)"),
            ("interval(2)", "interval"),
            ("bit varying(4)", "varbit(8)"),
            ("cidr", "inet"),
        ] {
            assert!(binary_coercible(o, n), "{o} → {n}");
        }
        for (o, n) in [
            ("character varying(20)", "varchar(10)"),
            ("text", "varchar(10)"),
            ("character varying", "varchar(10)"),
            ("numeric(10,2)", "numeric(12,3)"),
            ("numeric", "numeric(12,2)"),
            ("integer", "bigint"),
            ("timestamp without time zone", "timestamptz"),
            ("timestamp without time zone", "timestamp(3)"),
            ("inet", "cidr"),
            ("character varying(20)[]", "text[]"),
            ("interval day to second", "interval"),
            ("text", "citext"),
        ] {
            assert!(!binary_coercible(o, n), "{o} → {n}");
        }
        assert!(same_type("character varying(20)", "VARCHAR( 20 )"));
        assert!(same_type("integer", "integer"));
        assert!(!same_type("integer", "int4"));
    }
}
