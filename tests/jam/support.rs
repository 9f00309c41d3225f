//! Helpers shared by the test modules: prerequisites, a test server, a blocking test client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use jam::server::clock::{Clock, Zone};
use jam::server::reactor::Reactor;
use jam::server::shutdown::Shutdown;
use jam::server::{self, Limits, Stats};

/// Generous bound on any single wait: catches hangs, asserts no speed.
pub const HANG: Duration = Duration::from_secs(20);

/// Whether a missing prerequisite fails the run (`CI=true`) rather than skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Returns whether `what` is available; if not, fails under CI and says so loudly elsewhere.
pub fn require(what: &str, available: bool) -> bool {
    if !available {
        assert!(!in_ci(), "prerequisite missing under CI=true: {what}");
        eprintln!("\n*** SKIPPED: {what} is not available on this machine ***\n");
    }
    available
}

/// The musl build that `tests/run` makes and names in `JAM_STATIC_BIN`; `None` (a loud skip,
/// or a failure under CI) where it is not set.
pub fn static_bin() -> Option<std::path::PathBuf> {
    let bin = std::env::var_os("JAM_STATIC_BIN").map(std::path::PathBuf::from);
    if bin.is_none() {
        require("JAM_STATIC_BIN (the musl build; tests/run sets it)", false);
    }
    bin
}

/// Whether a Docker engine answers (a loud skip, or a failure under CI, where none does).
pub fn docker_running() -> bool {
    require(
        "a running Docker engine",
        run(&mut docker(&["info", "--format", "{{.ServerVersion}}"])).status.success(),
    )
}

/// Whether `program` runs (`program arg` exits, whatever its status).
pub fn have(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// A jam server running in-process on 127.0.0.1 with an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Stats>>,
}

impl TestServer {
    pub fn start(limits: Limits) -> TestServer {
        TestServer::start_on("127.0.0.1:0".parse().unwrap(), limits)
    }

    pub fn start_on(bind: SocketAddr, limits: Limits) -> TestServer {
        jam::log::set_level(jam::log::Level::Off);
        let listener = TcpListener::bind(bind).expect("bind");
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = thread::spawn(move || {
            let reactor = Reactor::new().expect("reactor");
            // A second executor thread, as in `jam serve --threads 2`: one waits in the reactor
            // while the other parks, and tasks move between them.
            let done = Shutdown::new();
            let helper = {
                let (done, reactor) = (done.clone(), reactor.clone());
                thread::spawn(move || reactor.block_on(done.wait()))
            };
            let clock = Clock::new(Zone::utc());
            let serving = server::serve(&reactor, listener, clock, limits, stop, Default::default());
            let stats = reactor.block_on(serving).expect("serve");
            done.trigger();
            helper.join().unwrap();
            stats
        });
        TestServer { addr, shutdown, thread: Some(thread) }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Triggers the shutdown and returns what the server reports once it has stopped.
    pub fn stop(mut self) -> Stats {
        self.shutdown.trigger();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking client with a read timeout, for exact-byte assertions.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from(TcpStream::connect_timeout(&addr, HANG).expect("connect"))
    }

    /// Connects from the loopback address `source` (127.0.0.2, ...), as another machine would.
    pub fn connect_from(source: [u8; 4], addr: SocketAddr) -> Client {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        let [a, b, c, d] = source;
        bind(fd.as_raw_fd(), &SockaddrIn::new(a, b, c, d, 0)).unwrap();
        let SocketAddr::V4(to) = addr else { panic!("an IPv4 server: {addr}") };
        connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
        Client::from(TcpStream::from(fd))
    }

    fn from(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(HANG)).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One line, CR LF included.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line
    }

    /// Everything until the server closes; fails on a reset.
    pub fn rest(&mut self) -> String {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).expect("read until close");
        String::from_utf8(rest).unwrap()
    }

    pub fn half_close(&self) {
        self.stream.shutdown(Direction::Write).unwrap();
    }

    /// Sends TIME and checks the reply's shape.
    pub fn time(&mut self) -> String {
        self.send(b"TIME\r\n");
        let line = self.line();
        assert_time(&line);
        line
    }
}

/// Connects until the server, full a moment ago, has a place again: the place a client frees is
/// given out once the server has seen that client go. Fails after [`HANG`].
pub fn time_once_a_place_is_free(addr: SocketAddr) {
    let start = std::time::Instant::now();
    loop {
        let mut c = Client::connect(addr);
        c.send(b"TIME\r\n");
        let reply = c.line();
        if reply != "ERROR server busy\r\n" {
            assert_time(&reply);
            return;
        }
        assert!(start.elapsed() < HANG, "no place was given out again");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts `line` is `JAM hh:mm:ss` + CR LF.
pub fn assert_time(line: &str) {
    let body = line.strip_suffix("\r\n").unwrap_or_else(|| panic!("no CR LF: {line:?}"));
    assert!(jam::server::protocol::parse_time_reply(body.as_bytes()).is_some(), "not a time reply: {line:?}");
}

/// A child process that is killed and reaped when dropped, so no test leaves one running.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of a child's stderr on a thread, passing them on through a channel.
pub fn lines_of(stream: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`, returning it, or fails after [`HANG`].
pub fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    lines_until(rx, needle).pop().unwrap()
}

/// Every line up to and including the first that contains `needle`; fails after [`HANG`].
pub fn lines_until(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + HANG;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            Err(e) => panic!("no line containing {needle:?}: {e}; before it: {lines:#?}"),
        }
    }
}

/// The address in a server's start line: `... listening on ADDR; ...`.
pub fn listening_address(line: &str) -> SocketAddr {
    let addr = line.split("listening on ").nth(1).and_then(|rest| rest.split(';').next());
    addr.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Waits for `child` to exit and returns its status; fails after [`HANG`].
pub fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + HANG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "{what} did not exit");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that refuses connections for as long as this lives: a socket bound to it
/// that does not listen. Unlike a port that was free a moment ago, nobody else can take it.
pub struct RefusingPort {
    _socket: std::os::fd::OwnedFd,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
        use std::os::fd::AsRawFd;
        let socket = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(socket.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        let bound: SockaddrIn = getsockname(socket.as_raw_fd()).unwrap();
        RefusingPort { _socket: socket, addr: SocketAddr::from(([127, 0, 0, 1], bound.port())) }
    }
}

pub fn io_kind(r: io::Result<usize>) -> Option<io::ErrorKind> {
    r.err().map(|e| e.kind())
}

/// One TCP connection to port 45000 as a capture shows it.
#[derive(Debug)]
pub struct TcpSession {
    pub client: String,
    /// Starts with the client's SYN and holds both FINs.
    pub complete: bool,
    pub packets: Vec<Packet>,
}

#[derive(Debug)]
pub struct Packet {
    pub from_client: bool,
    pub flags: u16,
    pub payload: Vec<u8>,
}

const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const RST: u16 = 0x04;
const ACK: u16 = 0x10;

impl TcpSession {
    /// The lab sheet's exchange: SYN, SYN-ACK, ACK; the client's request, `TIME\r\n` (6 bytes,
    /// or with `QUIT\r\n` in the same segment, as `jam talk --send 'TIME\r\nQUIT\r\n'` sends
    /// it); the server's 14-byte `JAM hh:mm:ss\r\n`; FIN and ACK from both sides; no RST.
    pub fn assert_sheet_sequence(&self) {
        let p = &self.packets;
        let flags: Vec<(bool, u16)> = p.iter().take(3).map(|p| (p.from_client, p.flags & 0x3f)).collect();
        assert_eq!(flags, [(true, SYN), (false, SYN | ACK), (true, ACK)], "{self:#?}");
        let mut data = p.iter().filter(|p| !p.payload.is_empty());
        let request = data.next().expect("a request");
        let request_ok = matches!(&request.payload[..], b"TIME\r\n" | b"TIME\r\nQUIT\r\n");
        assert!(request.from_client && request_ok, "{self:#?}");
        let reply = data.next().expect("a reply");
        assert!(!reply.from_client && reply.payload.len() == 14, "{self:#?}");
        assert_time(std::str::from_utf8(&reply.payload).unwrap());
        assert!(p.iter().any(|p| p.from_client && p.flags & FIN != 0), "no FIN from the client");
        assert!(p.iter().any(|p| !p.from_client && p.flags & FIN != 0), "no FIN from the server");
        assert!(p.iter().all(|p| p.flags & RST == 0), "a reset: {self:#?}");
    }
}

/// Reads a pcap with tshark and groups its port-45000 packets into sessions.
pub fn tcp_sessions(pcap: &std::path::Path) -> Vec<TcpSession> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", "tcp.port == 45000", "-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "tcp.stream",
            "-e",
            "ip.src",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags",
            "-e",
            "tcp.payload",
        ])
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let mut sessions: Vec<(String, TcpSession)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [stream, src, dport, flags, payload] = f[..] else {
            continue;
        };
        let from_client = dport == "45000";
        let flags = u16::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
        let hex: String = payload.chars().filter(|c| *c != ':').collect();
        let payload =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        let packet = Packet { from_client, flags, payload };
        match sessions.iter_mut().find(|(s, _)| s == stream) {
            Some((_, session)) => session.packets.push(packet),
            None => {
                let client = if from_client { src.to_string() } else { String::new() };
                sessions.push((
                    stream.to_string(),
                    TcpSession { client, complete: false, packets: vec![packet] },
                ));
            }
        }
    }
    sessions
        .into_iter()
        .map(|(_, mut s)| {
            let p = &s.packets;
            s.complete = p[0].from_client
                && p[0].flags & 0x3f == SYN
                && p.iter().any(|p| p.from_client && p.flags & FIN != 0)
                && p.iter().any(|p| !p.from_client && p.flags & FIN != 0);
            s
        })
        .collect()
}

/// This checkout's root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command with no input and returns its output.
pub fn run(cmd: &mut Command) -> std::process::Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs a command that must succeed and returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker ARGS...`, not yet run.
pub fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// A namespace lab's `demo` transcript: mesin2 and mesin3 got three JAM replies each, and
/// mesin1's log shows both connecting from their lab addresses.
pub fn assert_demo_served_both_clients(demo: &str) {
    for m in ["mesin2", "mesin3"] {
        assert_eq!(demo.lines().filter(|l| l.starts_with(&format!("{m} | JAM "))).count(), 3, "{demo}");
    }
    for client in ["172.16.16.102", "172.16.16.103"] {
        assert!(
            demo.contains(&format!("connection from {client}:")),
            "{client} not in mesin1's log:\n{demo}"
        );
    }
}

/// The jam executable cargo built for these tests.
pub const JAM: &str = env!("CARGO_BIN_EXE_jam");

/// A `jam serve` child listening on an ephemeral loopback port, read back from its log.
pub struct Served {
    pub child: Reaped,
    pub addr: SocketAddr,
    /// The startup line.
    pub started: String,
    pub log: std::sync::mpsc::Receiver<String>,
}

pub fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(JAM)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("JAM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jam serve");
    let log = lines_of(child.stderr.take().unwrap());
    let child = Reaped(child);
    let line = wait_for_line(&log, "listening on ");
    Served { child, addr: listening_address(&line), started: line, log }
}

impl Served {
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.0.id() as i32), signal).unwrap();
    }

    /// Waits for the server to exit and returns its exit code.
    pub fn exit_code(&mut self) -> i32 {
        wait_exit(&mut self.child.0, "jam serve").code().expect("exited, not killed")
    }
}
