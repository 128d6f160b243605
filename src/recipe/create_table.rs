//! `create_table`: expand `CREATE TABLE`; the undo drops it.

use super::kind::{ChangeKind, Context};
use super::shared::footprint;
use super::{Knowledge, Precondition};
use crate::catalog::Catalog;
use crate::phase::PhaseKind;
use crate::plan::{check, At, Pos};
use crate::program::{Contribution, LockLevel, RecipeOutput, Step};
use crate::sql::Ident;
use crate::sql::QualifiedName;

/// `create_table: { name, columns: [ { name, type, nullable, default, primary_key } ], primary_key: [..] }`
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub name: At<String>,
    pub columns: At<Vec<At<TableColumn>>>,
    /// A composite primary key; or mark one column `primary_key: true`.
    pub primary_key: Option<At<Vec<At<String>>>>,
}

impl CreateTable {
    pub fn table_name(&self) -> QualifiedName {
        QualifiedName::parse(&self.name).expect("validated at load")
    }
    /// The primary key columns, from `primary_key:` or the columns marked.
    pub fn key(&self) -> Vec<String> {
        match &self.primary_key {
            Some(k) => k.value.iter().map(|c| c.value.clone()).collect(),
            None => self
                .columns
                .value
                .iter()
                .filter(|c| c.primary_key)
                .map(|c| c.name.value.clone())
                .collect(),
        }
    }
}

#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableColumn {
    pub name: At<String>,
    #[serde(rename = "type")]
    pub type_sql: At<String>,
    /// Defaults to true (false for primary-key columns).
    pub nullable: Option<bool>,
    pub default: Option<At<String>>,
    #[serde(default)]
    pub primary_key: bool,
}

impl ChangeKind for CreateTable {
    fn expand(&self, cx: &Context<'_>) -> Result<RecipeOutput, Vec<Precondition>> {
        create_table(self, cx.live)
    }

    fn validate(&self, _pos: Pos) -> Result<(), (Pos, String)> {
        let err = |p: Pos, m: String| (p, m);
        let ct = self;
        QualifiedName::parse(&ct.name).map_err(|m| err(ct.name.pos, m))?;
        if ct.columns.value.is_empty() {
            return Err(err(
                ct.columns.pos,
                "`columns` is empty: list the table's columns".into(),
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for c in &ct.columns.value {
            check::check_ident(&c.name).map_err(|m| err(c.name.pos, m))?;
            check::check_sql_text(&c.type_sql, "type").map_err(|m| err(c.type_sql.pos, m))?;
            if let Some(d) = &c.default {
                check::check_sql_text(d, "default").map_err(|m| err(d.pos, m))?;
            }
            if seen.contains(&c.name.value.as_str()) {
                return Err(err(
                    c.name.pos,
                    format!("column `{}` is listed twice", c.name.value),
                ));
            }
            seen.push(&c.name.value);
        }
        if let Some(k) = &ct.primary_key {
            if ct.columns.value.iter().any(|c| c.primary_key) {
                return Err(err(k.pos, "give the primary key either as `primary_key: [..]` or on the columns, not both".into()));
            }
            for c in &k.value {
                if !seen.contains(&c.value.as_str()) {
                    return Err(err(
                        c.pos,
                        format!("primary key column `{}` is not among the columns", c.value),
                    ));
                }
            }
        }
        Ok(())
    }

    fn tables(&self) -> Vec<QualifiedName> {
        let ct = self;
        vec![ct.table_name()]
    }

    fn uses(&self, _cat: Option<&Catalog>) -> Vec<footprint::Use> {
        let ct = self;
        vec![footprint::whole(ct.table_name(), ct.name.pos)]
    }

    fn creates_table(&self) -> Option<QualifiedName> {
        Some(self.table_name())
    }

    fn planned_table(&self) -> Option<crate::catalog::Table> {
        Some(planned_table(self))
    }
}

pub(super) fn create_table(
    ct: &CreateTable,
    knowledge: Knowledge<'_>,
) -> Result<RecipeOutput, Vec<Precondition>> {
    let table = ct.table_name();
    if let Knowledge::Live(cat) = knowledge {
        if cat.table(&table).is_some() {
            return Err(vec![Precondition {
                pos: ct.name.pos,
                message: format!(
                    "table `{}` already exists; choose another name",
                    ct.name.value
                ),
            }]);
        }
    }
    let key = ct.key();
    let mut defs: Vec<String> = ct
        .columns
        .value
        .iter()
        .map(|c| {
            let mut d = format!(
                "{} {}",
                Ident::new(c.name.value.clone()),
                c.type_sql.value.trim()
            );
            if c.nullable == Some(false) || key.contains(&c.name.value) {
                d.push_str(" NOT NULL");
            }
            if let Some(default) = &c.default {
                d.push_str(&format!(" DEFAULT {}", default.value.trim()));
            }
            d
        })
        .collect();
    if !key.is_empty() {
        let cols: Vec<String> = key
            .iter()
            .map(|k| Ident::new(k.clone()).to_string())
            .collect();
        defs.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    let mut out = RecipeOutput::default();
    out.phases.push((
        PhaseKind::Expand,
        Contribution {
            steps: vec![Step::sql(
                format!(
                    "create {} (a new table: no application query waits on it)",
                    table.display_short()
                ),
                &table,
                LockLevel::AccessExclusive,
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (\n  {}\n);",
                    defs.join(",\n  ")
                ),
            )],
            rollback: vec![Step::sql(
                format!("drop {}", table.display_short()),
                &table,
                LockLevel::AccessExclusive,
                format!("DROP TABLE IF EXISTS {table};"),
            )],
            gate_after: None,
        },
    ));
    Ok(out)
}

/// The table as the catalog will show it once created.
fn planned_table(ct: &CreateTable) -> crate::catalog::Table {
    let name = ct.table_name();
    let key = ct.key();
    let columns = ct
        .columns
        .value
        .iter()
        .map(|c| crate::catalog::Column {
            name: c.name.value.clone(),
            type_sql: c.type_sql.value.trim().to_string(),
            collation: None,
            not_null: c.nullable == Some(false) || key.contains(&c.name.value),
            default: c.default.as_ref().map(|d| d.value.trim().to_string()),
            identity: None,
            generated: None,
            has_equality: true,
            ..Default::default()
        })
        .collect();
    let pkey = format!("{}_pkey", name.name.as_str());
    let parts: Vec<String> = key.iter().map(|k| crate::sql::quote_ident(k)).collect();
    let (indexes, constraints) = if key.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            vec![crate::catalog::Index {
                name: pkey.clone(),
                unique: true,
                primary: true,
                valid: true,
                method: "btree".into(),
                key_parts: parts.clone(),
                include: Vec::new(),
                predicate: None,
                columns: key.clone(),
                constraint: Some(pkey.clone()),
                definition: String::new(),
            }],
            vec![crate::catalog::Constraint {
                name: pkey,
                kind: "p".into(),
                definition: format!("PRIMARY KEY ({})", parts.join(", ")),
                columns: key.clone(),
                validated: true,
                table: name.clone(),
            }],
        )
    };
    crate::catalog::Table {
        name: name.clone(),
        columns,
        primary_key: (!key.is_empty()).then_some(key),
        unique_not_null_keys: Vec::new(),
        indexes,
        constraints,
        referenced_by: Vec::new(),
        triggers: Vec::new(),
        estimated_rows: 0,
        views: Vec::new(),
        kind: "r".into(),
        persistence: "p".into(),
        ..Default::default()
    }
}
