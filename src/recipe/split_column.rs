//! `split_column`: one old column → several new (see shared/derived_columns.rs).

use super::kind::{ChangeKind, Context};
use super::shared::derived_columns::derived;
use super::shared::derived_columns::DerivedColumn;
use super::shared::{derived_columns, footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::plan::{check, At, Pos};
use crate::program::RecipeOutput;
use crate::sql::QualifiedName;

/// `split_column: { table, from, into: [ { name, type, using } ], reverse }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitColumn {
    pub table: At<String>,
    pub from: At<String>,
    pub into: At<Vec<DerivedColumn>>,
    /// SQL expression over the new columns that rebuilds `from`.
    pub reverse: At<String>,
}

impl SplitColumn {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for SplitColumn {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        split(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let sc = self;
        QualifiedName::parse(&sc.table).map_err(|m| err(sc.table.pos, m))?;
        check::check_ident(&sc.from).map_err(|m| err(sc.from.pos, m))?;
        check::check_sql_text(&sc.reverse, "reverse").map_err(|m| err(sc.reverse.pos, m))?;
        if sc.into.value.len() < 2 {
            return Err(err(
                        sc.into.pos,
                        "`into` needs at least two columns to split into (to change one column's type, use change_type)".into(),
                    ));
        }
        derived_columns::check_derived(&sc.into.value, &[&sc.from]).map_err(|(p, m)| err(p, m))?;
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let sc = self;
        let mut v = vec![(sc.table_name(), &sc.from)];
        v.extend(sc.into.value.iter().map(|i| (sc.table_name(), &i.name)));
        v
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let sc = self;
        vec![sc.table_name()]
    }

    fn column_types(&self) -> Vec<String> {
        let sc = self;
        sc.into
            .value
            .iter()
            .map(|c| c.type_sql.value.clone())
            .collect()
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let sc = self;
        let t = sc.table_name();
        let mut u = vec![footprint::col(&t, &sc.from)];
        u.extend(sc.into.value.iter().map(|c| footprint::col(&t, &c.name)));
        u
    }

    fn replaced(&self) -> Vec<footprint::Replaced> {
        let sc = self;
        vec![footprint::Replaced {
            table: sc.table_name(),
            column: sc.from.value.clone(),
            how: "split".into(),
            fix: "name the new columns".into(),
        }]
    }

    fn synced(&self) -> Vec<(QualifiedName, String)> {
        let sc = self;
        sc.into
            .value
            .iter()
            .map(|c| (sc.table_name(), c.name.value.clone()))
            .collect()
    }

    fn apply(&self, cat: &mut Catalog) {
        let sc = self;
        if let Some(t) = planned::table(cat, &sc.table_name()) {
            t.columns.retain(|c| c.name != sc.from.value);
            for n in &sc.into.value {
                t.columns
                    .push(planned::new_column(&n.name.value, &n.type_sql.value));
            }
        };
    }
}

pub(super) fn split(
    plan: &str,
    batch_size: u32,
    sc: &SplitColumn,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let new: Vec<&DerivedColumn> = sc.into.value.iter().collect();
    derived(
        plan,
        batch_size,
        "split_column",
        (&sc.table, sc.table_name()),
        &[&sc.from],
        &new,
        vec![sc.reverse.value.trim().to_string()],
        knowledge,
    )
}
