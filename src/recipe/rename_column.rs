//! `rename_column`: add the new column, keep both in sync with triggers, backfill,
//! carry over NOT NULL / indexes / constraints, switch the application, drop the old.

use super::kind::{ChangeKind, Context};
use super::shared::carry_over::{carry_over, rename_name_part};
use super::shared::{footprint, planned};
use super::{object_tag, Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::catalog::{Column, Table};
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::BACKFILL_GUC;
use crate::program::{
    Action, BackfillSpec, Contribution, KeyedScan, LockLevel, RecipeOutput, Step,
};
use crate::sql::{derived_name, quote_ident, quote_literal, Ident, QualifiedName};

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    pub table: At<String>,
    pub from: At<String>,
    pub to: At<String>,
}

impl RenameColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for RenameColumn {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        expand(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let rc = self;
        QualifiedName::parse(&rc.table).map_err(|m| err(rc.table.pos, m))?;
        check::check_ident(&rc.from).map_err(|m| err(rc.from.pos, m))?;
        check::check_ident(&rc.to).map_err(|m| err(rc.to.pos, m))?;
        if rc.from.value == rc.to.value {
            return Err(err(
                rc.to.pos,
                format!(
                    "`to` is the same as `from` (`{}`): nothing to rename",
                    rc.to.value
                ),
            ));
        }
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let rc = self;
        vec![(rc.table_name(), &rc.from), (rc.table_name(), &rc.to)]
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let rc = self;
        vec![rc.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let rc = self;
        let t = rc.table_name();
        vec![footprint::col(&t, &rc.from), footprint::col(&t, &rc.to)]
    }

    fn replaced(&self) -> Vec<footprint::Replaced> {
        let rc = self;
        vec![footprint::Replaced {
            table: rc.table_name(),
            column: rc.from.value.clone(),
            how: format!("renamed to `{}`", rc.to.value),
            fix: format!(
                "name `{}`: a change later in the plan sees the table as the rename leaves it",
                rc.to.value
            ),
        }]
    }

    fn synced(&self) -> Vec<(QualifiedName, String)> {
        let rc = self;
        vec![(rc.table_name(), rc.to.value.clone())]
    }

    fn apply(&self, cat: &mut Catalog) {
        let rc = self;
        if let Some(t) = planned::table(cat, &rc.table_name()) {
            if let Some(c) = t.column(&rc.from).cloned() {
                t.columns.retain(|c| c.name != rc.from.value);
                t.columns.push(Column {
                    name: rc.to.value.clone(),
                    attnum: 0,
                    owned_sequence: None,
                    ..c
                });
            }
        };
    }
}

/// Names of the objects this change creates; derived from the plan so a resumed or
/// rolled-back run finds them again.
struct Names {
    function: QualifiedName,
    /// BEFORE row triggers fire in name order; `zz_` makes ours run after the
    /// application's own triggers, so it syncs the values they settled on.
    trigger: Ident,
    update_trigger: Ident,
    not_null_check: Ident,
    dollar_tag: String,
}

impl Names {
    fn new(plan: &str, table: &QualifiedName, from: &str, to: &str) -> Names {
        let tag = object_tag(plan, &[&table.to_string(), from, to]);
        Names {
            function: QualifiedName::new("pgphase", format!("sync_{tag}")),
            trigger: Ident::new(format!("zz_pgphase_sync_{tag}")),
            update_trigger: Ident::new(format!("zz_pgphase_sync_{tag}_u")),
            not_null_check: Ident::new(format!("pgphase_not_null_{tag}")),
            dollar_tag: format!("$pgphase_{tag}$"),
        }
    }
}

pub(super) fn expand(
    plan: &str,
    batch_size: u32,
    rc: &RenameColumn,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = rc.table_name();
    let from = Ident::new(rc.from.value.clone());
    let to = Ident::new(rc.to.value.clone());
    let names = Names::new(plan, &table, from.as_str(), to.as_str());

    let (t, col) = match knowledge {
        Knowledge::Live(cat) => {
            let (t, col) = check(rc, cat.table(&table), cat.major_version())?;
            let rebuilds_index = t.indexes.iter().any(|i| i.columns.contains(&rc.from.value));
            if let Some(m) =
                super::shared::common::concurrent_index_refusal(cat).filter(|_| rebuilds_index)
            {
                return Err(vec![Precondition {
                    pos: rc.from.pos,
                    message: m,
                }]);
            }
            (Some(t), Some(col))
        }
        Knowledge::Offline => (None, None),
    };

    let mut out = RecipeOutput::default();
    let short = table.display_short();

    // 1. expand: the new column, nullable, same type and collation.
    let type_sql = match col {
        Some(c) => {
            let mut s = c.type_sql.clone();
            if let Some(coll) = &c.collation {
                s.push_str(" COLLATE ");
                s.push_str(coll);
            }
            s
        }
        None => format!("<type of {}>", from.as_str()),
    };
    let (properties, properties_text) = match col {
        Some(c) => (
            super::shared::carry::column_properties(&table, c, &to, true),
            super::shared::carry::column_properties_text(c)
                .map(|w| format!("; with {from}'s {w}"))
                .unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!("add {to} to {short}: nullable, no default, so the old application's writes are unaffected{properties_text}"),
                &table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {to} {type_sql};{properties}"),
            )
            .changes_row_type()],
            rollback: vec![Step::sql(
                format!("drop {to} from {short}"),
                &table,
                LockLevel::AccessExclusive,
                format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {to};"),
            )
            .changes_row_type()],
            gate_after: None,
        },
    ));

    // 2. dual_write: triggers that keep both columns equal, whichever one a client writes.
    let has_eq = col.map(|c| c.has_equality).unwrap_or(true);
    let cmp = |a: &str| {
        if has_eq {
            a.to_string()
        } else {
            format!("({a})::text")
        }
    };
    let (n_to, n_from, o_to, o_from) = (
        cmp(&format!("NEW.{to}")),
        cmp(&format!("NEW.{from}")),
        cmp(&format!("OLD.{to}")),
        cmp(&format!("OLD.{from}")),
    );
    let tag = &names.dollar_tag;
    let function_sql = format!(
        "CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS {tag}
BEGIN
  -- Only assigns to NEW: no recursion, no extra writes.
  IF TG_OP = 'INSERT' THEN
    IF NEW.{to} IS NULL THEN
      NEW.{to} := NEW.{from};      -- an old client wrote the old column
    ELSE
      NEW.{from} := NEW.{to};      -- a new client wrote the new column
    END IF;
  ELSIF {n_to} IS DISTINCT FROM {o_to} THEN
    NEW.{from} := NEW.{to};        -- a new client changed the new column (NULL included)
  ELSIF {n_from} IS DISTINCT FROM {o_from} OR {n_to} IS DISTINCT FROM {n_from} THEN
    NEW.{to} := NEW.{from};        -- an old client changed the old column, or the row is not backfilled yet
  END IF;
  RETURN NEW;
END
{tag};",
        func = names.function,
    );
    let (trigger, update_trigger) = (&names.trigger, &names.update_trigger);
    // UPDATEs that change neither column (the common case: other columns) and the
    // backfill's own batches (which set exactly what the function would) never call
    // the function: the WHEN clause is evaluated by the executor, not PL/pgSQL.
    let update_when = format!(
        "({n_to} IS DISTINCT FROM {o_to} OR {n_from} IS DISTINCT FROM {o_from} OR {n_to} IS DISTINCT FROM {n_from}) AND current_setting('{BACKFILL_GUC}', true) IS DISTINCT FROM 'on'"
    );
    let func = &names.function;
    out.phases.push((
        PhaseKind::DualWrite,
        Contribution {
            steps: vec![
                Step {
                    description: format!("create the sync function for {from} ↔ {to}"),
                    action: Action::Sql { sql: function_sql, skip_if: None },
                    lock: LockLevel::AccessShare,
                    table: None,
                    changes_row_type: false,
                },
                Step::sql(
                    format!("install the BEFORE INSERT and BEFORE UPDATE triggers on {short}: old clients write {from}, new clients write {to}, both stay equal"),
                    &table,
                    LockLevel::ShareRowExclusive,
                    format!(
                        "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {func}();\nCREATE TRIGGER {update_trigger} BEFORE UPDATE ON {table} FOR EACH ROW\n  WHEN ({update_when})\n  EXECUTE FUNCTION {func}();"
                    ),
                )
                .skip_if(format!(
                    "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {}::regclass AND tgname = {})",
                    table.regclass_literal(),
                    quote_literal(trigger.as_str())
                )),
            ],
            rollback: vec![
                Step::sql(
                    format!("remove the sync triggers from {short}"),
                    &table,
                    LockLevel::AccessExclusive,
                    format!("DROP TRIGGER IF EXISTS {trigger} ON {table};\nDROP TRIGGER IF EXISTS {update_trigger} ON {table};"),
                ),
                Step {
                    description: "drop the sync function".into(),
                    action: Action::Sql {
                        sql: format!("DROP FUNCTION IF EXISTS {func}();"),
                        skip_if: None,
                    },
                    lock: LockLevel::AccessShare,
                    table: None,
                    changes_row_type: false,
                },
            ],
            gate_after: None,
        },
    ));

    // 3. backfill, then carry over what the old column had.
    let key = super::shared::common::backfill_key(t);
    let mut backfill = Contribution {
        steps: vec![Step {
            description: format!(
                "copy {from} into {to} for existing rows, in key order, one short transaction per batch with a checkpoint"
            ),
            action: Action::Backfill(BackfillSpec {
                table: table.clone(),
                key: key.clone(),
                set: format!("{to} = {from}"),
                needs_work: format!("{n} IS DISTINCT FROM {o}", n = cmp(&to.quoted()), o = cmp(&from.quoted())),
                batch_size,
            }),
            lock: LockLevel::RowExclusive,
            table: Some(table.clone()),
            changes_row_type: false,
        }],
        rollback: Vec::new(),
        gate_after: Some(format!(
            "deploy the application version that reads and writes `{}` instead of `{}` on {short} (both columns stay in sync until contract)",
            to.as_str(),
            from.as_str()
        )),
    };
    let mut copies = Vec::new();
    if let (Some(t), Some(c)) = (t, col) {
        let mut taken: Vec<String> = t.indexes.iter().map(|i| i.name.clone()).collect();
        taken.extend(t.constraints.iter().map(|c| c.name.clone()));
        let mut new_name = |old: &str| -> String {
            let base = rename_name_part(old, from.as_str(), to.as_str());
            let mut candidate = derived_name(&base, "");
            let mut n = 1;
            while taken.contains(&candidate) {
                candidate = derived_name(&base, &format!("_{n}"));
                n += 1;
            }
            taken.push(candidate.clone());
            candidate
        };
        copies = carry_over(
            &mut backfill,
            t,
            c,
            &table,
            (&from, &to),
            &names.not_null_check,
            &mut new_name,
            knowledge,
        );
        let taken: Vec<String> = t
            .statistics
            .iter()
            .map(|s| s.name.name.to_string())
            .collect();
        super::shared::carry::statistics(
            &mut backfill,
            t,
            &table,
            (from.as_str(), to.as_str()),
            &mut |orig| {
                let base = rename_name_part(orig, from.as_str(), to.as_str());
                let mut candidate = derived_name(&base, "");
                let mut n = 1;
                while taken.contains(&candidate) {
                    candidate = derived_name(&base, &format!("_{n}"));
                    n += 1;
                }
                candidate
            },
        );
    }
    out.phases.push((PhaseKind::Backfill, backfill));

    // 4. switch_reads: prove the columns agree before the old one stops being written;
    // then the replica identity moves to the copy of its index (the columns are equal,
    // so the rows are identified the same way), undone by moving it back.
    let mut identity = Contribution::default();
    if let Some((orig, copy)) =
        t.and_then(|t| super::shared::carry::replica_identity_copy(t, &copies))
    {
        identity.steps.push(Step::sql(
            format!(
                "move the REPLICA IDENTITY of {short} to {} (catalog only): contract drops {}",
                quote_ident(copy),
                quote_ident(orig)
            ),
            &table,
            LockLevel::AccessExclusive,
            format!(
                "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {};",
                quote_ident(copy)
            ),
        ));
        identity.rollback.push(Step::sql(
            format!(
                "move the REPLICA IDENTITY of {short} back to {}",
                quote_ident(orig)
            ),
            &table,
            LockLevel::AccessExclusive,
            format!(
                "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {};",
                quote_ident(orig)
            ),
        ));
    }
    out.phases.push((
        PhaseKind::SwitchReads,
        Contribution {
            rollback: identity.rollback,
            steps: [Step {
                description: format!("verify {from} and {to} agree on every row of {short}"),
                action: Action::Verify {
                    sql: format!(
                        "SELECT count(*) FROM {table} WHERE {} IS DISTINCT FROM {};",
                        cmp(&to.quoted()),
                        cmp(&from.quoted())
                    ),
                    failure: format!("rows of {short} where {to} differs from {from}"),
                    scan: Some(KeyedScan {
                        table: table.clone(),
                        key: key.clone(),
                        select: format!(
                            "count(*) FILTER (WHERE {} IS DISTINCT FROM {})",
                            cmp(&to.quoted()),
                            cmp(&from.quoted())
                        ),
                    }),
                },
                lock: LockLevel::AccessShare,
                table: Some(table.clone()),
                changes_row_type: false,
            }]
            .into_iter()
            .chain(identity.steps)
            .collect(),
            gate_after: Some(format!(
                "confirm no running instance of the application still uses `{}` on {short} (the old version is fully drained)",
                from.as_str()
            )),
        },
    ));

    // 5. contract: one short transaction; the default moves over only now, because
    // while both columns are written a default on the new one would be
    // indistinguishable from a value an old client wrote.
    let mut contract_sql = format!(
        "DROP TRIGGER IF EXISTS {trigger} ON {table};\nDROP TRIGGER IF EXISTS {update_trigger} ON {table};\n"
    );
    // a sequence the old column owns (serial) would go with it: the new one owns it
    if let Some(seq) = col.and_then(|c| c.owned_sequence.as_ref()) {
        contract_sql.push_str(&format!("ALTER SEQUENCE {seq} OWNED BY {table}.{to};\n"));
    }
    contract_sql.push_str(&format!(
        "ALTER TABLE {table} DROP COLUMN IF EXISTS {from};\n"
    ));
    if let Some(default) = col.and_then(|c| c.default.as_ref()) {
        contract_sql.push_str(&format!(
            "ALTER TABLE {table} ALTER COLUMN {to} SET DEFAULT {default};\n"
        ));
    }
    contract_sql.push_str(&format!("DROP FUNCTION IF EXISTS {}();", names.function));
    let contract_desc = match col.and_then(|c| c.default.as_ref()) {
        Some(d) => format!("drop the sync trigger and {from}; {to} takes over the default {d}"),
        None => format!("drop the sync trigger and {from}"),
    };
    if let Some(t) = t {
        out.drops
            .push(super::shared::around::contract_drop(t, Some(from.as_str())));
        out.notes.extend(super::shared::around::publication_note(
            t,
            &format!("`{}`", to.as_str()),
        ));
    }
    out.phases.push((
        PhaseKind::Contract,
        Contribution {
            steps: vec![Step::sql(
                contract_desc,
                &table,
                LockLevel::AccessExclusive,
                contract_sql,
            )
            .changes_row_type()],
            rollback: Vec::new(),
            gate_after: None,
        },
    ));
    Ok(out)
}

/// Checks the change against the live table; returns the table and the old column.
fn check<'a>(
    rc: &RenameColumn,
    table: Option<&'a Table>,
    major: i32,
) -> Result<(&'a Table, &'a Column), Vec<Precondition>> {
    let p = |pos: Pos, message: String| vec![Precondition { pos, message }];
    let Some(t) = table else {
        return Err(p(
            rc.table.pos,
            format!(
                "table `{}` does not exist in the database (check the name and schema; names are case-sensitive)",
                rc.table.value
            ),
        ));
    };
    let short = t.name.display_short();
    let Some(col) = t.column(&rc.from) else {
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(p(
            rc.from.pos,
            format!(
                "`{short}` has no column `{}`; its columns are: {}",
                rc.from.value,
                cols.join(", ")
            ),
        ));
    };
    let mut problems = Vec::new();
    if t.column(&rc.to).is_some() {
        problems.push(Precondition {
            pos: rc.to.pos,
            message: format!(
                "`{short}` already has a column `{}`; choose another name, or drop that column first",
                rc.to.value
            ),
        });
    }
    if t.backfill_key().is_none() {
        problems.push(Precondition {
            pos: rc.table.pos,
            message: format!(
                "`{short}` has no primary key or unique NOT NULL key to page the backfill by; add a primary key first"
            ),
        });
    }
    if t.backfill_key().is_some_and(|k| k.contains(&rc.from.value)) {
        problems.push(Precondition {
            pos: rc.from.pos,
            message: format!(
                "`{}` is part of the key of `{short}`; renaming a key column is not supported yet (rename it in a maintenance window, or add a surrogate key first)",
                rc.from.value
            ),
        });
    }
    if col.generated.is_some() || col.identity.is_some() {
        problems.push(Precondition {
            pos: rc.from.pos,
            message: format!(
                "`{}` is an identity or generated column; rename_column supports plain columns only",
                rc.from.value
            ),
        });
    }
    for fk in &t.referenced_by {
        if fk.columns.contains(&rc.from.value) {
            problems.push(Precondition {
                pos: rc.from.pos,
                message: format!(
                    "foreign key `{}` on `{}` references `{short}.{}`; drop it first and re-add it on `{}` afterwards",
                    fk.name,
                    fk.table.display_short(),
                    rc.from.value,
                    rc.to.value
                ),
            });
        }
    }
    for v in t
        .views
        .iter()
        .filter(|v| v.columns.contains(&rc.from.value))
    {
        problems.push(Precondition {
            pos: rc.from.pos,
            message: format!(
                "view `{}` uses `{short}.{}`; contract could not drop the column (after the point of no return): drop the view first and recreate it on `{}` afterwards",
                v.view.display_short(),
                rc.from.value,
                rc.to.value
            ),
        });
    }
    for message in super::shared::around::refusals(
        t,
        &rc.from.value,
        super::shared::around::Fate::Renamed { to: &rc.to.value },
    ) {
        problems.push(Precondition {
            pos: rc.from.pos,
            message,
        });
    }
    if t.is_partitioned() && major < 18 {
        for fk in t
            .constraints
            .iter()
            .filter(|c| c.kind == "f" && c.columns.contains(&rc.from.value))
        {
            problems.push(Precondition {
                pos: rc.from.pos,
                message: format!(
                    "foreign key `{}` uses `{short}.{}` and `{short}` is partitioned: PostgreSQL {major} cannot add its copy on `{}` NOT VALID (18 can); drop it first and add it again per partition after the rename",
                    fk.name, rc.from.value, rc.to.value
                ),
            });
        }
    }
    for c in &t.constraints {
        if c.kind == "x" && c.columns.contains(&rc.from.value) {
            problems.push(Precondition {
                pos: rc.from.pos,
                message: format!(
                    "exclusion constraint `{}` uses `{}`; exclusion constraints cannot be rebuilt without blocking writes",
                    c.name, rc.from.value
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok((t, col))
    } else {
        Err(problems)
    }
}
