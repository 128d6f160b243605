//! Before/after comparisons of catalog snapshots: what a full rollback must restore,
//! and the differences when it did not.

use serde_json::Value;

use super::Catalog;

/// The part of a snapshot a rollback restores exactly: the tables and relations the
/// plan touches, without what changes by itself (planner statistics, the server's
/// minor version) and without types (an enum value cannot be dropped, so
/// `add_enum_value`'s rollback leaves it, as its plan says), and without the oids of
/// the objects around a column (an index a rollback builds again is a new object with
/// the same definition).
pub fn restorable(cat: &Catalog) -> Catalog {
    let mut c = cat.clone();
    c.server_version_num = 0;
    c.types.clear();
    for t in c.tables.values_mut() {
        t.estimated_rows = 0;
        for d in &mut t.dependents {
            d.identity = (0, 0);
        }
        t.dependents.sort_by(|a, b| {
            (&a.description, &a.name, &a.columns).cmp(&(&b.description, &b.name, &b.columns))
        });
    }
    c
}

/// How many differences [`differences`] lists at most.
const MAX_LINES: usize = 20;

/// The differences between two snapshots, one line each (`path: before → after`, `-`
/// for an entry that is gone, `+` for a new one); empty when equal.
pub fn differences(before: &Catalog, after: &Catalog) -> Vec<String> {
    let a = serde_json::to_value(before).unwrap_or(Value::Null);
    let b = serde_json::to_value(after).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    if out.len() > MAX_LINES {
        let more = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("… and {more} more"));
    }
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(&child(k), va, vb, out),
                    None => out.push(format!("- {}: {}", child(k), compact(va))),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(format!("+ {}: {}", child(k), compact(vb)));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for va in x.iter().filter(|v| !y.contains(v)) {
                out.push(format!("- {path}: {}", compact(va)));
            }
            for vb in y.iter().filter(|v| !x.contains(v)) {
                out.push(format!("+ {path}: {}", compact(vb)));
            }
        }
        _ => out.push(format!("{path}: {} → {}", compact(a), compact(b))),
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diff(a: Value, b: Value) -> Vec<String> {
        let mut out = Vec::new();
        walk("", &a, &b, &mut out);
        out
    }

    #[test]
    fn lists_what_differs() {
        let t =
            |cols: Value| json!({"tables": {"public.t": {"columns": cols, "estimated_rows": 0}}});
        let ab = json!([{"name": "a"}, {"name": "b"}]);
        assert!(diff(t(ab.clone()), t(ab.clone())).is_empty());
        assert_eq!(
            diff(
                t(ab.clone()),
                t(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]))
            ),
            vec![r#"+ tables.public.t.columns: {"name":"c"}"#]
        );
        assert_eq!(
            diff(t(ab.clone()), t(json!([{"name": "a"}, {"name": "x"}]))),
            vec![r#"tables.public.t.columns[1].name: "b" → "x""#]
        );
        assert_eq!(
            diff(json!({"tables": {"public.t": 1}}), json!({"tables": {}})),
            vec!["- tables.public.t: 1"]
        );
        let stats = Catalog {
            server_version_num: 150004,
            ..Catalog::default()
        };
        assert_eq!(restorable(&stats), Catalog::default());
    }
}
