//! src/ reads bottom-up: no two modules need each other (at the depth of
//! `crate::a::b`), every file stays under 800 lines, and the reading order
//! docs/learn/07-reading-ferry.md gives never sends a reader to a module
//! before the modules it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under src/.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// Every module of src/ (`a`, `a::b`; deeper paths count as `a::b`) and
/// the modules it names through `crate::…`, outside comments and tests.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files();
    let module_of = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(&root).ok()?.with_extension("");
        let mut parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            return None;
        }
        parts.truncate(2);
        Some(parts.join("::"))
    };
    let names: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let reference = regex_lite::Regex::new(r"crate::([a-z_]+)(?:::([a-z_]+))?").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let uses = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for found in reference.captures_iter(line) {
                let first = &found[1];
                let target = match found.get(2) {
                    Some(second) if names.contains(&format!("{first}::{}", second.as_str())) => {
                        format!("{first}::{}", second.as_str())
                    }
                    _ => first.to_string(),
                };
                let related = target == module
                    || module.starts_with(&format!("{target}::"))
                    || target.starts_with(&format!("{module}::"));
                if names.contains(&target) && !related {
                    uses.insert(target);
                }
            }
        }
    }
    graph
}

/// A module and a path back to it, if the graph has a cycle.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_need_each_other() {
    let graph = module_graph();
    assert!(graph.len() > 30, "{} modules found", graph.len());
    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import cycle: {}", cycle.join(" -> "));
    }
}

/// Every file's `//!` header says where it sits in the course.
#[test]
fn every_module_says_where_it_sits_in_the_course() {
    for path in source_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(
            header.join("\n").contains("(docs/learn)"),
            "{}: its //! header does not say where it sits in the course",
            path.display()
        );
    }
}

#[test]
fn every_source_file_stays_under_800_lines() {
    for path in source_files() {
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 800, "{} has {lines} lines", path.display());
    }
}

/// Chapter 7's reading order: each module it lists (`src/a/b.rs` or
/// `src/a/`) comes after every listed module it uses.
#[test]
fn the_reading_order_goes_bottom_up() {
    let graph = module_graph();
    let chapter = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/learn/07-reading-ferry.md"
    ))
    .unwrap();
    let order_section = chapter
        .split_once("## The order")
        .expect("a \"## The order\" section")
        .1;
    let order_section = order_section.split("\n## ").next().unwrap_or("");
    let listed = regex_lite::Regex::new(r"`src/([a-z_/]+?)(?:/mod)?(?:\.rs|/)`").unwrap();
    let mut order: Vec<String> = Vec::new();
    for found in listed.captures_iter(order_section) {
        let mut parts: Vec<&str> = found[1].split('/').collect();
        parts.truncate(2);
        let module = parts.join("::");
        if graph.contains_key(&module) && !order.contains(&module) {
            order.push(module);
        }
    }
    assert!(order.len() >= 20, "only {} modules listed", order.len());
    for (position, module) in order.iter().enumerate() {
        for used in graph.get(module).into_iter().flatten() {
            if let Some(later) = order.iter().position(|m| m == used) {
                assert!(
                    later < position,
                    "{module} is listed before {used}, which it uses"
                );
            }
        }
    }
}
