//! Live introspection: the parts of the catalog the recipes depend on, as plain data.
//!
//! A [`Catalog`] is a snapshot: recipes expand against it without a connection, tests
//! build one by hand, and `pgphase` compares two snapshots to prove a rollback left the
//! schema exactly as it found it.

mod dependents;
mod needs;
pub mod privileges;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;

use crate::sql::QualifiedName;

pub mod compare;
pub use dependents::{names_word, Dependent, DependentKind, Partition, Statistics};
pub use needs::{table_of_index, Needs};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    /// `server_version_num`, e.g. 150004.
    pub server_version_num: i32,
    pub tables: BTreeMap<String, Table>,
    /// Relations of any kind the plan names for `rename_table` (loaded by
    /// [`Catalog::load_relations`]), by `schema.name`.
    #[serde(default)]
    pub relations: BTreeMap<String, Relation>,
    /// Types the plan names (loaded by [`Catalog::load_types`]), by `schema.name`.
    #[serde(default)]
    pub types: BTreeMap<String, TypeInfo>,
    /// Column types a plan writes (`add_column`, `change_type`, …) that refuse NULL,
    /// as written (loaded by [`Catalog::load_type_nullability`]).
    #[serde(default)]
    pub null_rejecting_types: std::collections::BTreeSet<String>,
}

/// A relation of any kind: what `rename_table` needs to know of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Relation {
    pub name: QualifiedName,
    /// `pg_class.relkind`: `r` table, `p` partitioned table, `v` view, `m` materialized
    /// view, `i` index, `S` sequence, `f` foreign table, `c` composite type…
    pub kind: String,
    pub owner: String,
    /// Row-level security enabled (`relrowsecurity`).
    pub row_security: bool,
    /// The ACL, one entry per privilege (table-wide, then per column).
    pub grants: Vec<Grant>,
}

impl Relation {
    /// The kind in words, for messages.
    pub fn kind_text(&self) -> &'static str {
        match self.kind.as_str() {
            "r" => "table",
            "p" => "partitioned table",
            "v" => "view",
            "m" => "materialized view",
            "i" | "I" => "index",
            "S" => "sequence",
            "f" => "foreign table",
            "c" => "composite type",
            "t" => "TOAST table",
            _ => "relation",
        }
    }
}

/// One privilege of a relation's ACL (`aclexplode`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    /// The role; None for PUBLIC.
    pub grantee: Option<String>,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, `REFERENCES`, `TRIGGER`, `MAINTAIN`.
    pub privilege: String,
    pub grantable: bool,
    /// For a column privilege, the column.
    pub column: Option<String>,
}

/// A type by name: its kind and, for an enum, its values in sort order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TypeInfo {
    pub name: QualifiedName,
    /// `pg_type.typtype`: `e` enum, `c` composite, `d` domain, `b` base, `r` range, `m` multirange, `p` pseudo.
    pub kind: String,
    /// Enum values in sort order (empty for other kinds).
    pub labels: Vec<String>,
}

impl TypeInfo {
    pub fn kind_text(&self) -> &'static str {
        match self.kind.as_str() {
            "e" => "an enum",
            "c" => "a composite (row) type",
            "d" => "a domain",
            "b" => "a base type",
            "r" => "a range type",
            "m" => "a multirange type",
            _ => "a pseudo-type",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub name: QualifiedName,
    pub columns: Vec<Column>,
    /// Column names of the primary key, in key order.
    pub primary_key: Option<Vec<String>>,
    /// Unique, valid, non-partial indexes over NOT NULL columns only (key candidates).
    pub unique_not_null_keys: Vec<Vec<String>>,
    pub indexes: Vec<Index>,
    pub constraints: Vec<Constraint>,
    /// Foreign keys of other tables that reference this table.
    pub referenced_by: Vec<Constraint>,
    /// Non-internal triggers: (name, definition).
    pub triggers: Vec<(String, String)>,
    /// planner estimate; -1 when never analyzed
    pub estimated_rows: i64,
    /// Views (and materialized views) whose query uses columns of this table.
    #[serde(default)]
    pub views: Vec<ViewDependency>,
    /// `pg_class.relkind`: `r` table, `p` partitioned table.
    #[serde(default)]
    pub kind: String,
    /// `p` permanent, `u` unlogged, `t` temporary.
    #[serde(default)]
    pub persistence: String,
    /// `REPLICA IDENTITY`: `d` default (primary key), `n` nothing, `f` full, `i` index
    /// (the index is a [`DependentKind::ReplicaIdentity`] dependent).
    #[serde(default)]
    pub replica_identity: String,
    #[serde(default)]
    pub comment: Option<String>,
    /// The partitioned table this one is a partition of.
    #[serde(default)]
    pub partition_of: Option<QualifiedName>,
    /// Its partitions, when partitioned.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// The partition key's columns, when partitioned (an expression as `(expr)`).
    #[serde(default)]
    pub partition_key: Vec<String>,
    /// Its indexes that are attached to a partitioned index of its parent.
    #[serde(default)]
    pub attached_indexes: Vec<String>,
    /// Its constraints inherited from a parent (partitioning or inheritance).
    #[serde(default)]
    pub inherited_constraints: Vec<String>,
    /// Tables it `INHERITS` from (not partitioning).
    #[serde(default)]
    pub inherits: Vec<QualifiedName>,
    /// Tables that `INHERITS` from it (not partitions).
    #[serde(default)]
    pub children: Vec<QualifiedName>,
    /// Publications that publish it (any way: listed, schema, all tables).
    #[serde(default)]
    pub publications: Vec<String>,
    /// Objects that depend on its columns (see [`Dependent`]).
    #[serde(default)]
    pub dependents: Vec<Dependent>,
    /// Its extended statistics objects (`CREATE STATISTICS`).
    #[serde(default)]
    pub statistics: Vec<Statistics>,
    /// A Citus table (a row of `pg_catalog.pg_dist_partition`, read when the extension's
    /// catalog exists): `distributed`, `reference`, `local` (a Citus local table) or
    /// `citus` (another method). `plan` refuses changes to it (docs/citus.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citus: Option<String>,
}

/// A view that depends on columns of a table: dropping them would fail or cascade.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ViewDependency {
    pub view: QualifiedName,
    pub columns: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub name: String,
    /// `format_type()` text, e.g. `character varying(20)`.
    pub type_sql: String,
    /// Non-default collation, already quoted (`"C"`), if any.
    pub collation: Option<String>,
    pub not_null: bool,
    /// Default expression as deparsed by the server.
    pub default: Option<String>,
    /// `a` / `d` for identity columns.
    pub identity: Option<String>,
    /// `s` for stored generated columns.
    pub generated: Option<String>,
    /// The type has an `=` operator (json, point… do not); otherwise compare as text.
    pub has_equality: bool,
    /// `pg_attribute.attnum`: stays with the column through renames.
    #[serde(default)]
    pub attnum: i16,
    #[serde(default)]
    pub comment: Option<String>,
    /// `ALTER COLUMN … SET STATISTICS`, when set.
    #[serde(default)]
    pub statistics_target: Option<i32>,
    /// `ALTER COLUMN … SET STORAGE` (`p`, `e`, `m`, `x`), when not the type's default.
    #[serde(default)]
    pub storage: Option<String>,
    /// `ALTER COLUMN … SET COMPRESSION` (`p` pglz, `l` lz4), when set (PostgreSQL 14+).
    #[serde(default)]
    pub compression: Option<String>,
    /// Inherited from a parent (inheritance or partitioning): only the parent may
    /// rename, retype or drop it.
    #[serde(default)]
    pub inherited: bool,
    /// A sequence owned by the column (`serial`, `OWNED BY`): dropped with it.
    #[serde(default)]
    pub owned_sequence: Option<QualifiedName>,
    /// Column privileges (`GRANT … (col)`).
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The type is a domain that refuses NULL (`NOT NULL`, or a CHECK NULL fails): a
    /// column of it cannot be added to a table with rows, nor left out of an INSERT.
    #[serde(default)]
    pub type_rejects_null: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
    pub method: String,
    /// Key parts as deparsed (`pg_get_indexdef(oid, k, true)`), with ordering options.
    pub key_parts: Vec<String>,
    pub include: Vec<String>,
    pub predicate: Option<String>,
    /// Every column the index uses: keys, expressions, INCLUDE and predicate.
    pub columns: Vec<String>,
    /// The constraint this index implements, if any.
    pub constraint: Option<String>,
    pub definition: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Constraint {
    pub name: String,
    /// `p` primary key, `u` unique, `c` check, `f` foreign key, `x` exclusion, `n` not null (PG18)
    pub kind: String,
    pub definition: String,
    pub columns: Vec<String>,
    pub validated: bool,
    /// For foreign keys: the table that owns the constraint.
    pub table: QualifiedName,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// The key a backfill pages by: the primary key, else a unique NOT NULL key.
    pub fn backfill_key(&self) -> Option<Vec<String>> {
        self.primary_key
            .clone()
            .or_else(|| self.unique_not_null_keys.first().cloned())
    }
}

impl Catalog {
    pub fn table(&self, name: &QualifiedName) -> Option<&Table> {
        self.tables.get(&name.to_string())
    }
    pub fn major_version(&self) -> i32 {
        self.server_version_num / 10000
    }

    /// Loads the given tables (missing ones are simply absent).
    pub async fn load<C: GenericClient>(
        client: &C,
        tables: &[QualifiedName],
    ) -> Result<Catalog, tokio_postgres::Error> {
        let version: String = client
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await?
            .get(0);
        let mut cat = Catalog {
            server_version_num: version.parse().unwrap_or(0),
            ..Default::default()
        };
        for name in tables {
            if let Some(t) = load_table(client, name).await? {
                cat.tables.insert(name.to_string(), t);
            }
        }
        Ok(cat)
    }

    pub fn relation(&self, name: &QualifiedName) -> Option<&Relation> {
        self.relations.get(&name.to_string())
    }
    pub fn type_info(&self, name: &QualifiedName) -> Option<&TypeInfo> {
        self.types.get(&name.to_string())
    }

    /// Adds the given relations of any kind (missing ones are simply absent).
    pub async fn load_relations<C: GenericClient>(
        &mut self,
        client: &C,
        names: &[QualifiedName],
    ) -> Result<(), tokio_postgres::Error> {
        for name in names {
            let Some(row) = client
                .query_opt(
                    "SELECT c.oid, c.relkind::text, pg_get_userbyid(c.relowner)::text, c.relrowsecurity
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname = $2",
                    &[&name.schema.as_str(), &name.name.as_str()],
                )
                .await?
            else {
                continue;
            };
            let oid: u32 = row.get(0);
            let grants = client
                .query(
                    "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                            a.privilege_type::text, a.is_grantable, NULL::text, 0::int2
                       FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1
                     UNION ALL
                     SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                            a.privilege_type::text, a.is_grantable, att.attname::text, att.attnum
                       FROM pg_attribute att, aclexplode(att.attacl) a
                      WHERE att.attrelid = $1 AND att.attnum > 0 AND NOT att.attisdropped
                      ORDER BY 5, 1 NULLS FIRST, 2",
                    &[&oid],
                )
                .await?
                .iter()
                .map(|r| Grant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                    column: r.get(3),
                })
                .collect();
            self.relations.insert(
                name.to_string(),
                Relation {
                    name: name.clone(),
                    kind: row.get(1),
                    owner: row.get(2),
                    row_security: row.get(3),
                    grants,
                },
            );
        }
        Ok(())
    }

    /// Whether a column type a plan writes refuses NULL (a domain with NOT NULL, or a
    /// CHECK that NULL fails).
    pub fn rejects_null(&self, type_sql: &str) -> bool {
        self.null_rejecting_types.contains(type_sql.trim())
    }

    /// Reads which of the given column types (as a plan writes them) refuse NULL.
    pub async fn load_type_nullability<C: GenericClient>(
        &mut self,
        client: &C,
        types: &[String],
    ) -> Result<(), tokio_postgres::Error> {
        for t in types {
            let t = t.trim();
            let domain: Option<bool> = client
                .query_opt(
                    "SELECT typtype = 'd' FROM pg_type WHERE oid = to_regtype($1)",
                    &[&t],
                )
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0));
            if domain == Some(true) && dependents::rejects_null(client, t).await? {
                self.null_rejecting_types.insert(t.to_string());
            }
        }
        Ok(())
    }

    /// Adds the given types (missing ones are simply absent), with enum values in order.
    pub async fn load_types<C: GenericClient>(
        &mut self,
        client: &C,
        names: &[QualifiedName],
    ) -> Result<(), tokio_postgres::Error> {
        for name in names {
            let Some(row) = client
                .query_opt(
                    "SELECT t.typtype::text,
                            ARRAY(SELECT e.enumlabel::text FROM pg_enum e
                                   WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
                       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                      WHERE n.nspname = $1 AND t.typname = $2",
                    &[&name.schema.as_str(), &name.name.as_str()],
                )
                .await?
            else {
                continue;
            };
            self.types.insert(
                name.to_string(),
                TypeInfo {
                    name: name.clone(),
                    kind: row.get(0),
                    labels: row.get(1),
                },
            );
        }
        Ok(())
    }
}

async fn load_table<C: GenericClient>(
    client: &C,
    name: &QualifiedName,
) -> Result<Option<Table>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.reltuples::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&name.schema.as_str(), &name.name.as_str()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let oid: u32 = row.get(0);
    let estimated_rows: i64 = row.get(1);

    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
                    CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                         THEN quote_ident(co.collname) END,
                    a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                    NULLIF(a.attidentity, '')::text, NULLIF(a.attgenerated, '')::text,
                    EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname = '='
                              AND o.oprleft = a.atttypid AND o.oprright = a.atttypid)
               FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_collation co ON co.oid = a.attcollation
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| Column {
            name: r.get(0),
            type_sql: r.get(1),
            collation: r.get(2),
            not_null: r.get(3),
            default: r.get(4),
            identity: r.get(5),
            generated: r.get(6),
            has_equality: r.get(7),
            ..Default::default()
        })
        .collect();

    let index_rows = client
        .query(
            "SELECT ic.relname::text, i.indisunique, i.indisprimary, i.indisvalid, am.amname::text,
                    ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
                    ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
                            FROM generate_series(i.indnkeyatts + 1, i.indnatts) k ORDER BY k),
                    pg_get_expr(i.indpred, i.indrelid),
                    ARRAY(SELECT DISTINCT a.attname::text FROM pg_attribute a
                           WHERE a.attrelid = i.indrelid AND a.attnum > 0 AND (
                                 a.attnum = ANY (i.indkey::int2[])
                              OR EXISTS (SELECT 1 FROM pg_depend dp
                                          WHERE dp.classid = 'pg_class'::regclass AND dp.objid = i.indexrelid
                                            AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid = i.indrelid
                                            AND dp.refobjsubid = a.attnum))),
                    (SELECT con.conname::text FROM pg_constraint con WHERE con.conindid = i.indexrelid
                        AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')),
                    pg_get_indexdef(i.indexrelid)
               FROM pg_index i
               JOIN pg_class ic ON ic.oid = i.indexrelid
               JOIN pg_am am ON am.oid = ic.relam
              WHERE i.indrelid = $1
              ORDER BY ic.relname",
            &[&oid],
        )
        .await?;
    let indexes: Vec<Index> = index_rows
        .iter()
        .map(|r| Index {
            name: r.get(0),
            unique: r.get(1),
            primary: r.get(2),
            valid: r.get(3),
            method: r.get(4),
            key_parts: r.get(5),
            include: r.get(6),
            predicate: r.get(7),
            columns: r.get(8),
            constraint: r.get(9),
            definition: r.get(10),
        })
        .collect();

    let constraint_sql = "SELECT con.conname::text, con.contype::text, pg_get_constraintdef(con.oid, true),
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
                    con.convalidated, n.nspname::text, c.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
               FROM pg_constraint con
               JOIN pg_class c ON c.oid = con.conrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace";
    let to_constraint = |r: &tokio_postgres::Row, referenced: bool| Constraint {
        name: r.get(0),
        kind: r.get(1),
        definition: r.get(2),
        columns: if referenced { r.get(7) } else { r.get(3) },
        validated: r.get(4),
        table: QualifiedName::new(r.get::<_, String>(5), r.get::<_, String>(6)),
    };
    let constraints: Vec<Constraint> = client
        .query(
            &format!("{constraint_sql} WHERE con.conrelid = $1 ORDER BY con.conname"),
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| to_constraint(r, false))
        .collect();
    let referenced_by: Vec<Constraint> = client
        .query(
            &format!(
                "{constraint_sql} WHERE con.confrelid = $1 AND con.contype = 'f' ORDER BY n.nspname, c.relname, con.conname"
            ),
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| to_constraint(r, true))
        .collect();
    let triggers = client
        .query(
            "SELECT tgname::text, pg_get_triggerdef(oid) FROM pg_trigger
              WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let views = client
        .query(
            "SELECT vn.nspname::text, v.relname::text,
                    array_agg(DISTINCT a.attname::text ORDER BY a.attname::text)
               FROM pg_depend d
               JOIN pg_rewrite r ON r.oid = d.objid
               JOIN pg_class v ON v.oid = r.ev_class
               JOIN pg_namespace vn ON vn.oid = v.relnamespace
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                AND d.refobjid = $1 AND v.oid <> $1 AND r.rulename = '_RETURN'
              GROUP BY 1, 2 ORDER BY 1, 2",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| ViewDependency {
            view: QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            columns: r.get(2),
        })
        .collect();

    let primary_key = constraints
        .iter()
        .find(|c| c.kind == "p")
        .map(|c| c.columns.clone());
    let mut table = Table {
        name: name.clone(),
        columns,
        primary_key,
        unique_not_null_keys: Vec::new(),
        indexes,
        constraints,
        referenced_by,
        triggers,
        estimated_rows,
        views,
        ..Default::default()
    };
    dependents::load(client, oid, &mut table).await?;
    table.unique_not_null_keys = table
        .indexes
        .iter()
        .filter(|i| i.unique && i.valid && i.predicate.is_none() && !i.primary)
        .filter(|i| {
            i.key_parts.iter().all(|k| {
                table
                    .column(&unquote(k))
                    .is_some_and(|c| c.not_null && crate::sql::quote_ident(&c.name) == *k)
            })
        })
        .map(|i| i.key_parts.iter().map(|k| unquote(k)).collect())
        .collect();
    Ok(Some(table))
}

fn unquote(k: &str) -> String {
    if k.starts_with('"') && k.ends_with('"') && k.len() >= 2 {
        k[1..k.len() - 1].replace("\"\"", "\"")
    } else {
        k.to_string()
    }
}
