//! What else lives around a table's columns: every object PostgreSQL records as
//! depending on them (`pg_depend`: indexes, constraints, triggers, policies, rules,
//! views, statistics, publication column lists and row filters, generated columns,
//! owned sequences, `BEGIN ATOMIC` functions), plus what `pg_depend` does not record —
//! the replica identity index and trigger functions whose body names a column — and
//! the table's place in partitioning and inheritance. Plain data, read by the loader;
//! recipes decide from it what they carry over and what they refuse.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use super::{Grant, Table};
use crate::sql::QualifiedName;

/// The kind of an object that depends on a table's columns.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DependentKind {
    Index,
    Constraint,
    Trigger,
    Policy,
    /// A rule of the table (`CREATE RULE`), not a view's.
    Rule,
    /// A view or materialized view (its `_RETURN` rule).
    View,
    /// Extended statistics (`CREATE STATISTICS`).
    Statistics,
    /// A publication's column list or row filter.
    Publication,
    /// A stored generated column computed from the column.
    GeneratedColumn,
    /// A sequence owned by the column (`serial`, `OWNED BY`).
    Sequence,
    /// A function whose body PostgreSQL parsed (`BEGIN ATOMIC`, PostgreSQL 14+).
    Function,
    /// A function called by one of the table's triggers whose source text names the
    /// column (PL/pgSQL bodies record no dependency: found by reading the source).
    TriggerFunction,
    /// The index the table's `REPLICA IDENTITY USING INDEX` names.
    ReplicaIdentity,
    Other,
}

impl DependentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DependentKind::Index => "index",
            DependentKind::Constraint => "constraint",
            DependentKind::Trigger => "trigger",
            DependentKind::Policy => "policy",
            DependentKind::Rule => "rule",
            DependentKind::View => "view",
            DependentKind::Statistics => "statistics",
            DependentKind::Publication => "publication",
            DependentKind::GeneratedColumn => "generated column",
            DependentKind::Sequence => "sequence",
            DependentKind::Function => "function",
            DependentKind::TriggerFunction => "trigger function",
            DependentKind::ReplicaIdentity => "replica identity",
            DependentKind::Other => "object",
        }
    }
}

/// One object that depends on columns of a table (or, with no columns, on the table as
/// a whole in a way that would keep `DROP TABLE` from running).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dependent {
    pub kind: DependentKind,
    /// The object's own name (index, constraint, trigger, policy, rule, statistics,
    /// publication, function name; the column for a generated column; the view).
    pub name: String,
    /// As PostgreSQL describes it (`pg_describe_object`), e.g. `policy p on table t`.
    pub description: String,
    /// The columns of this table it depends on; empty: the table as a whole.
    pub columns: Vec<String>,
    /// `n`: `DROP COLUMN` (without CASCADE) fails while it exists; `a`: it is dropped
    /// with the column, silently; empty for what `pg_depend` does not record.
    pub deptype: String,
    /// It belongs to the table (its index, constraint, trigger, policy, rule,
    /// statistics, generated column, owned sequence, publication membership): it goes
    /// when the table is dropped. Otherwise (another table's or view's, a function) it
    /// keeps `DROP TABLE` from running.
    #[serde(default)]
    pub own: bool,
    /// The object's identity (`classid`, `objid`; class 0 for the replica identity and
    /// 1 for a trigger function, with the index's and the function's oid): stable across
    /// renames, not across a rebuild. Snapshots compare what the schema says, so
    /// equality ignores it.
    #[serde(default)]
    pub identity: (u32, u32),
}

impl PartialEq for Dependent {
    fn eq(&self, o: &Self) -> bool {
        (
            self.kind,
            &self.name,
            &self.description,
            &self.columns,
            &self.deptype,
            self.own,
        ) == (
            o.kind,
            &o.name,
            &o.description,
            &o.columns,
            &o.deptype,
            o.own,
        )
    }
}

impl Dependent {
    pub fn uses(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
    /// Objects pgphase itself creates around a changed column (its sync triggers and
    /// their function, helper constraints): never the application's.
    pub fn is_pgphase(&self) -> bool {
        self.name.starts_with("zz_pgphase_") || self.name.starts_with("pgphase_")
    }
}

/// An extended statistics object (`CREATE STATISTICS`) on a table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Statistics {
    pub name: QualifiedName,
    /// Kinds named at creation (`ndistinct`, `dependencies`, `mcv`); empty: all.
    pub kinds: Vec<String>,
    /// What it is built on, as PostgreSQL prints it (`a, b`, `lower(a), b`).
    pub on: String,
    /// The columns it uses.
    pub columns: Vec<String>,
    /// `ALTER STATISTICS … SET STATISTICS`, when set.
    pub target: Option<i32>,
}

/// A partition of a partitioned table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Partition {
    pub name: QualifiedName,
    /// `r` table, `p` partitioned (sub-partitioned), `f` foreign table.
    pub kind: String,
}

impl Table {
    /// A declaratively partitioned table (`PARTITION BY`).
    pub fn is_partitioned(&self) -> bool {
        self.kind == "p"
    }
    pub fn dependents_of<'a>(&'a self, column: &'a str) -> impl Iterator<Item = &'a Dependent> {
        self.dependents.iter().filter(move |d| d.uses(column))
    }
    /// The index `REPLICA IDENTITY USING INDEX` names, if any.
    pub fn replica_identity_index(&self) -> Option<&str> {
        self.dependents
            .iter()
            .find(|d| d.kind == DependentKind::ReplicaIdentity)
            .map(|d| d.name.as_str())
    }
}

/// What Citus made of the table `oid`, from `pg_catalog.pg_dist_partition` (which exists
/// only where the extension is installed): `distributed` (hash, range or append
/// distributed), `reference` (replicated to every node), `local` (a Citus local table),
/// or None when Citus does not manage it.
async fn citus_kind<C: GenericClient>(
    client: &C,
    oid: u32,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT partmethod::text, repmodel::text FROM pg_catalog.pg_dist_partition
              WHERE logicalrelid::oid = $1",
            &[&oid],
        )
        .await?;
    Ok(row.map(|r| {
        let (method, model): (String, String) = (r.get(0), r.get(1));
        match (method.as_str(), model.as_str()) {
            ("h" | "r" | "a", _) => "distributed",
            ("n", "t") => "reference",
            ("n", _) => "local",
            _ => "citus",
        }
        .to_string()
    }))
}

/// Reads everything above for the table `oid` into `t` (its columns already loaded).
pub(super) async fn load<C: GenericClient>(
    client: &C,
    oid: u32,
    t: &mut Table,
) -> Result<(), tokio_postgres::Error> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let row = client
        .query_one(
            "SELECT c.relkind::text, c.relpersistence::text, c.relreplident::text,
                    obj_description(c.oid, 'pg_class'),
                    (SELECT ARRAY[pn.nspname::text, p.relname::text]
                       FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                       JOIN pg_namespace pn ON pn.oid = p.relnamespace
                      WHERE i.inhrelid = c.oid AND c.relispartition),
                    ARRAY(SELECT pn.nspname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhrelid = c.oid AND NOT c.relispartition ORDER BY i.inhseqno),
                    ARRAY(SELECT p.relname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                           WHERE i.inhrelid = c.oid AND NOT c.relispartition ORDER BY i.inhseqno),
                    ARRAY(SELECT pn.nspname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhparent = c.oid ORDER BY 1, p.relname),
                    ARRAY(SELECT p.relname::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhparent = c.oid ORDER BY pn.nspname, p.relname),
                    ARRAY(SELECT p.relkind::text FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhparent = c.oid ORDER BY pn.nspname, p.relname),
                    ARRAY(SELECT p.relispartition FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
                            JOIN pg_namespace pn ON pn.oid = p.relnamespace
                           WHERE i.inhparent = c.oid ORDER BY pn.nspname, p.relname),
                    ARRAY(SELECT DISTINCT pt.pubname::text FROM pg_publication_tables pt
                           JOIN pg_namespace n ON n.nspname = pt.schemaname
                          WHERE n.oid = c.relnamespace AND pt.tablename = c.relname ORDER BY 1),
                    to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL
               FROM pg_class c WHERE c.oid = $1",
            &[&oid],
        )
        .await?;
    t.kind = row.get(0);
    t.persistence = row.get(1);
    let replident: String = row.get(2);
    t.comment = row.get(3);
    t.partition_of = row
        .get::<_, Option<Vec<String>>>(4)
        .map(|p| QualifiedName::new(p[0].clone(), p[1].clone()));
    let (ps, pn): (Vec<String>, Vec<String>) = (row.get(5), row.get(6));
    t.inherits = ps
        .into_iter()
        .zip(pn)
        .map(|(s, n)| QualifiedName::new(s, n))
        .collect();
    let (cs, cn, ck, cp): (Vec<String>, Vec<String>, Vec<String>, Vec<bool>) =
        (row.get(7), row.get(8), row.get(9), row.get(10));
    for (((s, n), k), is_partition) in cs.into_iter().zip(cn).zip(ck).zip(cp) {
        let name = QualifiedName::new(s, n);
        if is_partition {
            t.partitions.push(Partition { name, kind: k });
        } else {
            t.children.push(name);
        }
    }
    t.publications = row.get(11);
    if row.get::<_, bool>(12) {
        t.citus = citus_kind(client, oid).await?;
    }
    let more = client
        .query_one(
            "SELECT ARRAY(SELECT CASE WHEN k.attnum = 0 THEN '(expression)' ELSE a.attname::text END
                            FROM pg_partitioned_table pt CROSS JOIN LATERAL unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, o)
                            LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum
                           WHERE pt.partrelid = $1 ORDER BY k.o),
                    ARRAY(SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                            JOIN pg_inherits h ON h.inhrelid = i.indexrelid
                           WHERE i.indrelid = $1 ORDER BY 1),
                    ARRAY(SELECT conname::text FROM pg_constraint
                           WHERE conrelid = $1 AND (coninhcount > 0 OR conparentid <> 0) ORDER BY 1)",
            &[&oid],
        )
        .await?;
    t.partition_key = more.get(0);
    t.attached_indexes = more.get(1);
    t.inherited_constraints = more.get(2);

    // Columns: comments, statistics targets, storage, compression, inheritance, owned
    // sequences, column grants, and whether the type refuses NULL (a domain).
    let compression = if version >= 140000 {
        "NULLIF(a.attcompression, '')::text"
    } else {
        "NULL::text"
    };
    let rows = client
        .query(
            &format!(
                "SELECT a.attname::text, a.attnum, col_description(a.attrelid, a.attnum),
                        NULLIF(a.attstattarget, -1)::int4,
                        CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END,
                        {compression}, a.attinhcount > 0,
                        (SELECT sn.nspname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                           JOIN pg_namespace sn ON sn.oid = s.relnamespace
                          WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                            AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                            AND s.relkind = 'S' AND d.deptype IN ('a', 'i') LIMIT 1),
                        (SELECT s.relname::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                          WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                            AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                            AND s.relkind = 'S' AND d.deptype IN ('a', 'i') LIMIT 1),
                        t.typtype = 'd', format_type(a.atttypid, a.atttypmod),
                        EXISTS (WITH RECURSIVE chain(oid) AS (
                                    SELECT a.atttypid
                                    UNION ALL
                                    SELECT b.typbasetype FROM pg_type b JOIN chain ON b.oid = chain.oid
                                     WHERE b.typtype = 'd')
                                SELECT 1 FROM chain JOIN pg_type d ON d.oid = chain.oid
                                 WHERE d.typtype = 'd' AND d.typnotnull),
                        EXISTS (WITH RECURSIVE chain(oid) AS (
                                    SELECT a.atttypid
                                    UNION ALL
                                    SELECT b.typbasetype FROM pg_type b JOIN chain ON b.oid = chain.oid
                                     WHERE b.typtype = 'd')
                                SELECT 1 FROM chain JOIN pg_constraint k ON k.contypid = chain.oid)
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum"
            ),
            &[&oid],
        )
        .await?;
    for r in rows {
        let name: String = r.get(0);
        let type_sql: String = r.get(10);
        let domain: bool = r.get(9);
        let (not_null_domain, checked_domain): (bool, bool) = (r.get(11), r.get(12));
        let rejects_null = domain
            && (not_null_domain || (checked_domain && rejects_null(client, &type_sql).await?));
        let Some(c) = t.columns.iter_mut().find(|c| c.name == name) else {
            continue;
        };
        c.attnum = r.get(1);
        c.comment = r.get(2);
        c.statistics_target = r.get(3);
        c.storage = r.get(4);
        c.compression = r.get(5);
        c.inherited = r.get(6);
        c.owned_sequence = match (r.get::<_, Option<String>>(7), r.get::<_, Option<String>>(8)) {
            (Some(s), Some(n)) => Some(QualifiedName::new(s, n)),
            _ => None,
        };
        c.type_rejects_null = rejects_null;
    }
    let grants = client
        .query(
            "SELECT att.attname::text,
                    CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END,
                    a.privilege_type::text, a.is_grantable
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = $1 AND att.attnum > 0 AND NOT att.attisdropped
              ORDER BY att.attnum, 2 NULLS FIRST, 3",
            &[&oid],
        )
        .await?;
    for r in grants {
        let col: String = r.get(0);
        if let Some(c) = t.columns.iter_mut().find(|c| c.name == col) {
            c.grants.push(Grant {
                grantee: r.get(1),
                privilege: r.get(2),
                grantable: r.get(3),
                column: Some(col),
            });
        }
    }

    let on = if version >= 140000 {
        "pg_get_statisticsobjdef_columns(s.oid)"
    } else {
        "(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.o)
            FROM unnest(s.stxkeys::int2[]) WITH ORDINALITY k(n, o)
            JOIN pg_attribute a ON a.attrelid = s.stxrelid AND a.attnum = k.n)"
    };
    t.statistics = client
        .query(
            &format!(
                "SELECT n.nspname::text, s.stxname::text,
                        CASE WHEN s.stxkind @> ARRAY['d', 'f', 'm']::\"char\"[] THEN ARRAY[]::text[]
                             ELSE ARRAY(SELECT CASE k WHEN 'd' THEN 'ndistinct' WHEN 'f' THEN 'dependencies'
                                                      WHEN 'm' THEN 'mcv' END
                                          FROM unnest(s.stxkind) k WHERE k IN ('d', 'f', 'm') ORDER BY 1) END,
                        {on},
                        ARRAY(SELECT DISTINCT a.attname::text FROM pg_depend d
                                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                               WHERE d.classid = 'pg_statistic_ext'::regclass AND d.objid = s.oid
                                 AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 ORDER BY 1),
                        NULLIF(s.stxstattarget::int4, -1)
                   FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
                  WHERE s.stxrelid = $1 ORDER BY 1, 2"
            ),
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| Statistics {
            name: QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            kinds: r.get(2),
            on: r.get(3),
            columns: r.get(4),
            target: r.get(5),
        })
        .collect();
    t.dependents = load_dependents(client, oid).await?;
    if replident == "i" {
        let ri = client
            .query_opt(
                "SELECT ic.relname::text, i.indexrelid,
                        ARRAY(SELECT a.attname::text FROM pg_attribute a
                               WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
                               ORDER BY a.attnum)
                   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                  WHERE i.indrelid = $1 AND i.indisreplident",
                &[&oid],
            )
            .await?;
        if let Some(r) = ri {
            let name: String = r.get(0);
            let index: u32 = r.get(1);
            t.dependents.push(Dependent {
                kind: DependentKind::ReplicaIdentity,
                description: format!(
                    "the replica identity of table {} (index {})",
                    t.name.display_short(),
                    crate::sql::quote_ident(&name)
                ),
                name,
                columns: r.get(2),
                deptype: String::new(),
                own: true,
                // not a catalog object: marked with class 0 and the index
                identity: (0, index),
            });
        }
    }
    t.replica_identity = replident;
    trigger_functions(client, oid, t).await?;
    t.dependents
        .sort_by(|a, b| (a.kind, &a.description).cmp(&(b.kind, &b.description)));
    Ok(())
}

/// Whether a value of this (domain) type may be NULL: casting NULL to it checks the
/// domain's NOT NULL and CHECK constraints, e.g. `CHECK (VALUE IS NOT NULL)`.
pub(super) async fn rejects_null<C: GenericClient>(
    client: &C,
    type_sql: &str,
) -> Result<bool, tokio_postgres::Error> {
    match client
        .query_one(&format!("SELECT CAST(NULL AS {type_sql}) IS NULL"), &[])
        .await
    {
        Ok(_) => Ok(false),
        // integrity_constraint_violation: not_null_violation, check_violation
        Err(e) if e.code().is_some_and(|c| c.code().starts_with("23")) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Every object `pg_depend` records on the table's columns, one entry per object with
/// the columns it uses; and objects outside the table that depend on the table as a
/// whole with a normal dependency (they keep `DROP TABLE` from running). Left out: the
/// table's row type and TOAST table, and each column's own default.
async fn load_dependents<C: GenericClient>(
    client: &C,
    oid: u32,
) -> Result<Vec<Dependent>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT d.classid::regclass::text, d.classid, d.objid,
                    pg_describe_object(d.classid, d.objid, d.objsubid),
                    CASE WHEN bool_or(d.deptype = 'n') THEN 'n' ELSE 'a' END,
                    array_agg(DISTINCT a.attname::text ORDER BY a.attname::text)
                      FILTER (WHERE a.attname IS NOT NULL),
                    CASE d.classid
                      WHEN 'pg_class'::regclass THEN CASE WHEN d.objid = $1 AND d.objsubid > 0
                        -- a generated column's expression, as PostgreSQL 13 records it
                        THEN (SELECT attname::text || ':generated' FROM pg_attribute WHERE attrelid = $1 AND attnum = d.objsubid)
                        ELSE (SELECT relname::text || ':' || relkind::text FROM pg_class WHERE oid = d.objid) END
                      WHEN 'pg_constraint'::regclass THEN (SELECT conname::text FROM pg_constraint WHERE oid = d.objid)
                      WHEN 'pg_trigger'::regclass THEN (SELECT tgname::text FROM pg_trigger WHERE oid = d.objid)
                      WHEN 'pg_policy'::regclass THEN (SELECT polname::text FROM pg_policy WHERE oid = d.objid)
                      WHEN 'pg_rewrite'::regclass THEN (SELECT CASE WHEN r.rulename = '_RETURN'
                                                                    THEN 'view:' || quote_ident(vn.nspname) || '.' || quote_ident(v.relname)
                                                                    ELSE 'rule:' || r.rulename::text END
                                                          FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
                                                          JOIN pg_namespace vn ON vn.oid = v.relnamespace WHERE r.oid = d.objid)
                      WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxname::text FROM pg_statistic_ext WHERE oid = d.objid)
                      WHEN 'pg_attrdef'::regclass THEN (SELECT ad.adrelid::text || ':' || ad.adnum::text || ':' || at.attname::text
                                                          FROM pg_attrdef ad JOIN pg_attribute at ON at.attrelid = ad.adrelid AND at.attnum = ad.adnum
                                                         WHERE ad.oid = d.objid)
                      WHEN 'pg_proc'::regclass THEN (SELECT proname::text FROM pg_proc WHERE oid = d.objid)
                    END,
                    bool_and(d.refobjsubid = 0),
                    CASE d.classid
                      WHEN 'pg_class'::regclass THEN d.objid = $1
                                                  OR EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = d.objid AND indrelid = $1)
                                                  OR EXISTS (SELECT 1 FROM pg_class WHERE oid = d.objid AND relkind = 'S')
                      WHEN 'pg_constraint'::regclass THEN EXISTS (SELECT 1 FROM pg_constraint WHERE oid = d.objid AND conrelid = $1)
                      WHEN 'pg_trigger'::regclass THEN EXISTS (SELECT 1 FROM pg_trigger WHERE oid = d.objid AND tgrelid = $1)
                      WHEN 'pg_policy'::regclass THEN EXISTS (SELECT 1 FROM pg_policy WHERE oid = d.objid AND polrelid = $1)
                      WHEN 'pg_rewrite'::regclass THEN EXISTS (SELECT 1 FROM pg_rewrite WHERE oid = d.objid AND ev_class = $1)
                      WHEN 'pg_statistic_ext'::regclass THEN EXISTS (SELECT 1 FROM pg_statistic_ext WHERE oid = d.objid AND stxrelid = $1)
                      WHEN 'pg_attrdef'::regclass THEN EXISTS (SELECT 1 FROM pg_attrdef WHERE oid = d.objid AND adrelid = $1)
                      WHEN 'pg_publication_rel'::regclass THEN true
                      ELSE false
                    END
               FROM pg_depend d
               LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid AND d.refobjsubid > 0
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1
                AND d.classid <> 'pg_type'::regclass
                AND NOT (d.classid = 'pg_class'::regclass AND d.deptype = 'i')
              GROUP BY d.classid, d.objid, d.objsubid",
            &[&oid],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let class: String = r.get(0);
        let classid: u32 = r.get(1);
        let objid: u32 = r.get(2);
        let description: String = r.get(3);
        let deptype: String = r.get(4);
        let columns: Vec<String> = r.get::<_, Option<Vec<String>>>(5).unwrap_or_default();
        let detail: Option<String> = r.get(6);
        let whole_table: bool = r.get(7);
        let own: bool = r.get(8);
        let detail = detail.unwrap_or_default();
        let (kind, name) = match class.as_str() {
            "pg_class" => {
                let (name, relkind) = detail.rsplit_once(':').unwrap_or((&detail, ""));
                match relkind {
                    "generated" => (DependentKind::GeneratedColumn, name.to_string()),
                    "i" | "I" => (DependentKind::Index, name.to_string()),
                    "S" => (DependentKind::Sequence, name.to_string()),
                    _ => (DependentKind::Other, name.to_string()),
                }
            }
            "pg_constraint" => (DependentKind::Constraint, detail),
            "pg_trigger" => (DependentKind::Trigger, detail),
            "pg_policy" => (DependentKind::Policy, detail),
            "pg_rewrite" => match detail.split_once(':') {
                Some(("rule", n)) => (DependentKind::Rule, n.to_string()),
                Some((_, v)) => (DependentKind::View, v.to_string()),
                None => (DependentKind::Other, detail),
            },
            "pg_statistic_ext" => (DependentKind::Statistics, detail),
            "pg_publication_rel" => (
                DependentKind::Publication,
                description
                    .rsplit_once(" in publication ")
                    .map(|(_, p)| p.to_string())
                    .unwrap_or_default(),
            ),
            "pg_attrdef" => {
                // adrelid:adnum:column — a column's own default is not a dependent; a
                // generated column's expression is
                let mut parts = detail.splitn(3, ':');
                let (rel, _num, col) = (parts.next(), parts.next(), parts.next());
                let col = col.unwrap_or_default().to_string();
                if rel != Some(&oid.to_string()) {
                    (DependentKind::Other, col)
                } else if columns.len() == 1 && columns[0] == col && deptype == "a" {
                    continue; // the column's own default
                } else {
                    (DependentKind::GeneratedColumn, col)
                }
            }
            "pg_proc" => (DependentKind::Function, detail),
            _ => (DependentKind::Other, description.clone()),
        };
        // the table as a whole: only what would keep DROP TABLE from running matters
        if whole_table && (deptype != "n" || kind == DependentKind::Publication) {
            continue;
        }
        let mut columns = columns;
        if kind == DependentKind::GeneratedColumn {
            columns.retain(|c| *c != name); // its own column
        }
        out.push(Dependent {
            kind,
            name,
            description,
            columns,
            deptype,
            own,
            identity: (classid, objid),
        });
    }
    Ok(out)
}

/// Trigger functions of the table (not pgphase's) whose source names one of its
/// columns: a PL/pgSQL body records no dependency, so a column it names can be dropped
/// under it, and every later write through the trigger fails. Matched as a word,
/// case-insensitively for names PostgreSQL folds (lower case), quoted otherwise.
async fn trigger_functions<C: GenericClient>(
    client: &C,
    oid: u32,
    t: &mut Table,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tg.tgname::text, p.oid, p.oid::regprocedure::text, p.prosrc
               FROM pg_trigger tg JOIN pg_proc p ON p.oid = tg.tgfoid
               JOIN pg_language l ON l.oid = p.prolang
              WHERE tg.tgrelid = $1 AND NOT tg.tgisinternal AND l.lanname NOT IN ('c', 'internal')
                AND tg.tgname !~ '^zz_pgphase_'
              ORDER BY tg.tgname",
            &[&oid],
        )
        .await?;
    for r in rows {
        let trigger: String = r.get(0);
        let foid: u32 = r.get(1);
        let function: String = r.get(2);
        let source: String = r.get(3);
        let columns: Vec<String> = t
            .columns
            .iter()
            .filter(|c| names_word(&source, &c.name))
            .map(|c| c.name.clone())
            .collect();
        if columns.is_empty() {
            continue;
        }
        t.dependents.push(Dependent {
            kind: DependentKind::TriggerFunction,
            description: format!("function {function} (called by trigger {trigger})"),
            name: function,
            columns,
            deptype: String::new(),
            own: true,
            // not a recorded dependency: marked with class 1 and the function
            identity: (1, foid),
        });
    }
    Ok(())
}

/// Whether `text` names `word` as an identifier: a whole word (letters, digits, `_`,
/// `$` around it do not count), any case when `word` is lower case (PostgreSQL folds
/// unquoted names), or double-quoted exactly.
pub fn names_word(text: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    if text.contains(&crate::sql::quote_ident(word)) && crate::sql::quote_ident(word) != word {
        return true;
    }
    let folds = word == word.to_lowercase();
    let hay = if folds {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(i) = hay[from..].find(word) {
        let at = from + i;
        let before = hay[..at].chars().next_back();
        let after = hay[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return true;
        }
        from = at + word.len();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::names_word;

    #[test]
    fn words_in_function_bodies() {
        assert!(names_word(
            "NEW.contents := trim(NEW.contents);",
            "contents"
        ));
        assert!(names_word("new.CONTENTS := 1", "contents"));
        assert!(!names_word("NEW.contents_length := 1", "contents"));
        assert!(!names_word("NEW.body := 1", "contents"));
        assert!(names_word("NEW.\"Body Text\" := 1", "Body Text"));
        assert!(!names_word("NEW.body_text := 1", "Body Text"));
    }
}
