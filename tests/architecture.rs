//! The architecture's rules, checked on the source (docs/architecture.md):
//! - the top-level modules of src/ depend on each other one way: the graph of
//!   `crate::<module>` uses between them has no cycle;
//! - src/state/ is the only room that reads or writes the `pgphase` schema: no SQL
//!   naming a `pgphase.*` table elsewhere in src/.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Cycles known and being removed elsewhere, allowed until then (each sorted by name).
/// plan ↔ program ↔ recipe: `PhaseKind` lives in program and `tables_of` in recipe,
/// both needed by plan; the change-kind restructuring (issue 12, branch h12-kinds)
/// moves them below plan and removes this cycle, and this entry with it.
const KNOWN_CYCLES: &[&[&str]] = &[&["plan", "program", "recipe"]];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of src/ belongs to (`run` for src/run/mod.rs and
/// src/run/session.rs, `sql` for src/sql.rs); None for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The source without comments (`//…` to the end of the line), so doc links such as
/// [`crate::interrupt`] do not count as uses.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named after `crate::` in `code`: `crate::run::start` and
/// `use crate::{exec, run::Outcome}`.
fn crate_uses(code: &str) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && {
            let c = code.as_bytes()[i - 1];
            c.is_ascii_alphanumeric() || c == b'_'
        } {
            continue; // `pgcrate::`, not ours
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // a use group: every item at its top level (nested groups skipped)
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            uses.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                uses.insert(name.to_string());
            }
        }
    }
    uses
}

/// module → the top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    for f in &files {
        if let Some(m) = top_module(&src, f) {
            modules.insert(m);
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = top_module(&src, f) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let entry = graph.entry(from.clone()).or_default();
        for to in crate_uses(&code) {
            if to != from && modules.contains(&to) {
                entry.insert(to);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on_stack.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on_stack.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// One cycle through the modules of `comp`, for the message: a → b → … → a.
fn describe(graph: &BTreeMap<String, BTreeSet<String>>, comp: &[String]) -> String {
    let start = &comp[0];
    // breadth-first back to `start`, staying inside the component
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !comp.contains(w) {
                continue;
            }
            if w == start {
                let mut path = vec![start.as_str(), v];
                let mut cur = v;
                while cur != start {
                    cur = prev[cur];
                    path.push(cur);
                }
                path.reverse();
                return path.join(" → ");
            }
            if !prev.contains_key(w.as_str()) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    comp.join(", ")
}

#[test]
fn top_level_modules_depend_one_way() {
    let graph = module_graph();
    assert!(
        graph.get("run").is_some_and(|d| d.contains("state")),
        "the module graph misses run → state: the scan of src/ is broken"
    );
    let found = cycles(&graph);
    let new: Vec<String> = found
        .iter()
        .filter(|c| !KNOWN_CYCLES.iter().any(|k| k == c))
        .map(|c| describe(&graph, c))
        .collect();
    assert!(
        new.is_empty(),
        "import cycles between top-level modules of src/ (move the shared type below both sides):\n  {}",
        new.join("\n  ")
    );
}

#[test]
fn crate_uses_reads_paths_and_groups() {
    let code = code_of(
        "use crate::{exec::{self, Observer}, run::Outcome, sql};\n\
         let x = crate::state::store::load(); // crate::cli::run\n\
         use pgcrate::demo;",
    );
    let got: Vec<String> = crate_uses(&code).into_iter().collect();
    assert_eq!(got, ["exec", "run", "sql", "state"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    let found = cycles(&g);
    assert_eq!(found, [["a", "b", "c"]]);
    assert_eq!(describe(&g, &found[0]), "a → b → c → a");
}

/// Where `code` names a `pgphase.<table>` in SQL: after FROM, INTO, UPDATE, JOIN,
/// TABLE, ON, TRUNCATE or EXISTS, or quoted (`to_regclass('pgphase.plans')`). A
/// message such as "vanished from pgphase.plans" (lower case) is not SQL.
fn pgphase_sql(code: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "FROM", "INTO", "UPDATE", "JOIN", "TABLE", "ON", "TRUNCATE", "EXISTS",
    ];
    let mut found = Vec::new();
    for (i, _) in code.match_indices("pgphase.") {
        let after = &code[i + "pgphase.".len()..];
        if !after.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let before = code[..i].trim_end();
        let word_start = before
            .rfind(|c: char| !c.is_ascii_alphabetic())
            .map_or(0, |j| j + 1);
        let sql = KEYWORDS.contains(&&before[word_start..]) || code[..i].ends_with('\'');
        if sql {
            let line = code[..i].matches('\n').count() + 1;
            found.push(format!("line {line}: pgphase.{}", ident_at(after)));
        }
    }
    found
}

#[test]
fn only_state_touches_the_pgphase_schema() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut outside = Vec::new();
    let mut inside = 0;
    for f in &files {
        let found = pgphase_sql(&code_of(&std::fs::read_to_string(f).unwrap()));
        if f.starts_with(src.join("state")) {
            inside += found.len();
            continue;
        }
        for x in found {
            outside.push(format!("{}: {x}", f.strip_prefix(&src).unwrap().display()));
        }
    }
    assert!(
        inside > 0,
        "no SQL naming pgphase.* found in src/state/: the scan is broken"
    );
    assert!(
        outside.is_empty(),
        "SQL naming the pgphase schema outside src/state/ (give state/ a function for it):\n  {}",
        outside.join("\n  ")
    );
}

#[test]
fn pgphase_sql_finds_sql_not_messages() {
    let code = "q(\"SELECT status FROM pgphase.plans WHERE name = $1\");\n\
                msg(\"vanished from pgphase.plans\");\n\
                q(\"UPDATE\n   pgphase.phases SET x = 1\");\n\
                q(\"SELECT to_regclass('pgphase.events')\");\n\
                const GUC: &str = \"pgphase.backfill\";";
    assert_eq!(
        pgphase_sql(code),
        [
            "line 1: pgphase.plans",
            "line 4: pgphase.phases",
            "line 5: pgphase.events"
        ]
    );
}
