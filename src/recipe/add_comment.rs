//! `add_comment: { table, column, comment }`: `COMMENT ON` the table (or one of its
//! columns) with the given text. Catalog only, no gate; the undo restores the comment
//! the catalog showed at `start` exactly (none included).

use super::kind::{ChangeKind, Context};
use super::shared::{common, footprint};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::{quote_ident, quote_literal, QualifiedName};

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddComment {
    pub table: At<String>,
    /// The column to comment on; the table when omitted.
    pub column: Option<At<String>>,
    /// The comment's text, stored as written.
    pub comment: At<String>,
}

impl AddComment {
    fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }

    /// `COMMENT ON TABLE t` or `COMMENT ON COLUMN t.c`, and what it names, for messages.
    fn target(&self) -> (String, String) {
        let table = self.table_name();
        match &self.column {
            Some(c) => (
                format!("COLUMN {table}.{}", quote_ident(c)),
                format!("column {}", quote_ident(c)),
            ),
            None => (format!("TABLE {table}"), format!("table {table}")),
        }
    }
}

fn comment_step(target: &str, table: &QualifiedName, text: Option<&str>, what: String) -> Step {
    let value = text.map_or_else(|| "NULL".to_string(), quote_literal);
    Step::sql(
        what,
        table,
        LockLevel::ShareUpdateExclusive,
        format!("COMMENT ON {target} IS {value};"),
    )
}

impl ChangeKind for AddComment {
    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        QualifiedName::parse(&self.table).map_err(|m| (self.table.pos, m))?;
        if let Some(c) = &self.column {
            check::check_ident(c).map_err(|m| (c.pos, m))?;
        }
        if self.comment.value.contains('\0') {
            return Err((self.comment.pos, "`comment` contains a NUL character".into()));
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        vec![self.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        match &self.column {
            Some(c) => vec![footprint::col(&self.table_name(), c)],
            None => vec![footprint::whole(self.table_name(), self.table.pos)],
        }
    }

    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        let table = self.table_name();
        let (target, what) = self.target();
        let previous = match cx.knowledge {
            Knowledge::Live(cat) => {
                let Some(t) = cat.table(&table) else {
                    return Err(vec![Precondition {
                        pos: self.table.pos,
                        message: common::missing_table(&self.table),
                    }]);
                };
                Some(match &self.column {
                    None => t.comment.clone(),
                    Some(c) => match t.column(c) {
                        Some(col) => col.comment.clone(),
                        None => {
                            let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                            return Err(vec![Precondition {
                                pos: c.pos,
                                message: format!(
                                    "`{}` has no column `{}`; its columns are: {}",
                                    t.name.display_short(),
                                    c.value,
                                    cols.join(", ")
                                ),
                            }]);
                        }
                    },
                })
            }
            Knowledge::Offline => None,
        };
        let mut c = Contribution {
            steps: vec![comment_step(
                &target,
                &table,
                Some(&self.comment),
                format!("comment on {what} (catalog only)"),
            )],
            ..Default::default()
        };
        if let Some(previous) = previous {
            c.rollback.push(comment_step(
                &target,
                &table,
                previous.as_deref(),
                format!("restore the previous comment on {what}"),
            ));
        }
        let mut out = RecipeOutput::default();
        out.phases.push((PhaseKind::Expand, c));
        Ok(out)
    }
}
