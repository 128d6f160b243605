//! `merge_columns`: several old columns → one new (see shared/derived_columns.rs).

use super::kind::{ChangeKind, Context};
use super::shared::derived_columns::derived;
use super::shared::derived_columns::DerivedColumn;
use super::shared::{derived_columns, footprint, planned};
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::plan::{check, At, Pos};
use crate::program::RecipeOutput;
use crate::sql::QualifiedName;

/// `merge_columns: { table, from: [..], into: { name, type, using }, reverse: { old: expr } }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeColumns {
    pub table: At<String>,
    pub from: At<Vec<At<String>>>,
    pub into: At<DerivedColumn>,
    /// For every old column, an SQL expression over the new column that rebuilds it.
    pub reverse: At<std::collections::BTreeMap<String, At<String>>>,
}

impl MergeColumns {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.table).expect("validated at load")
    }
}

impl ChangeKind for MergeColumns {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        merge(cx.plan, cx.batch_size, self, cx.knowledge)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let mc = self;
        QualifiedName::parse(&mc.table).map_err(|m| err(mc.table.pos, m))?;
        if mc.from.value.len() < 2 {
            return Err(err(
                mc.from.pos,
                "`from` needs at least two columns to merge".into(),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for f in &mc.from.value {
            check::check_ident(f).map_err(|m| err(f.pos, m))?;
            if seen.contains(&f.value.as_str()) {
                return Err(err(f.pos, format!("column `{}` is listed twice", f.value)));
            }
            seen.push(&f.value);
        }
        let from: Vec<&At<String>> = mc.from.value.iter().collect();
        derived_columns::check_derived(std::slice::from_ref(&mc.into.value), &from)
            .map_err(|(p, m)| err(p, m))?;
        for f in &mc.from.value {
            if !mc.reverse.value.contains_key(&f.value) {
                return Err(err(
                            mc.reverse.pos,
                            format!("`reverse` has no expression for `{}`: give one for every column of `from` (old clients still read them)", f.value),
                        ));
            }
        }
        for (k, e) in &mc.reverse.value {
            if !seen.contains(&k.as_str()) {
                return Err(err(
                    e.pos,
                    format!("`reverse` names `{k}`, which is not in `from`"),
                ));
            }
            check::check_sql_text(e, "reverse").map_err(|m| err(e.pos, m))?;
        }
        Ok(())
    }

    fn touched_columns(&self) -> Vec<(QualifiedName, &At<String>)> {
        let mc = self;
        let mut v: Vec<_> = mc.from.value.iter().map(|f| (mc.table_name(), f)).collect();
        v.push((mc.table_name(), &mc.into.name));
        v
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let mc = self;
        vec![mc.table_name()]
    }

    fn column_types(&self) -> Vec<String> {
        let mc = self;
        vec![mc.into.type_sql.value.clone()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let mc = self;
        let t = mc.table_name();
        let mut u: Vec<footprint::Use> = mc
            .from
            .value
            .iter()
            .map(|c| footprint::col(&t, c))
            .collect();
        u.push(footprint::col(&t, &mc.into.name));
        u
    }

    fn replaced(&self) -> Vec<footprint::Replaced> {
        let mc = self;
        mc.from
            .value
            .iter()
            .map(|f| footprint::Replaced {
                table: mc.table_name(),
                column: f.value.clone(),
                how: format!("merged into `{}`", mc.into.name.value),
                fix: format!("name `{}`", mc.into.name.value),
            })
            .collect()
    }

    fn synced(&self) -> Vec<(QualifiedName, String)> {
        let mc = self;
        vec![(mc.table_name(), mc.into.name.value.clone())]
    }

    fn apply(&self, cat: &mut Catalog) {
        let mc = self;
        if let Some(t) = planned::table(cat, &mc.table_name()) {
            t.columns
                .retain(|c| !mc.from.value.iter().any(|f| f.value == c.name));
            t.columns.push(planned::new_column(
                &mc.into.name.value,
                &mc.into.type_sql.value,
            ));
        };
    }
}

pub(super) fn merge(
    plan: &str,
    batch_size: u32,
    mc: &MergeColumns,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let old: Vec<&At<String>> = mc.from.value.iter().collect();
    let reverse = mc
        .from
        .value
        .iter()
        .map(|f| mc.reverse.value[&f.value].value.trim().to_string())
        .collect();
    derived(
        plan,
        batch_size,
        "merge_columns",
        (&mc.table, mc.table_name()),
        &old,
        &[&mc.into.value],
        reverse,
        knowledge,
    )
}
