//! The import graph between the crate's source files has no cycle.
//!
//! Layers import downward only: helpers (errors, numbers, time, backoff,
//! JSON, encoding) at the bottom, the presence engine above them, the IO
//! driver and the client on top. This test reads every `.rs` file under
//! `src/`, extracts what each one takes from the others, and fails with
//! the cycle if the graph has one.
//!
//! What counts as a dependency of a file:
//! - `use crate::…`, `use super::…`, `use self::…` and `use child::…`
//!   (a child module the file declares), `{…}` groups expanded;
//! - inline paths: `crate::a::b(…)`, `$crate::…` in macros, `super::…`,
//!   `child::…`;
//! - a path to an item that a module re-exports (`pub use`, `lib.rs`'s
//!   table of contents included) counts as a dependency on the file that
//!   defines it, not on the re-exporting file, so `crate::Error` is a
//!   dependency on `src/error.rs`.
//!
//! Not counted:
//! - `#[cfg(test)] mod … { … }` blocks: unit tests may import anything
//!   (the crate's public facade, builders, test servers) without making
//!   the library itself circular. Other `#[cfg(test)]` items (a test-only
//!   `use` or accessor) are counted.
//! - `src/lib.rs` itself: it is the table of contents, it names every
//!   module by design; its re-exports are resolved as above.
//! - Comments, doc comments and string literals.
//!
//! Every file is in the check, the local presence server (`emulator`) and
//! the simulator (`sim`) included. Besides, no library file may import
//! those two (they are test support behind features, a top layer): the
//! simulator stands in for the clock and the sockets through
//! `src/seam.rs`, a contract the library defines and the simulator
//! implements, so the library never names the simulator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file: its path relative to the crate root and its module path.
struct Source {
    rel: String,
    module: Vec<String>,
    code: String,
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of `src/a/b.rs` (`a::b`), `src/a/mod.rs` (`a`),
/// `src/lib.rs` (the root).
fn module_of(rel: &str) -> Vec<String> {
    let inner = rel.strip_prefix("src/").expect("under src/");
    let inner = inner.strip_suffix(".rs").expect("a .rs file");
    let mut parts: Vec<String> = inner.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file with comments removed and string and character
/// literals emptied, so that neither can look like a path.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        let next = at(1);
        let after_next = at(2);
        match c[i] {
            '/' if next == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == '*' => {
                let mut depth = 0usize;
                while i < c.len() {
                    let second = c.get(i + 1).copied();
                    if c[i] == '/' && second == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && second == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' if (next == '#' || next == '"')
                && !c
                    .get(i.wrapping_sub(1))
                    .is_some_and(|p| p.is_alphanumeric() || *p == '_') =>
            {
                // A raw string r"…" or r#"…"#, or an identifier like `r#type`.
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if next == '\\' {
                    let mut j = i + 2;
                    while j < c.len() && c[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                    out.push_str("' '");
                } else if after_next == '\'' {
                    i += 3;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Removes `#[cfg(test)] mod name { … }` blocks (brace-matched on code
/// without comments or strings).
fn drop_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let t = after.trim_start();
        let is_mod = t.starts_with("mod ")
            || t.starts_with("pub(crate) mod ")
            || t.starts_with("pub(super) mod ");
        if !is_mod {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let open = match after.find(['{', ';']) {
            Some(o) if after.as_bytes()[o] == b'{' => o,
            Some(o) => {
                // `#[cfg(test)] mod tests;`: a test file of its own.
                rest = &after[o + 1..];
                continue;
            }
            None => break,
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, b) in after.bytes().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits a `use` tree (`a::{b, c::{d, e}}`) into its full paths.
fn expand_use(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        // `a::b as c`: the path is `a::b`.
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_owned()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let close = tree.rfind('}').expect("balanced use tree");
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (k, b) in inner.bytes().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        for sub in expand_use(p) {
            if sub == "self" {
                out.push(prefix.to_owned());
            } else if prefix.is_empty() {
                out.push(sub);
            } else {
                out.push(format!("{prefix}::{sub}"));
            }
        }
    }
    out
}

/// The paths a piece of code names: each `use` tree, and each inline path
/// that starts with `crate`, `$crate`, `super`, `self` or a name in
/// `children` (modules the file declares). Returned as segment lists,
/// unresolved; for a `pub use` (a re-export), the name it exports under
/// (empty: its own last segment).
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<(Vec<String>, Option<String>)> {
    let mut found = Vec::new();
    // `use` statements, expanded; their text is then blanked so the
    // inline scan below does not see them twice.
    let mut rest = String::with_capacity(code.len());
    let mut s = code;
    loop {
        let Some(at) = find_word(s, "use") else {
            rest.push_str(s);
            break;
        };
        let Some(semi) = s[at..].find(';') else {
            rest.push_str(s);
            break;
        };
        let before = s[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        let tree = &s[at + 3..at + semi];
        for path in expand_use(tree) {
            let segs: Vec<String> = path
                .split("::")
                .map(|x| x.trim().trim_start_matches('$').to_owned())
                .collect();
            let alias = tree
                .contains(" as ")
                .then(|| alias_of(tree, segs.last().map(String::as_str).unwrap_or("")))
                .flatten();
            found.push((
                segs,
                if public {
                    Some(alias.unwrap_or_default())
                } else {
                    None
                },
            ));
        }
        rest.push_str(&s[..at]);
        s = &s[at + semi + 1..];
    }
    // Inline paths.
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_ident_char(chars[i]) && chars[i] != '$' {
            i += 1;
            continue;
        }
        let start = i;
        let prev_ok = start == 0 || {
            let p = chars[start - 1];
            !(is_ident_char(p) || p == ':' || p == '.')
        };
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let seg_start = j;
            if chars.get(j) == Some(&'$') {
                j += 1;
            }
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            segs.push(
                chars[seg_start..j]
                    .iter()
                    .collect::<String>()
                    .trim_start_matches('$')
                    .to_owned(),
            );
            if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                j += 2;
                if chars.get(j).is_some_and(|c| is_ident_char(*c) || *c == '$') {
                    continue;
                }
            }
            break;
        }
        i = j.max(start + 1);
        if !prev_ok || segs.len() < 2 {
            continue;
        }
        let head = segs[0].as_str();
        if head == "crate" || head == "super" || head == "self" || children.contains(head) {
            found.push((segs, None));
        }
    }
    found
}

/// The name a `use … as name` gives `last`.
fn alias_of(tree: &str, last: &str) -> Option<String> {
    let at = tree.find(&format!("{last} as "))?;
    let after = &tree[at + last.len() + 4..];
    let name: String = after
        .trim_start()
        .chars()
        .take_while(|c| is_ident_char(*c))
        .collect();
    Some(name)
}

/// The first occurrence of `word` as a whole word.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = s[from..].find(word) {
        let at = from + k;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident_char) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Makes `segs` absolute (from the crate root), seen from module `here`.
fn absolute(here: &[String], segs: &[String], children: &BTreeSet<String>) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut k = 0;
    match segs.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            k = 1;
        }
        Some("self") => k = 1,
        Some("super") => {
            while segs.get(k).map(String::as_str) == Some("super") {
                base.pop()?;
                k += 1;
            }
        }
        Some(h) if children.contains(h) => {}
        _ => return None,
    }
    base.extend(segs[k..].iter().cloned());
    Some(base)
}

/// The crate's source files, each with its code ready to scan.
fn read_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .expect("under the crate")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(p).expect("readable source");
            source(&rel, &text)
        })
        .collect()
}

fn source(rel: &str, text: &str) -> Source {
    Source {
        module: module_of(rel),
        code: drop_test_modules(&strip(text)),
        rel: rel.to_owned(),
    }
}

/// The import graph: for each file (by index), the files it imports;
/// and the imports of the emulator or the simulator from library files
/// other than the seam (which must not exist).
struct Graph {
    edges: BTreeMap<usize, BTreeSet<usize>>,
    wrong_way: Vec<String>,
}

fn is_lib(s: &Source) -> bool {
    s.rel == "src/lib.rs"
}

fn is_top(s: &Source) -> bool {
    s.rel.starts_with("src/sim/") || s.rel.starts_with("src/emulator/")
}

fn graph(sources: &[Source]) -> Graph {
    let by_module: BTreeMap<Vec<String>, usize> = sources
        .iter()
        .enumerate()
        .map(|(k, s)| (s.module.clone(), k))
        .collect();
    let children_of = |m: &[String]| -> BTreeSet<String> {
        sources
            .iter()
            .filter(|s| s.module.len() == m.len() + 1 && s.module.starts_with(m))
            .filter_map(|s| s.module.last().cloned())
            .collect()
    };

    // Each file's paths, absolute; and its re-exports: name -> path.
    let mut named: Vec<Vec<Vec<String>>> = Vec::new();
    let mut reexports: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    for (k, s) in sources.iter().enumerate() {
        let children = children_of(&s.module);
        let mut list = Vec::new();
        for (segs, public) in paths(&s.code, &children) {
            let Some(abs) = absolute(&s.module, &segs, &children) else {
                continue;
            };
            if let Some(alias) = public {
                let name = if alias.is_empty() {
                    abs.last().cloned().unwrap_or_default()
                } else {
                    alias
                };
                if name != "*" {
                    reexports.insert((k, name), abs.clone());
                }
            }
            list.push(abs);
        }
        named.push(list);
    }

    // A path resolves to the file of its longest module prefix, following
    // re-exports of the item named right after it.
    let resolve = |path: &[String]| -> Option<usize> {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let (file, len) = (0..=path.len())
                .rev()
                .find_map(|n| by_module.get(&path[..n]).map(|f| (*f, n)))?;
            let Some(target) = path
                .get(len)
                .and_then(|item| reexports.get(&(file, item.clone())))
            else {
                return Some(file);
            };
            let mut next = target.clone();
            next.extend(path[len + 1..].iter().cloned());
            if next == path {
                return Some(file);
            }
            path = next;
        }
        None
    };

    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut wrong_way = Vec::new();
    for (k, list) in named.iter().enumerate() {
        let from = &sources[k];
        if is_lib(from) {
            continue;
        }
        for path in list {
            let Some(to) = resolve(path) else { continue };
            let target = &sources[to];
            if to == k || is_lib(target) {
                continue;
            }
            if is_top(target) && !is_top(from) {
                wrong_way.push(format!("{} -> {}", from.rel, target.rel));
            }
            edges.entry(k).or_default().insert(to);
        }
    }
    Graph { edges, wrong_way }
}

impl Graph {
    fn succ(&self, v: usize) -> Vec<usize> {
        self.edges
            .get(&v)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The strongly connected components of more than one file (Tarjan,
    /// iterative): each is a set of files that import each other in a
    /// circle.
    fn circles(&self, n: usize) -> Vec<BTreeSet<usize>> {
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0;
        let mut sccs = Vec::new();
        for start in 0..n {
            if index[start] != usize::MAX {
                continue;
            }
            let mut work: Vec<(usize, usize)> = vec![(start, 0)];
            index[start] = next;
            low[start] = next;
            next += 1;
            stack.push(start);
            on_stack[start] = true;
            while let Some(&mut (v, ref mut pos)) = work.last_mut() {
                let out = self.succ(v);
                if let Some(&w) = out.get(*pos) {
                    *pos += 1;
                    if index[w] == usize::MAX {
                        index[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(u, _)) = work.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = BTreeSet::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.insert(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        sccs.push(comp);
                    }
                }
            }
        }
        sccs
    }

    /// The circles, each with one cycle through it and its edges, for a
    /// failure message; empty when there is none.
    fn report(&self, sources: &[Source]) -> String {
        let name = |k: &usize| sources[*k].rel.as_str();
        let mut report = String::new();
        for members in self.circles(sources.len()) {
            let names: Vec<&str> = members.iter().map(name).collect();
            let cycle: Vec<&str> = one_cycle(&members, &|v| self.succ(v))
                .iter()
                .map(name)
                .collect();
            report.push_str(&format!(
                "\n{} files import each other in a circle: {}\n  one cycle: {}",
                names.len(),
                names.join(", "),
                cycle.join(" -> ")
            ));
            for k in &members {
                for to in self.succ(*k).iter().filter(|t| members.contains(t)) {
                    report.push_str(&format!("\n    {} -> {}", name(k), name(to)));
                }
            }
        }
        report
    }

    /// Each file's layer: one above the highest layer it imports (files
    /// on a circle get none).
    fn layers(&self, sources: &[Source]) -> BTreeMap<usize, Vec<String>> {
        let n = sources.len();
        let skip = |v: usize| is_lib(&sources[v]) || is_top(&sources[v]);
        let mut layer = vec![usize::MAX; n];
        let mut changed = true;
        while changed {
            changed = false;
            for v in (0..n).filter(|v| !skip(*v)) {
                let out = self.succ(v);
                if layer[v] == usize::MAX && out.iter().all(|w| layer[*w] != usize::MAX) {
                    layer[v] = out.iter().map(|w| layer[*w] + 1).max().unwrap_or(0);
                    changed = true;
                }
            }
        }
        let mut by_layer: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for v in (0..n).filter(|v| !skip(*v)) {
            by_layer
                .entry(layer[v])
                .or_default()
                .push(sources[v].rel.clone());
        }
        by_layer
    }
}

#[test]
fn the_import_graph_has_no_cycle() {
    let sources = read_sources();
    let g = graph(&sources);
    assert!(
        g.wrong_way.is_empty(),
        "library files import the emulator or the simulator: {:?}",
        g.wrong_way
    );
    let report = g.report(&sources);
    assert!(report.is_empty(), "the import graph has cycles:{report}");
    // The layers, for the reader (`cargo test --test layers -- --nocapture`).
    for (l, files) in g.layers(&sources) {
        eprintln!("layer {l}: {}", files.join(", "));
    }
}

/// The checker itself: every kind of path is seen, comments, strings and
/// unit tests are not, re-exports lead to the defining file, and a circle
/// is reported with its files.
#[test]
fn the_checker_sees_paths_and_reports_a_circle() {
    let sources = [
        source("src/lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\npub use a::A;\n"),
        // A group with `self` and an alias, through a re-export of b.
        source(
            "src/a.rs",
            "use crate::{b::{self, C as Renamed}};\npub struct A;\npub fn g() {}\n",
        ),
        source("src/b/mod.rs", "mod inner;\npub use inner::C;\n"),
        // An inline `crate::` path inside a body.
        source("src/b/inner.rs", "pub struct C;\nfn f() { crate::a::g() }\n"),
        // A comment, a doc comment, a string, a char literal, a lifetime
        // and a unit test module: none is an import.
        source(
            "src/c.rs",
            "// use crate::d::D;\n/// crate::d::D\nfn s<'a>(x: &'a str) -> &'a str { let _ = '\"'; \"crate::d::D\" }\n\
             #[cfg(test)]\nmod tests {\n    use crate::d::D;\n}\n",
        ),
        // `super::` from a top-level file, and the root's re-export.
        source("src/d.rs", "pub struct D;\nfn h() { let _ = super::A; }\n"),
    ];
    let g = graph(&sources);
    let mut edges: Vec<(String, String)> = g
        .edges
        .iter()
        .flat_map(|(from, to)| {
            to.iter()
                .map(|t| (sources[*from].rel.clone(), sources[*t].rel.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    edges.sort();
    let e = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        edges,
        vec![
            e("src/a.rs", "src/b/inner.rs"),
            e("src/a.rs", "src/b/mod.rs"),
            e("src/b/inner.rs", "src/a.rs"),
            e("src/b/mod.rs", "src/b/inner.rs"),
            e("src/d.rs", "src/a.rs"),
        ]
    );
    let report = g.report(&sources);
    assert!(
        report.contains(
            "3 files import each other in a circle: src/a.rs, src/b/mod.rs, src/b/inner.rs"
        ),
        "{report}"
    );
    assert!(
        report.contains("one cycle: src/a.rs -> src/b/inner.rs -> src/a.rs"),
        "{report}"
    );
}

/// A cycle through the members of one strongly connected component.
fn one_cycle(members: &BTreeSet<usize>, succ: &dyn Fn(usize) -> Vec<usize>) -> Vec<usize> {
    let start = *members.iter().next().expect("a non-empty component");
    // Breadth-first from `start` back to `start`, inside the component.
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in succ(v).into_iter().filter(|w| members.contains(w)) {
            if w == start {
                // start -> … -> v -> start, found backwards from v.
                let mut back = vec![v];
                let mut at = v;
                while at != start {
                    at = parent[&at];
                    back.push(at);
                }
                back.reverse();
                back.push(start);
                return back;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}
