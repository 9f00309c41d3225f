//! The FROM scratch image and the compose lab, tested as a user meets them: build the image,
//! bring the three machines up under a test project name, and check what the issue promises.
//!
//! Needs Docker with compose (v2 plugin or v1 `docker-compose`) and the static binary that
//! `tests/run` builds (`JAM_STATIC_BIN`). The capture check also needs root, tcpdump and tshark.
//! Everything the test creates (containers, networks, the test image) is removed by a guard,
//! also when a check fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    Client, HANG, Reaped, assert_time, docker, docker_running, have, ok, repo, require, run, static_bin,
};

const IMAGE: &str = "jam:test";

/// One compose lab at a time: every lab makes the bridge progjar-network on 172.16.16.0/24.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A compose project made by a test, taken down when dropped.
struct Lab {
    project: String,
    v2: bool,
    /// The checkout it runs in.
    dir: PathBuf,
    /// The image its machines run.
    image: String,
    /// More environment for compose.
    env: Vec<(&'static str, String)>,
    /// The compose files named with -f; none: COMPOSE_FILE (in `env`) names them.
    files: Vec<&'static str>,
}

impl Lab {
    fn new(project: String, v2: bool) -> Lab {
        Lab {
            project,
            v2,
            dir: repo(),
            image: IMAGE.into(),
            env: Vec::new(),
            files: vec!["docker-compose.yml"],
        }
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut c = if self.v2 {
            let mut c = Command::new("docker");
            c.arg("compose");
            c
        } else {
            Command::new("docker-compose")
        };
        c.current_dir(&self.dir)
            .args(["-p", &self.project])
            .args(self.files.iter().flat_map(|f| ["-f", f]))
            .args(args)
            .env("JAM_IMAGE", &self.image)
            .env("JAM_PUBLISH", "127.0.0.1:")
            .env("JAM_WEB_PUBLISH", "127.0.0.1:")
            .env("JAM_METRICS_PUBLISH", "127.0.0.1:")
            .env("JAM_METRICS", "0.0.0.0:9450")
            .env("JAM_INTERVAL", "1s")
            .env("TZ", "Asia/Jakarta")
            // v1 is Python: on a pipe, not a terminal, it would hold the transcript back.
            .env("PYTHONUNBUFFERED", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn container(&self, service: &str) -> String {
        ok(&mut self.compose(&["ps", "-a", "-q", service])).trim().to_string()
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        ok(&mut docker(&["inspect", "-f", format, id])).trim().to_string()
    }

    fn logs(&self, service: &str) -> String {
        ok(&mut self.compose(&["logs", "--no-color", service]))
    }

    /// Waits until `service`'s log satisfies `pred`.
    fn wait_logs(&self, service: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs(service);
            if pred(&logs) {
                return logs;
            }
            assert!(start.elapsed() < HANG * 3, "{service}: never saw {what}; logs:\n{logs}");
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_healthy(&self) -> String {
        let server = self.container("mesin1");
        let start = Instant::now();
        while self.inspect(&server, "{{.State.Health.Status}}") != "healthy" {
            assert!(start.elapsed() < HANG * 3, "mesin1 never became healthy:\n{}", self.logs("mesin1"));
            thread::sleep(Duration::from_millis(250));
        }
        server
    }

    /// Both clients print JAM replies, and the server logs both client addresses.
    fn wait_both_served(&self) {
        let jam_lines = |logs: &str| logs.lines().filter(|l| l.contains("JAM ")).count();
        for client in ["mesin2", "mesin3"] {
            let logs = self.wait_logs(client, "two JAM replies", |l| jam_lines(l) >= 2);
            for line in logs.lines().filter(|l| l.contains("JAM ")) {
                let reply = line.rsplit("JAM ").next().unwrap().trim();
                assert!(
                    jam::server::protocol::parse_time_reply(format!("JAM {reply}").as_bytes()).is_some(),
                    "{line}"
                );
            }
        }
        self.wait_logs("mesin1", "both clients", |l| {
            l.contains("connection from 172.16.16.102:") && l.contains("connection from 172.16.16.103:")
        });
    }

    /// The port published on the host's loopback answers.
    fn published_answers(&self) {
        let published = ok(&mut self.compose(&["port", "mesin1", "45000"]));
        let addr = published.trim().parse().expect("published address");
        assert!(matches!(addr, std::net::SocketAddr::V4(a) if a.ip().is_loopback()), "{addr}");
        Client::connect(addr).time();
    }

    fn down(&self) {
        let _ = run(&mut self.compose(&["down", "--remove-orphans", "--timeout", "5"]));
    }

    /// `down` left no container or network of the project.
    fn assert_gone(&self) {
        let label = format!("label=com.docker.compose.project={}", self.project);
        assert_eq!(ok(&mut docker(&["ps", "-aq", "--filter", &label])).trim(), "");
        assert_eq!(ok(&mut docker(&["network", "ls", "-q", "--filter", &label])).trim(), "");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// Images a test made, removed when dropped (also when the test fails): tags, and image IDs
/// that the test's builds left untagged.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = run(&mut docker(&["image", "rm", "-f", image]));
        }
    }
}

/// Removes, when dropped, the untagged images made since it was made (a build's stages), even
/// when the test fails half-way.
struct DanglingSince(std::collections::BTreeSet<String>);

impl Drop for DanglingSince {
    fn drop(&mut self) {
        for id in dangling().difference(&self.0) {
            let _ = run(&mut docker(&["image", "rm", "-f", id]));
        }
    }
}

/// The IDs of the untagged (dangling) images there are now.
fn dangling() -> std::collections::BTreeSet<String> {
    ok(&mut docker(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]))
        .lines()
        .map(String::from)
        .collect()
}

/// The compose versions to test: each one here that works; both under CI.
fn compose_versions() -> Vec<bool> {
    let v2 = run(&mut docker(&["compose", "version"])).status.success();
    let v1 = have("docker-compose", "version");
    require("Compose v2 (docker compose; .ci/run installs it from PyPI)", v2);
    require("docker-compose 1.29 (v1)", v1);
    [(v2, true), (v1, false)].into_iter().filter(|(has, _)| *has).map(|(_, v)| v).collect()
}

/// The bytes of the papers every image carries beside `/jam`: LICENSE and THIRD-PARTY-NOTICES.
fn papers() -> u64 {
    ["LICENSE", "THIRD-PARTY-NOTICES"].iter().map(|f| std::fs::metadata(repo().join(f)).unwrap().len()).sum()
}

/// The mode bits of `path` inside `image`, read from the image without running it.
fn mode_in_image(image: &str, path: &str) -> u32 {
    let id = ok(&mut docker(&["create", image])).trim().to_string();
    let tar = run(&mut docker(&["cp", &format!("{id}:{path}"), "-"]));
    let _ = run(&mut docker(&["rm", &id]));
    assert!(tar.status.success(), "docker cp {path}: {}", String::from_utf8_lossy(&tar.stderr));
    // A tar header: the mode is octal text at bytes 100..108.
    let field = String::from_utf8_lossy(&tar.stdout[100..108]);
    u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap() & 0o7777
}

#[test]
fn the_compose_lab_recreates_the_sheet() {
    if !docker_running() {
        return;
    }
    let Some(bin) = static_bin() else { return };
    let _one = one_lab();
    let _images = Images(vec![IMAGE.into()]);
    // The image: FROM scratch, the binary and nothing else, hardened defaults. Built the way
    // `deploy/lab up` builds it.
    let script = repo().join("deploy/image");
    ok(Command::new(&script).args(["--arch", "amd64", "--tag", IMAGE, "--binary"]).arg(&bin));
    check_image(&bin);
    for v2 in compose_versions() {
        eprintln!("the compose lab under Compose {}", if v2 { "v2" } else { "v1 (docker-compose)" });
        lab_of_the_sheet(Lab::new(format!("jamtest{}v{}", std::process::id(), if v2 { 2 } else { 1 }), v2));
    }
}

fn lab_of_the_sheet(lab: Lab) {
    assert!(
        !Path::new("/sys/class/net/progjar-network").exists(),
        "a lab is already running (progjar-network exists): stop it with deploy/lab down"
    );
    ok(&mut lab.compose(&["up", "-d", "--no-build"]));
    let server = lab.wait_healthy();
    lab.wait_both_served();
    lab.published_answers();

    // Both clients at once, one-off queries as a person would run them.
    let queries: Vec<_> = ["mesin2", "mesin3"]
        .iter()
        .map(|m| {
            let mut c =
                lab.compose(&["exec", "-T", m, "/jam", "query", "172.16.16.101", "-n", "5", "-i", "0"]);
            thread::spawn(move || ok(&mut c))
        })
        .collect();
    for q in queries {
        assert_eq!(q.join().unwrap().lines().filter(|l| l.starts_with("JAM ")).count(), 5);
    }

    // The grader, from a client machine, as `deploy/lab check` runs it: every check met.
    let card = ok(&mut lab.compose(&[
        "exec",
        "-T",
        "mesin2",
        "/jam",
        "check",
        "--tz",
        "Asia/Jakarta",
        "172.16.16.101",
    ]));
    assert!(card.contains("7 of 7 required and 8 of 8 recommended checks met"), "{card}");

    // Raw bytes from a scratch machine, the sheet's 1.c experiment without nc.
    let talked = ok(&mut lab.compose(&[
        "exec",
        "-T",
        "mesin3",
        "/jam",
        "talk",
        "172.16.16.101",
        "--send",
        r"TIME\r\nQUIT\r\n",
    ]));
    assert_time(&talked);

    check_hardening(&lab, &server);
    metrics_count_the_labs_requests(&lab);
    capture_shows_the_sheets_exchange(&lab);
    the_page_shows_a_query_from_mesin2(&lab);

    // `stop` ends every machine at once: SIGTERM handled by jam as PID 1, exit code 0 (a
    // container killed after the stop timeout would show 137).
    let clients = [lab.container("mesin2"), lab.container("mesin3")];
    let stopping = Instant::now();
    ok(&mut lab.compose(&["stop", "--timeout", "10"]));
    eprintln!("compose stop took {:?}", stopping.elapsed());
    for id in [&server, &clients[0], &clients[1]] {
        assert_eq!(lab.inspect(id, "{{.State.ExitCode}}"), "0", "{id}");
    }
    let logs = lab.logs("mesin1");
    assert!(logs.contains("received SIGTERM: stopping"), "{logs}");
    assert!(logs.contains("stopped: served "), "{logs}");

    lab.down();
    lab.assert_gone();
    foreground_up_is_the_transcript(&lab);
}

/// `docker compose up` in the foreground, as the mission says it: the clients' replies and
/// mesin1's log interleaved, and Ctrl-C stops all three cleanly.
fn foreground_up_is_the_transcript(lab: &Lab) {
    // Through `sh -c 'exec ... 2>&1'`: v2 writes the machines' stderr (mesin1's log) to its own
    // stderr, and the transcript is both, interleaved as a terminal shows them.
    let up = lab.compose(&["up", "--no-build", "--no-color"]);
    let mut shell = Command::new("sh");
    shell.args(["-c", "exec \"$@\" 2>&1", "sh"]).arg(up.get_program()).args(up.get_args());
    shell.current_dir(up.get_current_dir().unwrap());
    for (k, v) in up.get_envs() {
        if let Some(v) = v {
            shell.env(k, v);
        }
    }
    let mut child = shell.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let lines = crate::support::lines_of(child.stdout.take().unwrap());
    let child = Reaped(child);
    let mut seen = Vec::new();
    let start = Instant::now();
    let served =
        |seen: &[String], who: &str, what: &str| seen.iter().any(|l| l.contains(who) && l.contains(what));
    while !(served(&seen, "mesin2", "| JAM ")
        && served(&seen, "mesin3", "| JAM ")
        && served(&seen, "mesin1", "connection from 172.16.16.102:")
        && served(&seen, "mesin1", "connection from 172.16.16.103:"))
    {
        let left = (HANG * 3).saturating_sub(start.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the transcript never showed both clients served:\n{}", seen.join("\n")),
        }
    }
    // Ctrl-C.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let mut child = child;
    let status = crate::support::wait_exit(&mut child.0, "compose up after Ctrl-C");
    // v1 exits 0; v2 exits 130 after a Ctrl-C whatever the project (its own choice, upstream).
    let expected = if lab.v2 { [0, 130] } else { [0, 0] };
    assert!(status.code().is_some_and(|c| expected.contains(&c)), "compose up ended with {status}");
    for service in ["mesin1", "mesin2", "mesin3"] {
        let id = lab.container(service);
        assert_eq!(lab.inspect(&id, "{{.State.ExitCode}}"), "0", "{service} after Ctrl-C");
    }
    // Nothing is left behind.
    lab.down();
    lab.assert_gone();
}

fn check_image(bin: &Path) {
    let field = |f: &str| ok(&mut docker(&["image", "inspect", "-f", f, IMAGE])).trim().to_string();
    assert_eq!(field("{{.Config.User}}"), "65534:65534");
    assert_eq!(field("{{json .Config.Entrypoint}}"), r#"["/jam"]"#);
    assert_eq!(field("{{json .Config.Cmd}}"), r#"["serve"]"#);
    assert_eq!(field("{{json .Config.Healthcheck.Test}}"), r#"["CMD","/jam","probe"]"#);
    assert_eq!(field("{{json .Config.ExposedPorts}}"), r#"{"45000/tcp":{}}"#);
    assert_eq!(field("{{.Architecture}}"), "amd64");
    assert_eq!(field(r#"{{index .Config.Labels "org.opencontainers.image.title"}}"#), "jam");
    // The binary and the papers that travel with it (LICENSE, THIRD-PARTY-NOTICES): nothing else
    // is in the image.
    let size: u64 = field("{{.Size}}").parse().unwrap();
    let binary = std::fs::metadata(bin).unwrap().len();
    assert_eq!(size, binary + papers(), "the image holds more than the binary and its papers");
    let history = ok(&mut docker(&["history", "--no-trunc", "--format", "{{.Size}} {{.CreatedBy}}", IMAGE]));
    let layers: Vec<&str> = history.lines().filter(|l| !l.starts_with("0B ")).collect();
    assert_eq!(layers.len(), 2, "{history}");
    assert!(layers.iter().any(|l| l.contains("COPY") && l.contains("/jam")), "{history}");
    // The papers are there beside the binary, readable by anyone.
    for paper in ["/LICENSE", "/THIRD-PARTY-NOTICES"] {
        assert_eq!(mode_in_image(IMAGE, paper) & 0o444, 0o444, "{paper}");
    }
    // Executable by the image's user, whatever the umask of the checkout that staged it.
    assert_eq!(mode_in_image(IMAGE, "/jam"), 0o755);
    eprintln!("image {IMAGE}: {size} bytes");
}

fn check_hardening(lab: &Lab, server: &str) {
    let i = |f: &str| lab.inspect(server, f);
    assert_eq!(i("{{.Config.User}}"), "65534:65534");
    assert_eq!(i("{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(i("{{json .HostConfig.CapDrop}}"), r#"["ALL"]"#);
    assert!(i("{{json .HostConfig.SecurityOpt}}").contains("no-new-privileges"));
    assert_eq!(i("{{.HostConfig.PidsLimit}}"), "64");
    assert_eq!(i("{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped");
    assert!(i("{{json .Config.Env}}").contains("TZ=Asia/Jakarta"));
    // The clients do not inherit the server's health check.
    let client = lab.container("mesin2");
    assert_eq!(lab.inspect(&client, "{{json .Config.Healthcheck.Test}}"), r#"["NONE"]"#);
    assert_eq!(lab.inspect(&client, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    // The lab network: internal, the course's subnet and addresses, the bridge named for captures.
    let net = format!("{}_progjar-network", lab.project);
    let n = |f: &str| ok(&mut docker(&["network", "inspect", "-f", f, &net])).trim().to_string();
    assert_eq!(n("{{.Internal}}"), "true");
    assert_eq!(n("{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}"), "172.16.16.0/24 172.16.16.1");
    assert_eq!(n(r#"{{index .Options "com.docker.network.bridge.name"}}"#), "progjar-network");
    let addrs = n("{{range .Containers}}{{.IPv4Address}} {{end}}");
    for a in ["172.16.16.101/24", "172.16.16.102/24", "172.16.16.103/24"] {
        assert!(addrs.contains(a), "{addrs}");
    }
}

/// mesin1's view, captured as a student does it with Docker alone: the compose file's capture
/// service (jam capture in mesin1's network namespace, writing to captures/), read by jam show
/// (and by deploy/lab show, which runs it in the lab's own container), with tshark as the oracle.
fn capture_shows_the_sheets_exchange(lab: &Lab) {
    let name = format!("{}.pcap", lab.project);
    let pcap = lab.dir.join("captures").join(&name);
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(pcap.clone());
    // The clients query every second; four seconds hold several whole sessions of each.
    let target = format!("/captures/{name}");
    let out = run(&mut lab.compose(&[
        "--profile",
        "capture",
        "run",
        "--rm",
        "-T",
        "capture",
        "capture",
        "--seconds",
        "4",
        "-w",
        &target,
        "-q",
    ]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("0 packets dropped by kernel"), "{said}");
    // Cooked, as the sheet's capture on "any": the SYN is 76 bytes.
    let shown = ok(Command::new(crate::support::JAM).args(["show"]).arg(&pcap));
    let syn = shown.lines().find(|l| l.contains("[SYN]")).expect("a SYN");
    assert!(syn.contains(" TCP      76 "), "{syn}");
    // The wrapper, which runs jam show in the lab's capture container, says the same.
    let wrapped = ok(Command::new(repo().join("deploy/lab"))
        .args(["show", &format!("captures/{name}")])
        .env("COMPOSE_PROJECT_NAME", &lab.project)
        .env("JAM_IMAGE", &lab.image));
    assert_eq!(wrapped, shown);
    if !require("tshark (the oracle of jam show)", have("tshark", "--version")) {
        return;
    }
    crate::capture::agree_with_tshark(&pcap, 45000);
    let sessions = crate::support::tcp_sessions(&pcap);
    flow_diagram_of(&pcap, &sessions);
    eprintln!("captured {} session(s) in mesin1's view", sessions.len());
    for client in ["172.16.16.102", "172.16.16.103"] {
        let complete: Vec<_> = sessions.iter().filter(|s| s.client == client && s.complete).collect();
        assert!(!complete.is_empty(), "no whole session of {client} captured: {sessions:#?}");
        for s in complete {
            s.assert_sheet_sequence();
        }
    }
}

/// The compose lab's opt-in metrics (JAM_METRICS), published on the host's loopback: mesin1's
/// page counts the clients' requests.
fn metrics_count_the_labs_requests(lab: &Lab) {
    let published = ok(&mut lab.compose(&["port", "mesin1", "9450"]));
    let mut s = std::net::TcpStream::connect(published.trim()).expect("the metrics port");
    s.set_read_timeout(Some(HANG)).unwrap();
    std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.1\r\nHost: lab\r\n\r\n").unwrap();
    let mut page = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut page);
    let line = page
        .lines()
        .find(|l| l.starts_with("jam_requests_total{kind=\"time\"} "))
        .unwrap_or_else(|| panic!("{page}"));
    let requests: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // The two clients' five queries each, at least, and their every-second queries.
    assert!(requests >= 10, "{line}");
    assert!(page.contains("zone=\"Asia/Jakarta\""), "{page}");
}

/// The course's Wireshark in a browser: the capture service's page, published by mesin1 on the
/// host's loopback, shows a query from mesin2 in a real headless chromium (tests/browser/view.py).
/// JAM_SCREENSHOT=FILE.png keeps the page's picture (README's is made so).
fn the_page_shows_a_query_from_mesin2(lab: &Lab) {
    if !crate::capture::can_capture() || !crate::web::can_browse() {
        return;
    }
    let name = format!("{}-web.pcap", lab.project);
    let target = format!("/captures/{name}");
    let out = ok(&mut lab.compose(&[
        "--profile",
        "capture",
        "run",
        "-d",
        "capture",
        "capture",
        "--web",
        "0.0.0.0:50001",
        "-w",
        &target,
    ]));
    let id = out.lines().last().expect("the capture's container").trim().to_string();
    struct Gone(String, PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = run(&mut docker(&["rm", "-f", &self.0]));
            let _ = std::fs::remove_file(&self.1);
        }
    }
    let _gone = Gone(id.clone(), lab.dir.join("captures").join(&name));
    let deadline = std::time::Instant::now() + HANG;
    while !String::from_utf8_lossy(&run(&mut docker(&["logs", &id])).stderr).contains("the page is at") {
        assert!(std::time::Instant::now() < deadline, "the page did not start: {}", lab.logs("capture"));
        thread::sleep(Duration::from_millis(100));
    }
    let published = ok(&mut lab.compose(&["port", "mesin1", "50001"]));
    let downloads = crate::capture::TempFile::new("lab-downloads");
    std::fs::create_dir_all(&downloads.0).unwrap();
    let mut view = Command::new("python3");
    view.arg(repo().join("tests/browser/view.py")).args([
        "--url",
        &format!("http://{}/", published.trim()),
        "--query",
        &format!("docker exec {} /jam query 172.16.16.101", lab.container("mesin2")),
        "--downloads",
        downloads.0.to_str().unwrap(),
    ]);
    if let Some(shot) = std::env::var_os("JAM_SCREENSHOT") {
        view.arg("--screenshot").arg(shot);
    }
    let out = run(&mut view);
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}");
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&downloads.0);
}

/// `jam show FILE --flow --svg OUT` on a capture of the lab: the text names each session's
/// segments in order, and the SVG is well-formed, has one arrow per segment and renders.
fn flow_diagram_of(pcap: &Path, sessions: &[crate::support::TcpSession]) {
    let svg = std::env::temp_dir().join(format!("jam-flow-{}.svg", std::process::id()));
    let text =
        ok(Command::new(crate::support::JAM).args(["show"]).arg(pcap).args(["--flow", "--svg"]).arg(&svg));
    let complete = sessions.iter().find(|s| s.complete).expect("a whole session");
    // That session's block of the text: its arrows, in the order of the capture.
    let block = text
        .split("TCP session ")
        .find(|b| b.contains(&format!("client {}:", complete.client)) && b.contains("first FIN from: the "))
        .expect("the session in the text");
    let arrows: Vec<&str> = block.lines().filter(|l| l.contains("|-") || l.contains("|<")).collect();
    assert_eq!(arrows.len(), complete.packets.len(), "{block}");
    let expect = ["SYN  seq=0", "SYN, ACK  seq=0 ack=1", "ACK  seq=1 ack=1"];
    for (arrow, want) in arrows.iter().zip(expect) {
        assert!(arrow.contains(want), "{arrow:?} should show {want:?}:\n{block}");
    }
    assert!(arrows.iter().any(|a| a.contains(r#"len=6  "TIME\r\n""#) && a.contains("-->|")), "{block}");
    assert!(arrows.iter().any(|a| a.contains("len=14  \"JAM ") && a.contains("|<")), "{block}");
    assert!(
        block.contains("three-way handshake: SYN, SYN-ACK, ACK") && block.contains("resets: none"),
        "{block}"
    );

    let picture = std::fs::read_to_string(&svg).unwrap();
    let segments: usize = sessions.iter().map(|s| s.packets.len()).sum();
    assert_eq!(picture.matches("class=\"segment ").count(), segments, "one arrow per segment");
    let parsed = run(Command::new("python3")
        .args(["-c", "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])"])
        .arg(&svg));
    assert!(parsed.status.success(), "not well-formed XML: {}", String::from_utf8_lossy(&parsed.stderr));
    if require("rsvg-convert (Debian's librsvg2-bin)", have("rsvg-convert", "--version")) {
        let png = svg.with_extension("png");
        ok(Command::new("rsvg-convert").arg(&svg).arg("-o").arg(&png));
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{} bytes", bytes.len());
        let _ = std::fs::remove_file(&png);
    }
    let _ = std::fs::remove_file(&svg);
}

#[test]
fn the_arm64_image_is_built_from_the_aarch64_binary() {
    if !docker_running() {
        return;
    }
    let Some(arm) = std::env::var_os("JAM_AARCH64_BIN").map(PathBuf::from) else {
        require("JAM_AARCH64_BIN (the aarch64 musl build; tests/run sets it)", false);
        return;
    };
    let tag = format!("jam:test-arm64-{}", std::process::id());
    struct Image(String);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = run(&mut docker(&["image", "rm", "-f", &self.0]));
        }
    }
    let _image = Image(tag.clone());
    let script = repo().join("deploy/image");
    let out = ok(Command::new(&script).args(["--arch", "arm64", "--tag", &tag]));
    assert!(out.contains("linux/arm64"), "{out}");
    let field = |f: &str| ok(&mut docker(&["image", "inspect", "-f", f, &tag])).trim().to_string();
    assert_eq!(field("{{.Os}}/{{.Architecture}}/{{.Variant}}"), "linux/arm64/v8");
    assert_eq!(field("{{.Size}}"), (std::fs::metadata(&arm).unwrap().len() + papers()).to_string());
    assert_eq!(field("{{json .Config.Entrypoint}}"), r#"["/jam"]"#);
    assert_eq!(field("{{json .Config.Healthcheck.Test}}"), r#"["CMD","/jam","probe"]"#);
    assert_eq!(mode_in_image(&tag, "/jam"), 0o755);
    // No untagged leftover of the first build.
    let dangling = ok(&mut docker(&["images", "-q", "--filter", "dangling=true"]));
    assert!(!dangling.contains(&field("{{.Id}}")[7..19]), "{dangling}");
}

/// The student override, as the README gives it: one command on a machine with no jam image
/// (mesin2 builds it), the files named once in COMPOSE_FILE, the server in a Python image made
/// from this machine's Debian packages (tests/python-image). The sheet's own server under both
/// Compose versions; then, under one, a correct student server, one with a syntax error, and one
/// bound to 127.0.0.1, each reported as a student needs.
#[test]
fn the_student_override_runs_a_students_server_and_reports_what_went_wrong() {
    if !docker_running() || !require("python3 (tests/python-image)", have("python3", "--version")) {
        return;
    }
    let builder = ok(&mut Command::new(repo().join("tests/rust-builder-image"))).trim().to_string();
    let python = ok(&mut Command::new(repo().join("tests/python-image"))).trim().to_string();
    let _one = one_lab();
    let pid = std::process::id();
    let (jam_image, student_image) =
        (format!("jam-student-lab-{pid}:latest"), format!("jam-student-{pid}:latest"));
    let _left = DanglingSince(dangling());
    let _images = Images(vec![jam_image.clone(), student_image.clone()]);
    let lab_for = |v2: bool, name: &str, dir: &Path, server: &str| {
        let mut lab = Lab::new(format!("jamstudent{pid}{name}"), v2);
        lab.image = jam_image.clone();
        lab.files = Vec::new();
        lab.env.extend([
            ("COMPOSE_FILE", "docker-compose.yml:docker-compose.student.yml".to_string()),
            ("JAM_RUST_IMAGE", builder.clone()),
            ("JAM_PYTHON_IMAGE", python.clone()),
            ("JAM_STUDENT_IMAGE", student_image.clone()),
            ("JAM_SERVER_DIR", dir.display().to_string()),
            ("JAM_SERVER", server.to_string()),
        ]);
        lab
    };
    let grade =
        |lab: &Lab| run(&mut lab.compose(&["exec", "-T", "mesin2", "/jam", "check", "172.16.16.101"]));
    let bench = repo().join("bench");
    let students = repo().join("tests/student");

    // The sheet's own server, under each Compose version, from no jam image at all.
    for v2 in compose_versions() {
        let name = if v2 { "v2" } else { "v1" };
        let lab = lab_for(v2, name, &bench, "server_thread.py 45000 0.0.0.0");
        let _ = run(&mut docker(&["image", "rm", "-f", &jam_image]));
        let up = run(&mut lab.compose(&["up", "-d"]));
        let said = String::from_utf8_lossy(&up.stdout).into_owned() + &String::from_utf8_lossy(&up.stderr);
        assert!(up.status.success(), "compose {name} up: {said}");
        lab.wait_healthy();
        for client in ["mesin2", "mesin3"] {
            lab.wait_logs(client, "two JAM replies", |l| {
                l.lines().filter(|l| l.contains("JAM ")).count() >= 2
            });
        }
        // The sheet's server has the sheet's faults (a date in its reply), so the grader fails
        // it, but its time is right in the lab's zone, which the card names.
        let card = grade(&lab);
        let card_text = String::from_utf8_lossy(&card.stdout);
        assert_eq!(card.status.code(), Some(1), "{card_text}");
        assert!(
            card_text.contains("replies expected in Asia/Jakarta")
                && card_text.contains("PASS  time-current")
                && card_text.contains("FAIL  time-reply"),
            "the sheet's server, graded in the lab's zone:\n{card_text}"
        );
        // The server stops at once with a clean status: an init is PID 1, the server its child.
        let start = Instant::now();
        ok(&mut lab.compose(&["stop", "mesin1"]));
        let took = start.elapsed();
        let server = lab.container("mesin1");
        assert_eq!(lab.inspect(&server, "{{.State.ExitCode}}"), "0", "{}", lab.logs("mesin1"));
        eprintln!("compose {name}: the sheet's server graded, and stopped in {took:?} with status 0");
        lab.down();
        lab.assert_gone();
    }

    let v2 = *compose_versions().last().unwrap();
    // A correct student server: healthy, served, graded as meeting the sheet.
    let lab = lab_for(v2, "ok", &students, "correct.py");
    ok(&mut lab.compose(&["up", "-d"]));
    lab.wait_healthy();
    let card = grade(&lab);
    assert!(card.status.success(), "{}", String::from_utf8_lossy(&card.stdout));
    lab.down();

    // A syntax error: mesin1 exits, and its log has the SyntaxError; the clients say what they found.
    let lab = lab_for(v2, "syntax", &students, "syntax_error.py");
    ok(&mut lab.compose(&["up", "-d"]));
    let server = lab.container("mesin1");
    let start = Instant::now();
    while lab.inspect(&server, "{{.State.Status}}") != "exited" {
        assert!(start.elapsed() < HANG, "mesin1 with a syntax error did not exit: {}", lab.logs("mesin1"));
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lab.inspect(&server, "{{.State.ExitCode}}"), "1");
    assert!(lab.logs("mesin1").contains("SyntaxError"), "{}", lab.logs("mesin1"));
    // Refused while mesin1 is up, unreachable once it has gone: a hint that fits either.
    lab.wait_logs("mesin2", "a hint that fits any server", |l| l.contains("a server running there"));
    lab.down();

    // Bound to 127.0.0.1: it answers inside its container, but mesin1 is not healthy, the clients
    // are refused and told why it may be, and the grader fails it.
    let lab = lab_for(v2, "loopback", &students, "loopback_only.py");
    ok(&mut lab.compose(&["up", "-d"]));
    let logs =
        lab.wait_logs("mesin2", "a refusal and its hint", |l| l.contains("not only on its own 127.0.0.1"));
    assert!(logs.contains("Connection refused"), "{logs}");
    let server = lab.container("mesin1");
    assert_ne!(lab.inspect(&server, "{{.State.Health.Status}}"), "healthy");
    assert!(!grade(&lab).status.success());
    lab.down();
    lab.assert_gone();
}

#[test]
fn a_fresh_clone_comes_up_with_docker_compose_alone() {
    if !docker_running() || !require("git", have("git", "--version")) {
        return;
    }
    let builder = ok(&mut Command::new(repo().join("tests/rust-builder-image"))).trim().to_string();
    let clone = std::env::temp_dir().join(format!("jam-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&clone);
    ok(Command::new("git").args(["clone", "-q"]).arg(repo()).arg(&clone));
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _clone = Gone(clone.clone());
    assert!(!clone.join("dist").exists() && !clone.join("target").exists());
    let _one = one_lab();
    let before = dangling();
    let _left = DanglingSince(before.clone());
    let image = format!("jam-fresh-{}:latest", std::process::id());
    let mut images = Images(vec![image.clone()]);
    for (run_no, v2) in compose_versions().into_iter().enumerate() {
        let name = if v2 { "v2" } else { "v1" };
        let mut lab = Lab::new(format!("jamfresh{}{name}", std::process::id()), v2);
        lab.dir = clone.clone();
        lab.image = image.clone();
        lab.env.push(("JAM_RUST_IMAGE", builder.clone()));
        let _ = run(&mut docker(&["image", "rm", "-f", &image]));

        let start = Instant::now();
        let up = run(&mut lab.compose(&["up", "-d"]));
        let took = start.elapsed();
        assert!(
            up.status.success(),
            "compose up: {}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        eprintln!(
            "fresh clone, compose {name}: up -d took {took:?} ({})",
            if run_no == 0 { "cold" } else { "warm: the build cache of the first" }
        );
        lab.wait_healthy();
        lab.wait_both_served();
        lab.published_answers();

        // The image is the binary and its papers alone, as the prebuilt one is.
        let size: u64 =
            ok(&mut docker(&["image", "inspect", "-f", "{{.Size}}", &image])).trim().parse().unwrap();
        let id = ok(&mut docker(&["create", &image])).trim().to_string();
        let tar = run(&mut docker(&["cp", &format!("{id}:/jam"), "-"]));
        let _ = run(&mut docker(&["rm", &id]));
        let field = String::from_utf8_lossy(&tar.stdout[124..136])
            .trim_matches(|c: char| c == '\0' || c == ' ')
            .to_string();
        let binary = u64::from_str_radix(&field, 8).unwrap();
        assert_eq!(binary + papers(), size, "the image is the binary, its papers and nothing else");
        assert_eq!(mode_in_image(&image, "/jam") & 0o755, 0o755);

        // `compose build` builds the one image, once, and pulls nothing.
        let build = run(&mut lab.compose(&["build"]));
        let built =
            String::from_utf8_lossy(&build.stdout).into_owned() + &String::from_utf8_lossy(&build.stderr);
        assert!(build.status.success(), "{built}");
        let tagged = built.matches(&format!("Successfully tagged {image}")).count()
            + built.matches(&format!("naming to docker.io/library/{image}")).count();
        assert_eq!(tagged, 1, "one image built, not one per machine:\n{built}");
        assert!(!built.contains("Pulling"), "{built}");

        lab.down();
        lab.assert_gone();
    }
    // What the builds leave beyond the image: the Rust stage, untagged, as the build cache.
    let left: Vec<String> = dangling().difference(&before).cloned().collect();
    for id in &left {
        let size = ok(&mut docker(&["image", "inspect", "-f", "{{.Size}}", id]));
        eprintln!(
            "the build left the untagged image {} ({} bytes): the Rust stage, its cache",
            &id[7..19],
            size.trim()
        );
    }
    assert!(left.len() <= 1, "more than the build stage left untagged: {left:?}");
    images.0.extend(left);
}

/// Faults a lab meets, survived and counted: mesin1's process killed (as a crash or the OOM
/// killer would: SIGKILL to the process, since `docker kill` would also switch its restart
/// policy off), then mesin1 frozen with `docker pause` for longer than a query's timeout. The
/// clients query every 200 ms; each failure must be one clear line, and both must carry on.
#[test]
fn the_compose_lab_rides_out_a_crash_and_a_pause_of_mesin1() {
    if !docker_running() {
        return;
    }
    let Some(bin) = static_bin() else { return };
    let Some(&v2) = compose_versions().first() else { return };
    let _one = one_lab();
    let _images = Images(vec![IMAGE.into()]);
    ok(Command::new(repo().join("deploy/image"))
        .args(["--arch", "amd64", "--tag", IMAGE, "--binary"])
        .arg(&bin));
    let mut lab = Lab::new(format!("jamfault{}", std::process::id()), v2);
    lab.env.push(("JAM_INTERVAL", "200ms".into()));
    ok(&mut lab.compose(&["up", "-d", "--no-build"]));
    let server = lab.wait_healthy();
    lab.wait_both_served();
    let clients = [lab.container("mesin2"), lab.container("mesin3")];

    // The crash: the restart policy brings mesin1 back, the clients report and carry on.
    let pid: i32 = lab.inspect(&server, "{{.State.Pid}}").parse().unwrap();
    let killed = jiff::Timestamp::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    for (client, name) in clients.iter().zip(["mesin2", "mesin3"]) {
        let (lost, back) = served_again_after(client, killed, killed);
        assert!(lost.iter().all(|l| l.starts_with("jam: ") && l.ends_with(" (trying again)")), "{lost:?}");
        eprintln!(
            "crash of mesin1: {name} lost {} queries, served again {} ms after the kill; first failure: {:?}",
            lost.len(),
            back.duration_since(killed).as_millis(),
            lost.first()
        );
    }
    assert_eq!(lab.inspect(&server, "{{.RestartCount}}"), "1");
    lab.wait_healthy();

    // The pause: 7 s frozen, longer than the clients' 5 s timeout. The kernel still completes
    // handshakes for the frozen process, so the clients' requests go unanswered, not refused.
    ok(&mut docker(&["pause", &server]));
    let paused = jiff::Timestamp::now();
    thread::sleep(Duration::from_secs(7));
    ok(&mut docker(&["unpause", &server]));
    let unpaused = jiff::Timestamp::now();
    for (client, name) in clients.iter().zip(["mesin2", "mesin3"]) {
        let (lost, back) = served_again_after(client, paused, unpaused);
        let timed_out: Vec<_> =
            lost.iter().filter(|l| l.contains("no answer within 5s (trying again)")).collect();
        assert!(!timed_out.is_empty() && timed_out.len() == lost.len(), "{name}: {lost:?}");
        eprintln!(
            "pause of mesin1 for {} ms: {name} lost {} queries (timed out), served again {} ms after the unpause",
            unpaused.duration_since(paused).as_millis(),
            lost.len(),
            back.duration_since(unpaused).as_millis()
        );
    }
    lab.down();
    lab.assert_gone();
}

/// Waits until `container` (a querying client) prints a reply stamped after `since`, and returns
/// its failure lines stamped from `from` to that reply, with the reply's time. Docker stamps
/// every log line as it arrives.
fn served_again_after(
    container: &str,
    from: jiff::Timestamp,
    since: jiff::Timestamp,
) -> (Vec<String>, jiff::Timestamp) {
    let start = Instant::now();
    loop {
        // Replies on stdout, failures on stderr: merged by their stamps.
        let out = run(&mut docker(&["logs", "-t", container]));
        let logs =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let mut stamped: Vec<(jiff::Timestamp, &str)> = logs
            .lines()
            .filter_map(|line| {
                let (stamp, text) = line.split_once(' ')?;
                Some((stamp.parse().ok()?, text))
            })
            .filter(|(at, _)| *at >= from)
            .collect();
        stamped.sort_by_key(|(at, _)| *at);
        let mut failures = Vec::new();
        for (at, text) in stamped {
            match text.starts_with("JAM ") {
                true if at >= since => return (failures, at),
                true => {}
                false => failures.push(text.to_string()),
            }
        }
        assert!(start.elapsed() < HANG * 3, "{container} was never served again; logs:\n{logs}");
        thread::sleep(Duration::from_millis(250));
    }
}
