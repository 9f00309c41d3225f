//! `jam grade`: a small class graded in sandboxes (root, bubblewrap, python3): correct and broken
//! servers get their grades, and hostile ones are contained: they read no root-only file, reach
//! no network, and leave no process behind, not even one that ignores SIGTERM and forks away.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{JAM, have, repo, require, run};

/// A folder removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A student's folder in `class`, holding `files` (name, text), readable by all.
fn student(class: &Path, id: &str, files: &[(&str, String)]) {
    let dir = class.join(id);
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether a process whose command line holds `needle` runs anywhere on this machine.
fn running(needle: &str) -> bool {
    fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|e| {
        fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
    })
}

#[test]
fn a_class_is_graded_in_sandboxes_and_the_hostile_are_contained() {
    let root = nix::unistd::Uid::effective().is_root();
    if !require("root (jam grade drops each server to nobody and joins its network)", root)
        || !require("bubblewrap (jam grade's sandbox)", have("bwrap", "--version"))
        || !require("python3", have("python3", "--version"))
    {
        return;
    }
    let pid = std::process::id();
    let class = Scratch(std::env::temp_dir().join(format!("jam-class-{pid}")));
    let out = class.0.join("gradebook");
    fs::create_dir_all(&class.0).unwrap();
    fs::set_permissions(&class.0, fs::Permissions::from_mode(0o755)).unwrap();
    let correct = fs::read_to_string(repo().join("tests/student/correct.py")).unwrap();
    // A file only root may read, outside /tmp (which the sandbox replaces with its own).
    let secret = PathBuf::from(format!("/var/tmp/jam-grade-secret-{pid}"));
    fs::write(&secret, "the root-only secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let _secret = Scratch(secret.clone());
    let marker = format!("sleep {}", 40000 + pid % 20000);

    student(&class.0, "alice", &[("server.py", correct.clone())]);
    student(
        &class.0,
        "bob",
        &[("server_thread.py", fs::read_to_string(repo().join("bench/server_thread.py")).unwrap())],
    );
    student(
        &class.0,
        "carol",
        &[("server.py", fs::read_to_string(repo().join("tests/student/syntax_error.py")).unwrap())],
    );
    // Looks around, tries the network, then serves.
    student(
        &class.0,
        "mallory",
        &[
            ("correct.py", correct.clone()),
            (
                "server.py",
                format!(
                    r#"import os, socket
for path in ["{secret}", "/root"]:
    try:
        print("read", path, open(path).read() if os.path.isfile(path) else os.listdir(path))
    except OSError as e:
        print("denied", path, e)
for host in ["172.16.16.1", "10.0.0.1", "1.1.1.1"]:
    try:
        socket.create_connection((host, 80), 2)
        print("reached", host)
    except OSError as e:
        print("unreachable", host, e)
try:
    open("written-here", "w")
    print("wrote into its folder")
except OSError as e:
    print("read-only", e)
import correct
"#,
                    secret = secret.display()
                ),
            ),
        ],
    );
    // Starts a child that ignores SIGTERM in a session of its own, then serves.
    student(
        &class.0,
        "trudy",
        &[
            ("correct.py", correct.clone()),
            (
                "server.py",
                format!(
                    "import subprocess\nsubprocess.Popen(['sh', '-c', \"trap '' TERM; exec {marker}\"], start_new_session=True)\nimport correct\n"
                ),
            ),
        ],
    );
    // Never listens: spins until the start timeout.
    student(&class.0, "victor", &[("server.py", "while True:\n    pass\n".into())]);
    // A fork bomb, and an allocation without end: bounded by their limits, while the others are
    // graded beside them.
    student(
        &class.0,
        "bomber",
        &[(
            "server.py",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n".into(),
        )],
    );
    student(
        &class.0,
        "hogger",
        &[("server.py", "hoard = []\nwhile True:\n    hoard.append(bytearray(1 << 24))\n".into())],
    );
    // Listens, but on another port.
    student(&class.0, "walter", &[("server.py", correct.replace("45000", "45001"))]);

    let submissions: Vec<PathBuf> =
        ["alice", "bob", "carol", "mallory", "trudy", "victor", "bomber", "hogger", "walter"]
            .iter()
            .map(|s| class.0.join(s))
            .collect();
    let graded = run(Command::new(JAM)
        .arg("grade")
        .args(["--tz", "UTC", "--parallel", "3", "--start-timeout", "5s", "-o"])
        .arg(&out)
        .args(&submissions));
    let said = String::from_utf8_lossy(&graded.stderr);
    eprintln!("{said}");
    assert!(graded.status.success(), "{said}");
    // A line per student as it finishes.
    assert_eq!(said.lines().filter(|l| l.starts_with('[')).count(), 9, "{said}");

    let csv = fs::read_to_string(out.join("gradebook.csv")).unwrap();
    let row = |id: &str| {
        csv.lines().find(|l| l.starts_with(&format!("{id},"))).unwrap_or_else(|| panic!("{csv}")).to_string()
    };
    assert!(csv.lines().next().unwrap().contains(",connect,time-reply,time-current,"), "{csv}");
    assert!(row("alice").contains(",meets the sheet,7,"), "{csv}");
    assert!(
        row("bob").contains(",does not meet the sheet,6,") && row("bob").contains(",pass,fail,pass,"),
        "{csv}"
    );
    assert!(row("carol").contains(",not graded,") && row("carol").contains("before it listened"), "{csv}");
    assert!(row("mallory").contains(",meets the sheet,"), "{csv}");
    assert!(row("trudy").contains(",meets the sheet,"), "{csv}");
    assert!(row("victor").contains("does not listen on port 45000"), "{csv}");
    assert!(row("walter").contains("does not listen on port 45000"), "{csv}");
    assert!(row("bomber").contains(",not graded,") && row("hogger").contains(",not graded,"), "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.ends_with(",UTC,45000")), "zone and port recorded: {csv}");

    let json = fs::read_to_string(out.join("gradebook.json")).unwrap();
    assert!(json.contains("SyntaxError"), "carol's own last lines: {json}");
    assert!(json.contains("MemoryError"), "hogger ran into its limit: {json}");
    // Mallory: no root-only file, no network, no writing outside the scratch folder.
    assert!(!json.contains("root-only secret"), "{json}");
    assert!(json.contains(&format!("denied {} [Errno 13] Permission denied", secret.display())), "{json}");
    assert!(json.contains("denied /root [Errno 13] Permission denied"), "{json}");
    for host in ["172.16.16.1", "10.0.0.1", "1.1.1.1"] {
        assert!(json.contains(&format!("unreachable {host} [Errno 101] Network is unreachable")), "{json}");
    }
    assert!(json.contains("read-only [Errno 30] Read-only file system"), "{json}");
    assert!(!class.0.join("mallory/written-here").exists());
    // Trudy's child, which ignored SIGTERM in a session of its own, is gone with her sandbox.
    assert!(!running(&marker), "{marker} outlived the grading");
    assert!(!running("bwrap --unshare-all"), "a sandbox outlived the grading");

    let html = fs::read_to_string(out.join("gradebook.html")).unwrap();
    assert!(html.contains("<table>") && html.contains("<th>alice</th>"), "{html}");
    // A failing check with its exact bytes: the sheet's server sends the date.
    assert!(html.contains("nothing but hh:mm:ss may follow"), "{html}");
    // And a picture of that check's exchange, captured in the sandbox's network.
    assert!(html.contains("its exchange, as captured") && html.contains("class=\"segment data\""), "{html}");
    // Self-contained: nothing is fetched from elsewhere (the SVGs' namespace is a name, not a fetch).
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "self-contained");
}

#[test]
fn grading_needs_submissions_and_says_so() {
    let out = run(Command::new(JAM).arg("grade"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jam grade needs submissions"));
}
