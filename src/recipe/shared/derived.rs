//! Derived columns kept in sync: the engine behind `change_type` (shadow route),
//! `split_column` and `merge_columns`.
//!
//! Old columns O and new columns N, with forward expressions N := f(O) and reverse
//! expressions O := r(N), written over column names as SQL over the row. One BEFORE
//! INSERT and one WHEN-filtered BEFORE UPDATE trigger (named `zz_pgphase_…`, so they run
//! after the application's own triggers) call a function in schema `pgphase` that
//! only assigns to NEW:
//!
//! - INSERT with every new column NULL (an old client) → N := f(O);
//!   otherwise (a new client) → O := r(N);
//! - UPDATE that changes a new column → O := r(N);
//! - UPDATE that changes an old column, or of a row not backfilled yet (every new
//!   column NULL) → N := f(O).
//!
//! Without reverse expressions (change_type's copy nobody writes) INSERTs always take
//! the first branch and UPDATEs the last.
//!
//! Inside the function the expressions of one direction are evaluated by one scoped
//! query, `SELECT e1, e2 INTO NEW.a, NEW.b FROM (SELECT NEW.*) AS <table>`: PostgreSQL
//! itself resolves the column names, so quoted identifiers, string literals, names that
//! are substrings of others and `<table>.column` references mean exactly what they mean
//! in the backfill's `UPDATE … SET n = expr`. (Rewriting the expressions to `NEW.col`
//! would save the query per row but re-implement SQL's lexing: dollar quotes, `E''`
//! strings, keywords that are also column names.) `#variable_conflict use_column` keeps
//! columns named like PL/pgSQL variables (`found`, `new`) columns.

use crate::program::{
    Action, BackfillSpec, Contribution, KeyedScan, LockLevel, Step, BACKFILL_GUC,
};
use crate::sql::{quote_ident, quote_literal, Ident, QualifiedName};

/// A column the sync reads or writes.
#[derive(Clone, Debug)]
pub(in crate::recipe) struct SyncColumn {
    pub name: Ident,
    /// The column's type, when known (offline expansion does not know old types).
    pub type_sql: Option<String>,
    /// The type has `=`; otherwise values are compared as text.
    pub has_equality: bool,
}

impl SyncColumn {
    pub fn new(name: &str, type_sql: Option<String>) -> SyncColumn {
        let has_equality = type_sql.as_deref().is_none_or(type_has_equality);
        SyncColumn {
            name: Ident::new(name),
            type_sql,
            has_equality,
        }
    }
    fn cmp(&self, prefix: &str) -> String {
        let v = format!("{prefix}{}", self.name);
        if self.has_equality {
            v
        } else {
            format!("({v})::text")
        }
    }
    /// `CAST((expr) AS type)`, or the bare expression when the type is unknown.
    fn cast(&self, expr: &str) -> String {
        match &self.type_sql {
            Some(t) => format!("CAST(({}) AS {t})", expr.trim()),
            None => format!("({})", expr.trim()),
        }
    }
}

/// Types without an `=` operator, compared as text (as the catalog's `has_equality`).
fn type_has_equality(type_sql: &str) -> bool {
    let t = type_sql.trim().to_ascii_lowercase();
    let base = t.trim_end_matches("[]");
    !matches!(
        base,
        "json" | "xml" | "point" | "line" | "lseg" | "box" | "path" | "polygon" | "circle"
    )
}

/// One sync: its objects' names, columns and expressions.
pub(in crate::recipe) struct Sync {
    pub table: QualifiedName,
    pub function: QualifiedName,
    pub trigger: Ident,
    pub update_trigger: Ident,
    pub dollar_tag: String,
    pub old: Vec<SyncColumn>,
    pub new: Vec<SyncColumn>,
    /// One per new column, over the row.
    pub forward: Vec<String>,
    /// One per old column, over the row; None: the new columns are never written by
    /// clients (change_type's hidden copy).
    pub reverse: Option<Vec<String>>,
}

impl Sync {
    /// Names derived from the change's tag, so a resumed or rolled-back run finds them.
    pub fn named(table: &QualifiedName, tag: &str) -> (QualifiedName, Ident, Ident, String) {
        let _ = table;
        (
            QualifiedName::new("pgphase", format!("sync_{tag}")),
            Ident::new(format!("zz_pgphase_sync_{tag}")),
            Ident::new(format!("zz_pgphase_sync_{tag}_u")),
            format!("$pgphase_{tag}$"),
        )
    }

    /// `SELECT e1, e2 INTO NEW.a, NEW.b FROM (SELECT NEW.*) AS <table>;`: one query
    /// evaluates every expression of a direction over the row.
    fn assign(&self, targets: &[SyncColumn], exprs: &[String], indent: &str) -> String {
        let values: Vec<String> = targets.iter().zip(exprs).map(|(c, e)| c.cast(e)).collect();
        let into: Vec<String> = targets.iter().map(|c| format!("NEW.{}", c.name)).collect();
        format!(
            "{indent}SELECT {}\n{indent}  INTO {} FROM (SELECT NEW.*) AS {};\n",
            values.join(", "),
            into.join(", "),
            quote_ident(self.table.name.as_str())
        )
    }

    fn assign_forward(&self, indent: &str) -> String {
        self.assign(&self.new, &self.forward, indent)
    }

    fn assign_reverse(&self, reverse: &[String], indent: &str) -> String {
        self.assign(&self.old, reverse, indent)
    }

    fn any_changed(cols: &[SyncColumn]) -> String {
        cols.iter()
            .map(|c| format!("{} IS DISTINCT FROM {}", c.cmp("NEW."), c.cmp("OLD.")))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// True while the row has no value in any new column (an old client's INSERT, or a
    /// row the backfill has not reached).
    fn all_new_null(&self, prefix: &str) -> String {
        self.new
            .iter()
            .map(|c| format!("{prefix}{} IS NULL", c.name))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    pub fn function_sql(&self) -> String {
        let tag = &self.dollar_tag;
        let body = match &self.reverse {
            Some(reverse) => format!(
                "  IF TG_OP = 'INSERT' THEN
    IF {all_null} THEN
      -- an old client wrote the old columns
{fwd4}    ELSE
      -- a new client wrote the new columns
{rev4}    END IF;
  ELSIF {new_changed} THEN
    -- a new client changed a new column (NULL included)
{rev2}  ELSE
    -- an old client changed an old column, or the row is not backfilled yet
{fwd2}  END IF;
",
                all_null = self.all_new_null("NEW."),
                new_changed = Self::any_changed(&self.new),
                fwd4 = self.assign_forward("      "),
                rev4 = self.assign_reverse(reverse, "      "),
                rev2 = self.assign_reverse(reverse, "    "),
                fwd2 = self.assign_forward("    "),
            ),
            None => format!(
                "  -- INSERTs, and UPDATEs of the source column (see the trigger's WHEN)\n{}",
                self.assign_forward("  ")
            ),
        };
        format!(
            "CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS {tag}
#variable_conflict use_column
BEGIN
  -- Only assigns to NEW: no recursion, no extra writes.
{body}  RETURN NEW;
END
{tag};",
            func = self.function
        )
    }

    /// The UPDATE trigger's WHEN: evaluated by the executor, so UPDATEs of other
    /// columns and the backfill's own batches never call the function.
    fn update_when(&self) -> String {
        let mut parts = Vec::new();
        if self.reverse.is_some() {
            parts.push(Self::any_changed(&self.new));
        }
        parts.push(Self::any_changed(&self.old));
        parts.push(format!("({})", self.all_new_null("NEW.")));
        format!(
            "({}) AND current_setting('{BACKFILL_GUC}', true) IS DISTINCT FROM 'on'",
            parts.join(" OR ")
        )
    }

    pub fn create_triggers_sql(&self) -> String {
        let (table, func) = (&self.table, &self.function);
        format!(
            "CREATE TRIGGER {t} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {func}();\nCREATE TRIGGER {u} BEFORE UPDATE ON {table} FOR EACH ROW\n  WHEN ({when})\n  EXECUTE FUNCTION {func}();",
            t = self.trigger,
            u = self.update_trigger,
            when = self.update_when()
        )
    }

    pub fn drop_triggers_sql(&self) -> String {
        format!(
            "DROP TRIGGER IF EXISTS {t} ON {table};\nDROP TRIGGER IF EXISTS {u} ON {table};",
            t = self.trigger,
            u = self.update_trigger,
            table = self.table
        )
    }

    pub fn drop_function_sql(&self) -> String {
        format!("DROP FUNCTION IF EXISTS {}();", self.function)
    }

    fn triggers_exist(&self) -> String {
        format!(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {}::regclass AND tgname = {})",
            self.table.regclass_literal(),
            quote_literal(self.trigger.as_str())
        )
    }

    fn names(cols: &[SyncColumn]) -> String {
        cols.iter()
            .map(|c| c.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// dual_write: the function and the triggers; undo removes both.
    pub fn dual_write(&self, what: &str) -> Contribution {
        let short = self.table.display_short();
        Contribution {
            steps: vec![
                Step {
                    description: format!("create the sync function ({what})"),
                    action: Action::Sql {
                        sql: self.function_sql(),
                        skip_if: None,
                    },
                    lock: LockLevel::AccessShare,
                    table: None,
                    changes_row_type: false,
                },
                Step::sql(
                    if self.reverse.is_some() {
                        format!(
                            "install the BEFORE INSERT and BEFORE UPDATE triggers on {short}: {} and {} stay in sync whichever side a client writes",
                            Self::names(&self.old),
                            Self::names(&self.new)
                        )
                    } else {
                        format!(
                            "install the BEFORE INSERT and BEFORE UPDATE triggers on {short}: every write of {} recomputes {}",
                            Self::names(&self.old),
                            Self::names(&self.new)
                        )
                    },
                    &self.table,
                    LockLevel::ShareRowExclusive,
                    self.create_triggers_sql(),
                )
                .skip_if(self.triggers_exist()),
            ],
            rollback: vec![
                Step::sql(
                    format!("remove the sync triggers from {short}"),
                    &self.table,
                    LockLevel::AccessExclusive,
                    self.drop_triggers_sql(),
                ),
                Step {
                    description: "drop the sync function".into(),
                    action: Action::Sql {
                        sql: self.drop_function_sql(),
                        skip_if: None,
                    },
                    lock: LockLevel::AccessShare,
                    table: None,
                    changes_row_type: false,
                },
            ],
            gate_after: None,
        }
    }

    /// The batched backfill: rows with no value in any new column get N := f(O). Its
    /// batches set `pgphase.backfill`, so the UPDATE trigger leaves them alone.
    pub fn backfill(&self, key: Vec<(String, String)>, batch_size: u32) -> Step {
        let set = self
            .new
            .iter()
            .zip(&self.forward)
            .map(|(c, f)| format!("{} = {}", c.name, c.cast(f)))
            .collect::<Vec<_>>()
            .join(", ");
        Step {
            description: format!(
                "compute {} from {} for existing rows, in key order, one short transaction per batch with a checkpoint",
                Self::names(&self.new),
                Self::names(&self.old)
            ),
            action: Action::Backfill(BackfillSpec {
                table: self.table.clone(),
                key,
                set,
                needs_work: self.all_new_null(""),
                batch_size,
            }),
            lock: LockLevel::RowExclusive,
            table: Some(self.table.clone()),
            changes_row_type: false,
        }
    }

    /// Counts the rows where a new column differs from its forward expression, in
    /// batches of `key`.
    pub fn verify(&self, key: Vec<(String, String)>) -> Step {
        let cond = self
            .new
            .iter()
            .zip(&self.forward)
            .map(|(c, f)| {
                let computed = c.cast(f);
                let computed = if c.has_equality {
                    computed
                } else {
                    format!("({computed})::text")
                };
                format!("{} IS DISTINCT FROM {computed}", c.cmp(""))
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        Step {
            description: format!(
                "verify {} agree with {} on every row of {}",
                Self::names(&self.new),
                Self::names(&self.old),
                self.table.display_short()
            ),
            action: Action::Verify {
                sql: format!("SELECT count(*) FROM {} WHERE {cond};", self.table),
                failure: format!(
                    "rows of {} where {} differ from what the expressions compute",
                    self.table.display_short(),
                    Self::names(&self.new)
                ),
                scan: Some(KeyedScan {
                    table: self.table.clone(),
                    key,
                    select: format!("count(*) FILTER (WHERE {cond})"),
                }),
            },
            lock: LockLevel::AccessShare,
            table: Some(self.table.clone()),
            changes_row_type: false,
        }
    }
}

/// Evaluates the forward expressions (`select`, cast to the new types) on every existing
/// row — one scan under ACCESS SHARE — and plans the reverse ones (`plan_only`: queries,
/// run with LIMIT 0): a typo, a type error or an existing value the expression cannot
/// convert fails here, before any trigger could fail an application write.
pub(in crate::recipe) fn probe(
    table: &QualifiedName,
    key: Vec<(String, String)>,
    select: &[String],
    plan_only: &[String],
) -> Vec<Step> {
    let short = table.display_short();
    let mut steps = vec![Step {
        description: format!(
            "evaluate the forward expressions on every row of {short} (in key-ordered batches, reads and writes continue): a value they cannot convert fails here, not in an application write"
        ),
        action: Action::Verify {
            // count() evaluates its argument on every row; the result is always 0
            sql: format!(
                "SELECT 0 * count(ROW({})) FROM {table};",
                select.join(", ")
            ),
            failure: "never: the query returns 0 or fails".into(),
            scan: Some(KeyedScan {
                table: table.clone(),
                key,
                select: format!("0 * count(ROW({}))", select.join(", ")),
            }),
        },
        lock: LockLevel::AccessShare,
        table: Some(table.clone()),
        changes_row_type: false,
    }];
    if !plan_only.is_empty() {
        let from = plan_only
            .iter()
            .enumerate()
            .map(|(i, q)| format!("({q} LIMIT 0) AS pgphase_probe{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        steps.push(Step {
            description: format!(
                "check that the reverse expressions parse and type-check against {short} (plans a query, reads no row)"
            ),
            action: Action::Verify {
                sql: format!("SELECT count(*) FROM {from};"),
                failure: "rows from a LIMIT 0 query".into(),
                scan: None,
            },
            lock: LockLevel::AccessShare,
            table: Some(table.clone()),
            changes_row_type: false,
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(reverse: bool) -> Sync {
        let table = QualifiedName::new("public", "comments");
        let (function, trigger, update_trigger, dollar_tag) = Sync::named(&table, "abcd0123");
        Sync {
            table,
            function,
            trigger,
            update_trigger,
            dollar_tag,
            old: vec![SyncColumn::new("author name", Some("text".into()))],
            new: vec![
                SyncColumn::new("first", Some("text".into())),
                SyncColumn::new("meta", Some("json".into())),
            ],
            forward: vec![
                "split_part(\"author name\", ' ', 1)".into(),
                "json_build_object('author name', \"author name\")".into(),
            ],
            reverse: reverse.then(|| vec!["first || ' x'".into()]),
        }
    }

    #[test]
    fn function_evaluates_over_the_row_and_quotes() {
        let f = sync(true).function_sql();
        assert!(f.contains("SELECT CAST((split_part(\"author name\", ' ', 1)) AS text), CAST((json_build_object('author name', \"author name\")) AS json)\n      INTO NEW.first, NEW.meta FROM (SELECT NEW.*) AS comments;"), "{f}");
        assert!(f.contains("#variable_conflict use_column"));
        assert!(f.contains("SELECT CAST((first || ' x') AS text)\n      INTO NEW.\"author name\" FROM (SELECT NEW.*) AS comments;"), "{f}");
        let t = sync(true).create_triggers_sql();
        assert!(
            t.contains("(NEW.meta)::text IS DISTINCT FROM (OLD.meta)::text"),
            "{t}"
        );
        let f = sync(false).function_sql();
        assert!(!f.contains("TG_OP"), "{f}");
        let t = sync(false).create_triggers_sql();
        assert!(!t.contains("NEW.first IS DISTINCT FROM"), "{t}");
    }
}
