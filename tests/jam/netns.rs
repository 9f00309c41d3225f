//! The network-namespace lab, `deploy/netns/lab`, as root: `up` and `down` leave the machine as
//! it was (also after a half-built lab), queries cross the switch from two machines at once,
//! impairments slow and drop what they should, and a capture of the demo shows the sheet's
//! exchange. The guard takes the lab down even when a check fails.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    HANG, Reaped, assert_demo_served_both_clients, have, repo, require, static_bin, tcp_sessions,
};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/netns/lab")
}

struct NetnsLab {
    state: PathBuf,
    jam: PathBuf,
}

impl NetnsLab {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(script());
        if let Some(dir) = std::env::var_os("JAM_APPLIANCE_DIR") {
            cmd.env("JAM_APPLIANCE_DIR", dir);
        }
        cmd.args(args)
            .env("JAM_BIN", &self.jam)
            .env("JAM_NETNS_STATE", &self.state)
            .env("TZ", "Asia/Jakarta")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run deploy/netns/lab")
    }

    /// `ok`, run from the folder `dir`, as a student runs it from their own.
    fn ok_in(&self, dir: &std::path::Path, args: &[&str]) -> String {
        self.check_ok(args, self.command(args).current_dir(dir).output().expect("run deploy/netns/lab"))
    }

    fn ok(&self, args: &[&str]) -> String {
        self.check_ok(args, self.run(args))
    }

    fn check_ok(&self, args: &[&str], out: Output) -> String {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "lab {args:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.state.join(format!("{name}.pid"))).unwrap().trim().parse().unwrap()
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

/// What `up`/`down` may touch: the namespaces, and the names of the host namespace's interfaces
/// (less Docker's, which the container test, running at the same time, adds and removes).
fn machine_state() -> (String, Vec<String>) {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap().stdout;
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap().stdout;
    let names = String::from_utf8_lossy(&links)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !["veth", "br-", "docker", "progjar-network"].iter().any(|d| n.starts_with(d)))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&netns).into_owned(), names)
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn jam_lines(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("JAM ")).count()
}

#[test]
fn the_namespace_lab_builds_bends_captures_and_leaves_no_trace() {
    let root = nix::unistd::Uid::effective().is_root();
    if !require("root with iproute2 (network namespaces)", root && have("ip", "-V")) {
        return;
    }
    let Some(jam) = static_bin() else { return };
    assert!(
        !std::path::Path::new("/run/netns/mesin1").exists(),
        "a namespace lab is already up: take it down with deploy/netns/lab down"
    );
    let before = machine_state();
    let lab = NetnsLab { state: std::env::temp_dir().join(format!("jam-netns-{}", std::process::id())), jam };

    let up = lab.ok(&["up"]);
    assert!(up.contains("server: jam serve on mesin1 answers on 172.16.16.101:45000"), "{up}");
    assert!(lab.ok(&["up"]).contains("the lab is already up"));
    let status = lab.ok(&["status"]);
    for line in ["mesin1   172.16.16.101/24", "mesin2   172.16.16.102/24", "mesin3   172.16.16.103/24"] {
        assert!(status.contains(line), "{status}");
    }
    // No default route on a lab machine: only the lab's own subnet.
    let routes = lab.ok(&["exec", "mesin2", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");

    // Many concurrent queries from mesin2 and mesin3 through the switch, all answered.
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let m = if i % 2 == 0 { "mesin2" } else { "mesin3" };
            let out = lab.run(&["exec", m, "jam", "query", "172.16.16.101", "-n", "10", "-i", "0"]);
            thread::spawn(move || out)
        })
        .collect();
    for c in clients {
        let out = c.join().unwrap();
        assert!(out.status.success());
        assert_eq!(jam_lines(&String::from_utf8_lossy(&out.stdout)), 10);
    }

    // The grader from mesin2, as the README shows it: every check met across the switch.
    let card = lab.ok(&["exec", "mesin2", "jam", "check", "--tz", "Asia/Jakarta", "172.16.16.101"]);
    assert!(card.contains("7 of 7 required and 8 of 8 recommended checks met"), "{card}");

    // 100 ms on what mesin1 sends: a connection plus one TIME exchange needs two round trips.
    lab.ok(&["impair", "mesin1", "delay", "100"]);
    assert!(lab.ok(&["status"]).contains("mesin1   172.16.16.101/24   delay 100"));
    let start = Instant::now();
    let out = lab.ok(&["exec", "mesin2", "jam", "query", "172.16.16.101"]);
    let took = start.elapsed();
    assert_eq!(jam_lines(&out), 1);
    assert!(took >= Duration::from_millis(200), "two round trips at 100 ms took only {took:?}");
    eprintln!("query with 100 ms delay on mesin1: {took:?}");

    // 20% loss: TCP retransmits, and every query still gets through.
    lab.ok(&["impair", "mesin1", "loss", "20"]);
    let start = Instant::now();
    for _ in 0..5 {
        let out = lab.ok(&["exec", "mesin2", "jam", "query", "172.16.16.101", "--timeout", "30s"]);
        assert_eq!(jam_lines(&out), 1);
    }
    eprintln!("5 queries with 20% loss on mesin1: {:?}", start.elapsed());
    assert!(start.elapsed() < HANG * 5);
    lab.ok(&["impair", "mesin1", "clear"]);
    let bad = lab.run(&["impair", "mesin1", "lag", "5"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown impairment \"lag\""));

    capture_of_the_demo(&lab);
    faults_survived(&lab);

    // A half-built lab (a crashed switch, a namespace gone) is cleaned up by the next `up`.
    let (wire, server) = (lab.pid("wire"), lab.pid("server"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(wire), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(Command::new("ip").args(["netns", "del", "mesin3"]).status().unwrap().success());
    let up = lab.ok(&["up"]);
    assert!(up.contains("cleaning up a half-built lab first"), "{up}");
    assert!(!alive(server), "the old server was not stopped");
    let (wire, server) = (lab.pid("wire"), lab.pid("server"));

    let down = lab.ok(&["down"]);
    for what in
        ["removed: server", "removed: wire", "removed: namespace mesin1", "removed: namespace progjar-net"]
    {
        assert!(down.contains(what), "{down}");
    }
    assert_eq!(lab.ok(&["down"]).trim(), "nothing to remove: the lab is not up");
    assert!(!alive(wire) && !alive(server));
    assert_eq!(machine_state(), before, "up/down left something behind");

    let out = lab.run(&["exec", "mesin9", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lab.run(&["bogus"]).status.code(), Some(2));

    student_server_on_mesin1(&lab, &before);
    appliance_as_mesin1(&lab, &before);
}

/// The lab with the student's own server on mesin1: the sheet's final server, run from its
/// folder as a student would, with its dated replies in the demo; then one that fails to start.
/// The server is untrusted code: it runs as nobody (no sudo here), sandboxed, and this checks
/// that it reads its own folder but cannot read a file only root may read, nor write outside its
/// scratch folder.
fn student_server_on_mesin1(lab: &NetnsLab, before: &(String, Vec<String>)) {
    if !require("python3", have("python3", "--version"))
        || !require("bubblewrap (the student's server's sandbox)", have("bwrap", "--version"))
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // The student's folder, readable by all as a home folder is (a CI clone's is not).
    let folder = std::env::temp_dir().join(format!("jam-student-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(repo().join("bench/server_thread.py"), folder.join("server_thread.py")).unwrap();
    // Not in /tmp, which the sandbox replaces with its own.
    let secret = PathBuf::from(format!("/var/tmp/jam-root-only-{}", std::process::id()));
    std::fs::write(&secret, "the root-only secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    struct Gone(PathBuf, PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let _gone = Gone(folder.clone(), secret.clone());
    let own = format!(
        "id -u; cat {}; touch written-here; exec python3 server_thread.py 45000 0.0.0.0",
        secret.display()
    );
    let up = lab.ok_in(&folder, &["up", "--server", &own]);
    let serving = format!("server: your server ({own}) on mesin1 listens");
    assert!(up.contains(&serving), "{up}");
    assert!(up.contains("as nobody, sandboxed (bubblewrap)"), "{up}");
    let log = lab.ok(&["logs"]);
    assert!(log.lines().next() == Some("65534"), "the server runs as nobody:\n{log}");
    assert!(log.contains("Permission denied") && !log.contains("root-only secret"), "{log}");
    assert!(log.contains("Read-only file system"), "it wrote outside its scratch folder:\n{log}");
    assert!(!folder.join("written-here").exists());
    let demo = lab.ok(&["demo"]);
    for m in ["mesin2", "mesin3"] {
        // The sheet's reply, date and all, three times each.
        let dated = demo.lines().filter(|l| {
            l.strip_prefix(&format!("{m} | JAM ")).is_some_and(|r| r.len() == 17 && r.as_bytes()[2] == b' ')
        });
        assert_eq!(dated.count(), 3, "{demo}");
        let ip = if m == "mesin2" { "172.16.16.102" } else { "172.16.16.103" };
        assert!(demo.contains(&format!("connection from ('{ip}', ")), "{demo}");
    }
    // The grader runs against it unchanged, and finds the sheet's faults.
    let card = lab.run(&["exec", "mesin2", "jam", "check", "172.16.16.101"]);
    assert_eq!(card.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&card.stdout).contains("FAIL  time-reply"));
    assert!(lab.ok(&["logs"]).contains("connection from ('172.16.16.102'"));
    let down = lab.ok(&["down"]);
    assert!(down.contains("removed: server"), "{down}");
    assert_eq!(&machine_state(), before, "the student's server lab left something behind");

    let failed = lab
        .command(&["up", "--server", "python3 -c 'print(\"cannot bind\"); raise SystemExit(3)'"])
        .current_dir(&folder)
        .output()
        .expect("run deploy/netns/lab");
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("cannot bind") && err.contains("your server exited before it listened"), "{err}");
    assert_eq!(&machine_state(), before, "a failed up left something behind");
}

/// The lab with mesin1 as the appliance VM, bridged onto the lab's network in its namespace:
/// the clients in mesin2 and mesin3 reach jam running as PID 1 across the simulated network.
fn appliance_as_mesin1(lab: &NetnsLab, before: &(String, Vec<String>)) {
    let qemu = have("qemu-system-x86_64", "--version");
    let built = std::env::var_os("JAM_APPLIANCE_DIR").is_some();
    if !require(
        "qemu-system-x86_64 and the appliance (JAM_APPLIANCE_DIR; tests/run builds it)",
        qemu && built,
    ) {
        return;
    }
    let up = lab.ok(&["up", "--vm"]);
    assert!(up.contains("server: the appliance VM on mesin1 answers on 172.16.16.101:45000"), "{up}");
    let demo = lab.ok(&["demo"]);
    assert_demo_served_both_clients(&demo);
    let console = std::fs::read_to_string(lab.state.join("mesin1.log")).unwrap();
    assert!(console.contains("init: starting as PID 1"), "{console}");
    assert!(console.contains("jam init: eth0 is 172.16.16.101/24"), "{console}");
    let vm = lab.pid("vm");
    let down = lab.ok(&["down"]);
    assert!(down.contains("removed: vm"), "{down}");
    assert!(!alive(vm), "the VM was not stopped");
    assert_eq!(&machine_state(), before, "the VM lab left something behind");
}

fn capture_of_the_demo(lab: &NetnsLab) {
    // The capture is jam's own; tshark reads it, as the oracle.
    if !require("tshark (reads the capture)", have("tshark", "--version")) {
        return;
    }
    let pcap = std::env::temp_dir().join(format!("jam-netns-{}.pcap", std::process::id()));
    let _ = std::fs::remove_file(&pcap);
    let capture = {
        let mut c = Command::new(script());
        c.args(["capture", "mesin1"]).arg(&pcap).arg("6");
        c.env("JAM_NETNS_STATE", &lab.state).stdout(Stdio::null()).stderr(Stdio::null());
        c.spawn().unwrap()
    };
    let mut capture = crate::support::Reaped(capture);
    let start = Instant::now();
    while !pcap.exists() {
        assert!(start.elapsed() < HANG, "jam capture never started");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let demo = lab.ok(&["demo"]);
    assert_demo_served_both_clients(&demo);
    assert!(capture.0.wait().unwrap().success());
    let sessions = tcp_sessions(&pcap);
    let _ = std::fs::remove_file(&pcap);
    for client in ["172.16.16.102", "172.16.16.103"] {
        let complete: Vec<_> = sessions.iter().filter(|s| s.client == client && s.complete).collect();
        assert_eq!(complete.len(), 3, "{client}: {sessions:#?}");
        complete.iter().for_each(|s| s.assert_sheet_sequence());
    }
}

/// A `jam query -n 0` client on a lab machine, each line it prints kept with when it came.
struct Watch {
    _client: Reaped,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Watch {
    /// Queries every 200 ms on one connection, each step given 2 s.
    fn start(lab: &NetnsLab, machine: &str) -> Watch {
        let mut child = Command::new("ip")
            .args(["netns", "exec", machine])
            .arg(&lab.jam)
            .args(["query", "172.16.16.101", "-n", "0", "-i", "200ms", "--timeout", "2s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok) {
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            });
        }
        Watch { _client: Reaped(child), lines }
    }

    /// From `from` on: the replies, the failure lines, the longest time without a reply (from
    /// `from` to the first reply included), and when the last failure was.
    fn since(&self, from: Instant) -> (usize, Vec<String>, Duration) {
        let lines = self.lines.lock().unwrap();
        let (mut replies, mut failures, mut last, mut gap) = (0, Vec::new(), from, Duration::ZERO);
        for (at, line) in lines.iter().filter(|(at, _)| *at >= from) {
            if line.starts_with("JAM ") {
                replies += 1;
                gap = gap.max(at.duration_since(last));
                last = *at;
            } else {
                failures.push(line.clone());
            }
        }
        (replies, failures, gap)
    }

    /// Waits for a reply after `from`.
    fn served_after(&self, from: Instant) {
        let start = Instant::now();
        while self.since(from).0 == 0 {
            assert!(start.elapsed() < HANG, "no reply since the fault ended: {:?}", self.since(from).1);
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Faults on the wire, survived and counted: mesin1's link down for 3 s, 30% loss on what
/// mesin1 sends for 10 s, and mesin3 cut off (all it sends lost) while mesin2 is still served.
/// Each failure a client reports must be one clear line, and each client is served again after.
fn faults_survived(lab: &NetnsLab) {
    let (mesin2, mesin3) = (Watch::start(lab, "mesin2"), Watch::start(lab, "mesin3"));
    mesin2.served_after(Instant::now());
    mesin3.served_after(Instant::now());
    let clear = |failures: &[String]| {
        failures.iter().all(|l| l.starts_with("jam: ") && l.ends_with("(trying again)"))
    };

    let down = Instant::now();
    lab.ok(&["exec", "mesin1", "ip", "link", "set", "eth0", "down"]);
    thread::sleep(Duration::from_secs(3));
    lab.ok(&["exec", "mesin1", "ip", "link", "set", "eth0", "up"]);
    let up = Instant::now();
    mesin2.served_after(up);
    let (replies, failures, gap) = mesin2.since(down);
    assert!(clear(&failures), "{failures:?}");
    eprintln!(
        "mesin1's link down for 3 s: mesin2 went {gap:?} without a reply, {} failed ({failures:?}), then served again",
        failures.len()
    );
    assert!(replies > 0);

    thread::sleep(Duration::from_secs(1));
    lab.ok(&["impair", "mesin1", "loss", "30"]);
    let lossy = Instant::now();
    thread::sleep(Duration::from_secs(10));
    let (replies, failures, gap) = mesin2.since(lossy);
    lab.ok(&["impair", "mesin1", "clear"]);
    assert!(clear(&failures), "{failures:?}");
    assert!(replies > 0, "nothing got through 30% loss in 10 s");
    eprintln!(
        "30% loss on mesin1 for 10 s: mesin2 got {replies} replies (50 without loss), {} failed, longest wait {gap:?}",
        failures.len()
    );
    mesin2.served_after(Instant::now());

    lab.ok(&["impair", "mesin3", "loss", "100"]);
    let cut = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let (cut_off, failures3, _) = mesin3.since(cut + Duration::from_millis(500));
    let (replies, failures2, gap) = mesin2.since(cut);
    lab.ok(&["impair", "mesin3", "clear"]);
    let back = Instant::now();
    assert_eq!(cut_off, 0, "mesin3 was cut off yet served");
    assert!(!failures3.is_empty() && clear(&failures3), "{failures3:?}");
    assert!(
        failures2.is_empty() && replies >= 10,
        "mesin2, while mesin3 was cut off: {replies} replies, {failures2:?}"
    );
    mesin3.served_after(back);
    eprintln!(
        "mesin3 cut off for 5 s: it reported {} failures ({:?}); mesin2 meanwhile got {replies} replies, longest wait {gap:?}; mesin3 served again {:?} after",
        failures3.len(),
        failures3.first(),
        mesin3.since(back).2
    );
    drop((mesin2, mesin3));
}
