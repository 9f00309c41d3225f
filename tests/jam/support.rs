//! Helpers shared by the test modules: prerequisites, a test server, a blocking test client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use jam::clock::{Clock, Zone};
use jam::server::{self, Limits, Stats};
use jam::shutdown::Shutdown;
use smol::{Async, Executor};

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

/// Whether `program` runs (`program arg` exits, whatever its status).
pub fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
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
        let listener = Async::<TcpListener>::bind(bind).expect("bind");
        let addr = listener.get_ref().local_addr().unwrap();
        let shutdown = Shutdown::new();
        let stop = shutdown.clone();
        let thread = thread::spawn(move || {
            let ex = Arc::new(Executor::new());
            // A second executor thread, as in `jam serve` on two cores.
            let done = Shutdown::new();
            let helper = {
                let (ex, done) = (ex.clone(), done.clone());
                thread::spawn(move || smol::block_on(ex.run(done.wait())))
            };
            let clock = Clock::new(Zone::utc());
            let stats = smol::block_on(ex.run(server::serve(&ex, listener, clock, limits, stop)));
            done.trigger();
            helper.join().unwrap();
            stats
        });
        TestServer {
            addr,
            shutdown,
            thread: Some(thread),
        }
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
        let stream = TcpStream::connect_timeout(&addr, HANG).expect("connect");
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
        self.reader
            .read_to_end(&mut rest)
            .expect("read until close");
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

/// Asserts `line` is `JAM hh:mm:ss` + CR LF.
pub fn assert_time(line: &str) {
    let body = line
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("no CR LF: {line:?}"));
    assert!(
        jam::protocol::parse_time_reply(body.as_bytes()).is_some(),
        "not a time reply: {line:?}"
    );
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
    let deadline = std::time::Instant::now() + HANG;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line containing {needle:?}: {e}"),
        }
    }
}

pub fn io_kind(r: io::Result<usize>) -> Option<io::ErrorKind> {
    r.err().map(|e| e.kind())
}
