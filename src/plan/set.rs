//! Several plan files at once: their order by `depends_on`, and the error that names a
//! whole dependency cycle.
//!
//! The graph is a petgraph `DiGraph` (an edge runs from a dependency to the plan that
//! needs it); strongly connected components find the cycles, and the order is Kahn's
//! algorithm taking the ready plan with the smallest name first, so it is stable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use super::{PlanError, PlanFile};

/// The plan files of the paths given: files as named, directories' `*.yaml` / `*.yml`
/// (not recursive), sorted by path.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<PlanFile>, PlanError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = yaml_files(p).map_err(|e| PlanError {
                file: p.display().to_string(),
                pos: None,
                message: format!("cannot list the folder: {e}"),
            })?;
            files.append(&mut found);
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    files.dedup();
    files.iter().map(|f| PlanFile::load(f)).collect()
}

fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            out.push(path);
        }
    }
    Ok(out)
}

/// The order to start plans in, and the dependencies the set does not contain.
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    /// Indexes into the files, dependencies first.
    pub order: Vec<usize>,
    /// (plan, dependency) pairs naming a plan that is not among the files: it must
    /// already be completed in the database (`start` checks).
    pub outside: Vec<(String, String)>,
}

/// Orders plan files by `depends_on`. Refuses two files with one plan name, and a
/// dependency cycle, naming every plan of it with where each dependency is written.
pub fn order(files: &[PlanFile]) -> Result<Order, PlanError> {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        if let Some(&j) = by_name.get(f.plan.name.as_str()) {
            return Err(PlanError {
                file: f.path.display().to_string(),
                pos: None,
                message: format!(
                    "plan `{}` is also defined by {}: plan names must be unique",
                    f.plan.name,
                    files[j].path.display()
                ),
            });
        }
        by_name.insert(&f.plan.name, i);
    }
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..files.len()).map(|i| g.add_node(i)).collect();
    let mut outside = Vec::new();
    for (i, f) in files.iter().enumerate() {
        for dep in &f.plan.depends_on {
            match by_name.get(dep.value.as_str()) {
                Some(&j) => {
                    g.update_edge(nodes[j], nodes[i], ());
                }
                None => outside.push((f.plan.name.clone(), dep.value.clone())),
            }
        }
    }
    if let Some(cycle) = find_cycle(&g, files, None) {
        return Err(cycle_error(&cycle, files));
    }
    // Kahn's algorithm, smallest plan name first among the ready ones.
    let mut indegree: Vec<usize> = nodes
        .iter()
        .map(|&n| g.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BTreeSet<(&str, usize)> = (0..files.len())
        .filter(|&i| indegree[i] == 0)
        .map(|i| (files[i].plan.name.as_str(), i))
        .collect();
    let mut order = Vec::with_capacity(files.len());
    while let Some(next) = ready.pop_first() {
        let i = next.1;
        order.push(i);
        for m in g.neighbors_directed(nodes[i], Direction::Outgoing) {
            let j = g[m];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert((files[j].plan.name.as_str(), j));
            }
        }
    }
    Ok(Order { order, outside })
}

/// For `start FILE`: a dependency cycle through this plan among the plan files of its
/// folder (those that load; a file with the same plan name is the same plan).
pub fn cycle_through(file: &PlanFile) -> Option<PlanError> {
    let dir = file
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut files = vec![file.clone()];
    let mut seen: BTreeSet<String> = BTreeSet::from([file.plan.name.clone()]);
    let mut paths = yaml_files(dir).unwrap_or_default();
    paths.sort();
    for p in paths {
        if let Ok(f) = PlanFile::load(&p) {
            if seen.insert(f.plan.name.clone()) {
                files.push(f);
            }
        }
    }
    let index: BTreeMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.plan.name.as_str(), i))
        .collect();
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..files.len()).map(|i| g.add_node(i)).collect();
    for (i, f) in files.iter().enumerate() {
        for dep in &f.plan.depends_on {
            if let Some(&j) = index.get(dep.value.as_str()) {
                g.update_edge(nodes[j], nodes[i], ());
            }
        }
    }
    find_cycle(&g, &files, Some(0)).map(|c| cycle_error(&c, &files))
}

/// A dependency cycle as file indexes, each depending on the next (the last on the
/// first), starting from the smallest plan name; only one through file `through` when
/// given; None when there is none.
fn find_cycle(
    g: &DiGraph<usize, ()>,
    files: &[PlanFile],
    through: Option<usize>,
) -> Option<Vec<usize>> {
    let mut sccs: Vec<Vec<NodeIndex>> = tarjan_scc(g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .filter(|c| through.is_none_or(|t| c.iter().any(|&n| g[n] == t)))
        .collect();
    let name = |n: &NodeIndex| files[g[*n]].plan.name.as_str();
    for c in &mut sccs {
        c.sort_by(|a, b| name(a).cmp(name(b)));
    }
    sccs.sort_by(|a, b| name(&a[0]).cmp(name(&b[0])));
    let scc = sccs.first()?;
    let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
    // The shortest cycle through the start plan (`through`, else the component's first
    // by name): breadth-first along "depends on" edges (incoming) inside the component
    // until one leads back to the start; inside a strongly connected component one does.
    let start = match through {
        Some(t) => *scc.iter().find(|&&n| g[n] == t).expect("filtered above"),
        None => scc[0],
    };
    let mut parent: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(here) = queue.pop_front() {
        let mut deps: Vec<NodeIndex> = g
            .neighbors_directed(here, Direction::Incoming)
            .filter(|n| members.contains(n))
            .collect();
        deps.sort_by(|a, b| name(a).cmp(name(b)));
        for next in deps {
            if next == start {
                let mut path = vec![here];
                while let Some(&p) = parent.get(path.last().expect("not empty")) {
                    path.push(p);
                }
                path.reverse(); // start … here, each depending on the next; here on start
                return Some(path.iter().map(|&n| g[n]).collect());
            }
            if next != start && !parent.contains_key(&next) {
                parent.insert(next, here);
                queue.push_back(next);
            }
        }
    }
    None
}

fn cycle_error(cycle: &[usize], files: &[PlanFile]) -> PlanError {
    let mut links = Vec::new();
    for (k, &i) in cycle.iter().enumerate() {
        let dep = &files[cycle[(k + 1) % cycle.len()]].plan.name;
        let f = &files[i];
        let at = f
            .plan
            .depends_on
            .iter()
            .find(|d| &d.value == dep)
            .map(|d| format!("{}:{}:{}", f.path.display(), d.pos.line, d.pos.column))
            .unwrap_or_else(|| f.path.display().to_string());
        links.push(format!("`{}` depends on `{dep}` ({at})", f.plan.name));
    }
    let first = &files[cycle[0]];
    let names: Vec<&str> = cycle
        .iter()
        .chain(std::iter::once(&cycle[0]))
        .map(|&i| files[i].plan.name.as_str())
        .collect();
    PlanError {
        file: first.path.display().to_string(),
        pos: first
            .plan
            .depends_on
            .iter()
            .find(|d| d.value == files[cycle[1 % cycle.len()]].plan.name)
            .map(|d| d.pos),
        message: format!(
            "depends_on cycle: {}; no order can satisfy it: remove one of these dependencies\n  {}",
            names.join(" → "),
            links.join("\n  ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, deps: &[&str]) -> PlanFile {
        let src = format!(
            "name: {name}\ndepends_on: [{}]\nchanges:\n  - drop_index: {{ name: i_{name} }}\n",
            deps.join(", ")
        );
        let path = format!("plans/{name}.yaml");
        PlanFile {
            path: PathBuf::from(&path),
            checksum: super::super::checksum(&src),
            plan: super::super::parse(&src, &path, name).unwrap(),
            source: src,
        }
    }

    fn names(files: &[PlanFile], o: &Order) -> Vec<String> {
        o.order
            .iter()
            .map(|&i| files[i].plan.name.clone())
            .collect()
    }

    #[test]
    fn dependencies_first_then_by_name() {
        let files = vec![
            file("c", &["b"]),
            file("a", &[]),
            file("b", &["a", "external"]),
            file("d", &[]),
        ];
        let o = order(&files).unwrap();
        assert_eq!(names(&files, &o), ["a", "b", "c", "d"]);
        assert_eq!(o.outside, [("b".to_string(), "external".to_string())]);
    }

    #[test]
    fn a_cycle_is_named_whole_with_where_each_link_is_written() {
        let files = vec![
            file("start", &[]),
            file("x", &["z", "start"]),
            file("y", &["x"]),
            file("z", &["y"]),
        ];
        let e = order(&files).unwrap_err().to_string();
        assert!(
            e.starts_with("plans/x.yaml:2:14: depends_on cycle: x → z → y → x;"),
            "{e}"
        );
        assert!(e.contains("`x` depends on `z` (plans/x.yaml:2:14)"), "{e}");
        assert!(e.contains("`z` depends on `y` (plans/z.yaml:2:14)"), "{e}");
        assert!(e.contains("`y` depends on `x` (plans/y.yaml:2:14)"), "{e}");
    }

    #[test]
    fn start_finds_a_cycle_through_its_plan_among_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, deps: &str| {
            let p = dir.path().join(format!("{name}.yaml"));
            std::fs::write(
                &p,
                format!("depends_on: [{deps}]\nchanges:\n  - drop_index: {{ name: i }}\n"),
            )
            .unwrap();
            PlanFile::load(&p).unwrap()
        };
        let a = write("a", "b");
        write("b", "a");
        let c = write("c", "");
        std::fs::write(dir.path().join("broken.yaml"), "changes: [").unwrap();
        let e = cycle_through(&a).unwrap().to_string();
        assert!(e.contains("depends_on cycle: a → b → a"), "{e}");
        assert!(cycle_through(&c).is_none(), "c is not in the cycle");
    }

    #[test]
    fn two_files_with_one_name_are_refused() {
        let mut b = file("a", &[]);
        b.path = PathBuf::from("plans/other.yaml");
        let e = order(&[file("a", &[]), b]).unwrap_err().to_string();
        assert!(
            e.contains("plan `a` is also defined by plans/a.yaml"),
            "{e}"
        );
    }
}
