//! The house's rules, read from the source: dependencies point one way (src/lib.rs says which),
//! and the papers that travel with the binary are there and current.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::repo;

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The `crate::…` paths a file's code names (comments left out), with their line numbers.
fn crate_paths(file: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(file).unwrap();
    let mut paths = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let end =
                tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if end > 0 {
                paths.push((n + 1, tail[..end].to_string()));
            }
            rest = &tail[end..];
        }
        // `use crate::{a, b::c}`: each name in the braces.
        if let Some(braced) = code.split("use crate::{").nth(1) {
            let names = braced.split(['{', '}', ',', ' ', ';']).filter(|w| !w.is_empty());
            paths.extend(names.map(|name| (n + 1, name.to_string())));
        }
    }
    paths
}

/// What each part of src/ may not name, as src/lib.rs's layout doc says.
const FORBIDDEN: [(&str, &[&str]); 8] = [
    ("server", &["tools", "machines", "cli", "packets"]),
    ("packets", &["server", "tools", "machines", "cli"]),
    ("tools", &["machines", "cli"]),
    ("machines", &["tools", "cli"]),
    ("settings.rs", &["tools", "machines", "cli"]),
    ("log.rs", &["server", "tools", "machines", "cli", "settings"]),
    ("sys.rs", &["server", "tools", "machines", "cli", "settings", "packets"]),
    ("http.rs", &["server", "tools", "machines", "cli", "settings", "packets"]),
];

#[test]
fn dependencies_point_one_way() {
    let src = repo().join("src");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (part, forbidden) in FORBIDDEN {
        let root = src.join(part);
        let files = if root.is_dir() { rust_files(&root) } else { vec![root] };
        for file in files {
            for (line, path) in crate_paths(&file) {
                checked += 1;
                let first = path.split("::").next().unwrap();
                if forbidden.contains(&first) {
                    wrong.push(format!(
                        "{}:{line}: crate::{path}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports that run back up (see src/lib.rs's layout):\n{}", wrong.join("\n"));
    assert!(checked > 50, "only {checked} paths read: is the scan still reading the imports?");
}

#[test]
fn the_scan_sees_each_form_of_import() {
    let dir = std::env::temp_dir().join(format!("jam-layout-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.rs");
    fs::write(&file, "use crate::tools::check;\nuse crate::{Error, cli};\nlet x = crate::machines::wire::run(); // crate::cli\n")
        .unwrap();
    let names: Vec<String> = crate_paths(&file).into_iter().map(|(_, p)| p).collect();
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(names, ["tools::check", "Error", "cli", "machines::wire::run"]);
}

/// The crates compiled into the binary for `target`, as `name version`, jam itself left out.
fn crates_in_the_binary(target: &str) -> std::collections::BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}", "--target", target])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (name, version) = (words.next()?, words.next()?.strip_prefix('v')?);
            (name != "jam").then(|| format!("{name} {version}"))
        })
        .collect()
}

#[test]
fn the_papers_travel_with_the_binary_and_name_every_crate_in_it() {
    let license = fs::read_to_string(repo().join("LICENSE")).expect("a LICENSE file");
    let manifest = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("license = \"MIT\"") && license.starts_with("MIT License"),
        "LICENSE and Cargo.toml"
    );
    let notices = fs::read_to_string(repo().join("THIRD-PARTY-NOTICES")).expect("THIRD-PARTY-NOTICES");
    // "Crates:", then one line per crate: "  name version  license".
    let listed: std::collections::BTreeSet<String> = notices
        .split("Crates:\n")
        .nth(1)
        .expect("a Crates: list")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let mut compiled = crates_in_the_binary("x86_64-unknown-linux-musl");
    compiled.extend(crates_in_the_binary("aarch64-unknown-linux-musl"));
    let missing: Vec<_> = compiled.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&compiled).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "THIRD-PARTY-NOTICES is stale (run deploy/notices): missing {missing:?}, not in the binary {extra:?}"
    );
    // Each license's text, not only its name.
    assert!(notices.contains("Permission is hereby granted") && notices.contains("Apache License"));
}

#[test]
fn scripts_keep_lf_line_endings_on_every_checkout() {
    let attributes = fs::read_to_string(repo().join(".gitattributes")).expect("a .gitattributes file");
    assert!(
        attributes.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["*", "text=auto", "eol=lf"]),
        ".gitattributes must check text out with LF everywhere: {attributes}"
    );
    let listed = std::process::Command::new("git").args(["ls-files", "-z"]).current_dir(repo()).output();
    let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
        // A source tree without git (a tarball): nothing is checked out by git.
        return;
    };
    let mut scripts = 0;
    for name in String::from_utf8(listed.stdout).unwrap().split('\0').filter(|n| !n.is_empty()) {
        let Ok(bytes) = fs::read(repo().join(name)) else { continue };
        let script = bytes.starts_with(b"#!")
            || name.ends_with(".yml")
            || name.ends_with(".yaml")
            || name.rsplit('/').next().unwrap().starts_with("Dockerfile");
        if script {
            scripts += 1;
            assert!(!bytes.windows(2).any(|w| w == b"\r\n"), "{name} has CR LF line endings");
        }
    }
    assert!(scripts >= 20, "only {scripts} scripts found");
}

/// The commands and output of a guide: every line of its `sh` and `console` blocks.
fn guide_blocks(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "```sh" || line == "```console" {
            inside = true;
        } else if line == "```" {
            inside = false;
        } else if inside {
            lines.push(line.to_string());
        }
    }
    lines
}

#[test]
fn the_indonesian_guide_is_in_step_with_the_english_one() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let start =
        readme.find("## The sheet, step by step, with Docker alone").expect("the guide in the README");
    let end = start + readme[start..].find("\n## ").unwrap_or(readme.len() - start);
    let english = guide_blocks(&readme[start..end]);
    let indonesian = guide_blocks(&fs::read_to_string(repo().join("docs/PANDUAN.md")).unwrap());
    assert!(english.len() > 40, "{english:?}");
    assert_eq!(indonesian, english, "docs/PANDUAN.md's commands and output differ from the README's guide");
}
