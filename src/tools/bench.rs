//! `jam bench`: a load generator that checks every reply.
//!
//! Modes: request-response (`rr`: each connection sends a request, waits for the reply, repeats),
//! `pipeline` (each connection keeps `depth` requests in flight), `churn` (per request: connect,
//! request, reply, QUIT, wait for the server to close, as the lab's nc clients do) and `idle`
//! (open N connections, hold them, then check that every one is still served).
//!
//! It shares a 2-core machine with the server it measures, so it is built to be cheap: each
//! thread runs its own single-threaded executor over its share of the connections, with no
//! locks on the request path; replies are counted by scanning for LF in one read buffer; requests
//! for a pipelined batch go out in one write. It reports its own CPU time, and, given the
//! server's PID, the server's CPU time per request and memory, which are steadier figures than
//! requests per second on a shared machine.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use lexopt::prelude::*;
use smol::{LocalExecutor, Timer};

use crate::Error;
use crate::settings::{self, Parsed, positional, show, text, usage, value};
use crate::tools::client::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// How `jam bench` loads the server.
pub enum Mode {
    /// Each connection sends a request, waits for the reply, repeats.
    RequestResponse,
    /// Each connection keeps `depth` requests in flight.
    Pipeline,
    /// Per request: connect, request, reply, QUIT, wait for the close.
    Churn,
    /// Open the connections, hold them, then check that each is still served.
    Idle,
}

impl Mode {
    /// Parses `--mode`'s value.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "rr" | "request-response" => Mode::RequestResponse,
            "pipeline" | "pipelined" => Mode::Pipeline,
            "churn" => Mode::Churn,
            "idle" => Mode::Idle,
            _ => return None,
        })
    }

    /// The mode's name as `--mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::RequestResponse => "rr",
            Mode::Pipeline => "pipeline",
            Mode::Churn => "churn",
            Mode::Idle => "idle",
        }
    }
}

/// Settings of `jam bench`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// The server to load.
    pub target: Target,
    /// How to load it.
    pub mode: Mode,
    /// Connections opened.
    pub connections: usize,
    /// How long to load.
    pub duration: Duration,
    /// Requests in flight per connection, in pipeline mode.
    pub depth: usize,
    /// Load generator threads.
    pub threads: usize,
    /// Source addresses the connections are spread over: 127.0.0.1 up to 127.0.0.N.
    pub sources: usize,
    /// The request line, without CR LF.
    pub request: String,
    /// What every reply line must start with; `None` for a strict `JAM hh:mm:ss` check.
    pub expect: Option<String>,
    /// Print the report as one JSON object.
    pub json: bool,
    /// The server's PID, to report its CPU time per request and its memory.
    pub server_pid: Option<u32>,
}

impl Default for BenchArgs {
    fn default() -> BenchArgs {
        BenchArgs {
            target: Target::default(),
            mode: Mode::RequestResponse,
            connections: 64,
            duration: Duration::from_secs(5),
            depth: 32,
            threads: 1,
            sources: 1,
            request: "TIME".into(),
            expect: None,
            json: false,
            server_pid: None,
        }
    }
}

/// A reply slower than this is counted as missing and ends that connection's run: a server that
/// drops requests (the lab's Python server with pipelined input) must not hang the benchmark.
pub const STALL: Duration = Duration::from_secs(5);

/// Runs `step` (named `what` in errors), or fails after [`STALL`] with "no answer".
async fn or_stall<T>(what: &str, step: impl Future<Output = std::io::Result<T>>) -> Result<T, String> {
    or_stall_as(what, "no answer", step).await
}

/// [`or_stall`], saying `stalled` of a step that did not finish in time.
async fn or_stall_as<T>(
    what: &str,
    stalled: &str,
    step: impl Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    let step = async { step.await.map_err(|e| format!("{what}: {e}")) };
    futures_lite::future::or(step, async {
        Timer::after(STALL).await;
        Err(format!("{what}: {stalled} within {} s", STALL.as_secs()))
    })
    .await
}

/// Reads, or fails after [`STALL`].
async fn read_or_stall(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, String> {
    or_stall("read", stream.read(buf)).await
}

/// Where a connection goes, and the loopback address it comes from when `--sources` spreads them.
#[derive(Clone, Copy)]
struct Peer {
    server: SocketAddr,
    source: Option<IpAddr>,
}

impl Peer {
    /// The peer of connection `n` (counted across threads): sources are taken in turn.
    fn nth(server: SocketAddr, sources: usize, n: usize) -> Peer {
        let source = (sources > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % sources) as u8)));
        Peer { server, source }
    }

    /// Connects, or fails after [`STALL`] (a server with a tiny backlog drops SYNs, and the
    /// kernel would retry for two minutes).
    async fn connect(self) -> Result<TcpStream, String> {
        match self.source {
            None => or_stall("connect", TcpStream::connect(self.server)).await,
            Some(source) => {
                or_stall("connect", crate::tools::client::connect_bound(source, self.server)).await
            }
        }
    }
}

/// Latencies in a log-linear histogram: 16 buckets per power of two, so any percentile is
/// within about 6% of the true value, in a few KiB whatever the number of requests.
#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { counts: vec![0; 64 * 16], max: 0 }
    }

    fn bucket(ns: u64) -> usize {
        if ns < 16 {
            return ns as usize;
        }
        let k = 63 - ns.leading_zeros() as usize;
        (k - 3) * 16 + ((ns >> (k - 4)) & 15) as usize
    }

    /// The middle of a bucket's range, in nanoseconds.
    fn value(bucket: usize) -> u64 {
        if bucket < 16 {
            return bucket as u64;
        }
        let (k, sub) = (bucket / 16 + 3, (bucket % 16) as u64);
        ((16 + sub) << (k - 4)) + (1 << (k - 4)) / 2
    }

    fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.counts[Histogram::bucket(ns)] += 1;
        self.max = self.max.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }

    fn percentile(&self, p: f64) -> u64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * p / 100.0).ceil().max(1.0) as u64;
        if rank >= total {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::value(i).min(self.max);
            }
        }
        self.max
    }
}

/// What one thread measured.
struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram,
}

/// Shared across threads only for the progress line.
#[derive(Default)]
struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
    /// The server's RSS while an idle run holds its connections; 0 until read.
    idle_rss: AtomicU64,
    /// In an idle run, nanoseconds from the start until the last connection was established.
    opened_ns: AtomicU64,
}

/// The outcome of a run.
pub(crate) struct Report {
    pub mode: Mode,
    pub connections: usize,
    pub elapsed: Duration,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// The load generator's own CPU time.
    pub own_cpu: Duration,
    pub server_cpu: Option<Duration>,
    /// The server's resident memory at the end, and growth per connection (idle mode).
    pub server_rss: Option<u64>,
    pub rss_per_connection: Option<f64>,
    /// Idle mode: how long until every connection was established.
    pub opened: Option<Duration>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU time per request in microseconds; none when no request shared it.
    fn us_per_request(&self, cpu: Duration) -> Option<f64> {
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    fn us(ns: u64) -> f64 {
        ns as f64 / 1000.0
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mode {}: {} connections, {} s, {} requests, {} requests/s, {} errors",
            self.mode.name(),
            self.connections,
            Fixed(self.elapsed.as_secs_f64(), 1),
            self.requests,
            Fixed(self.per_second(), 0),
            self.errors
        );
        if let Some(opened) = self.opened {
            let _ = writeln!(s, "all connections established after {} s", Fixed(opened.as_secs_f64(), 3));
        }
        if self.requests == 0 {
            s.push_str("latency: none, no request was answered\n");
        } else {
            let _ = writeln!(
                s,
                "latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
                Fixed(Report::us(self.p50), 1),
                Fixed(Report::us(self.p99), 1),
                Fixed(Report::us(self.p999), 1),
                Fixed(Report::us(self.max), 1)
            );
        }
        let _ = write!(
            s,
            "load generator CPU: {} s ({}% of one core",
            Fixed(self.own_cpu.as_secs_f64(), 2),
            Fixed(100.0 * self.own_cpu.as_secs_f64() / self.elapsed.as_secs_f64(), 0),
        );
        if let Some(us) = self.us_per_request(self.own_cpu) {
            let _ = write!(s, ", {} us per request", Fixed(us, 2));
        }
        s.push_str(")\n");
        if let Some(cpu) = self.server_cpu {
            let _ = write!(s, "server CPU: {} s", Fixed(cpu.as_secs_f64(), 2));
            if let Some(us) = self.us_per_request(cpu) {
                let _ = write!(s, " ({} us per request)", Fixed(us, 2));
            }
            s.push('\n');
        }
        if let Some(rss) = self.server_rss {
            let _ = write!(s, "server RSS: {} KiB", rss / 1024);
            if let Some(per) = self.rss_per_connection {
                let _ = write!(s, " ({} bytes per idle connection)", Fixed(per, 0));
            }
            s.push('\n');
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "first error: {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| Fixed(v, 3).to_string());
        format!(
            "{{\"mode\":\"{}\",\"connections\":{},\"seconds\":{},\"requests\":{},\"requests_per_second\":{},\
             \"errors\":{},\"latency_us\":{{\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\
             \"own_cpu_seconds\":{},\"server_cpu_seconds\":{},\"server_cpu_us_per_request\":{},\
             \"server_rss_bytes\":{},\"rss_bytes_per_connection\":{},\"opened_seconds\":{}}}",
            self.mode.name(),
            self.connections,
            Fixed(self.elapsed.as_secs_f64(), 3),
            self.requests,
            Fixed(self.per_second(), 1),
            self.errors,
            Fixed(Report::us(self.p50), 2),
            Fixed(Report::us(self.p99), 2),
            Fixed(Report::us(self.p999), 2),
            Fixed(Report::us(self.max), 2),
            Fixed(self.own_cpu.as_secs_f64(), 3),
            opt(self.server_cpu.map(|d| d.as_secs_f64())),
            opt(self.server_cpu.and_then(|d| self.us_per_request(d))),
            self.server_rss.map_or("null".to_string(), |r| r.to_string()),
            opt(self.rss_per_connection),
            opt(self.opened.map(|d| d.as_secs_f64())),
        )
    }
}

/// `value` to `places` decimals, as `{:.places$}` prints it (but for ties, which round away
/// from zero), width and alignment included. The figures are scaled to whole numbers and
/// printed as such: the standard library's float printing would add 15 KB to the binary, and
/// a load generator's figures need nothing more.
struct Fixed(f64, u32);

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fixed(value, places) = *self;
        if !value.is_finite() {
            return f.pad("null");
        }
        let scale = 10u64.pow(places);
        let scaled = (value.abs() * scale as f64).round() as u64;
        let sign = if value < 0.0 && scaled > 0 { "-" } else { "" };
        let (whole, part) = (scaled / scale, scaled % scale);
        let text = match places {
            0 => format!("{sign}{whole}"),
            _ => format!("{sign}{whole}.{part:0width$}", width = places as usize),
        };
        f.pad(&text)
    }
}

/// The server's CPU time (user + system) so far, from /proc. /proc counts in USER_HZ ticks,
/// which Linux fixes at 100 per second whatever the kernel's own tick rate.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn own_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
        tv(u.user_time()) + tv(u.system_time())
    })
}

/// Checks the reply lines in `data`; returns (lines, the first bad line).
struct Checker {
    expect: Option<Vec<u8>>,
}

impl Checker {
    fn ok(&self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        match &self.expect {
            Some(prefix) => line.starts_with(prefix),
            None => crate::server::protocol::parse_time_reply(line).is_some(),
        }
    }
}

/// `jam bench`: runs the benchmark and prints its report, as text or JSON. Fails when a reply
/// was wrong or missing, after the report is out.
pub fn run(args: &BenchArgs) -> Result<(), Error> {
    let report = measure(args)?;
    crate::print(&if args.json { report.json() + "\n" } else { report.text() })?;
    match report.errors {
        0 => Ok(()),
        n => Err(Error::new(format!("{n} error(s): some replies were wrong or missing"))),
    }
}

/// Runs the benchmark and returns its report.
fn measure(args: &BenchArgs) -> Result<Report, Error> {
    let addr: SocketAddr = smol::block_on(async_net::resolve((args.target.host.as_str(), args.target.port)))
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| Error::new(format!("cannot resolve {}", args.target)))?;
    if args.sources > 1 && !matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        return Err(Error::usage(format!(
            "--sources spreads over 127.0.0.x: the server must be on loopback IPv4, not {addr}"
        )));
    }
    // Fail early and clearly if nothing listens there.
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Error::new(format!("cannot connect to {addr}: {e}")))?;
    // Each connection is a file descriptor; the idle mode may hold ten thousand.
    crate::sys::raise_open_files_limit();
    let progress = Arc::new(Progress::default());
    let threads = args.threads.clamp(1, args.connections.max(1));
    let rss_before = args.server_pid.and_then(process_rss);
    let cpu_before = args.server_pid.and_then(process_cpu);
    let own_before = own_cpu();
    let start = Instant::now();
    let deadline = start + args.duration;
    let show_progress = std::io::stderr().is_terminal() && !args.json;
    let tallies = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let share = args.connections / threads + usize::from(t < args.connections % threads);
                let progress = progress.clone();
                scope.spawn(move || worker(args, addr, t, threads, share, deadline, &progress))
            })
            .collect();
        if show_progress {
            while workers.iter().any(|w| !w.is_finished()) {
                thread::sleep(Duration::from_millis(250));
                let elapsed = start.elapsed().as_secs_f64();
                eprint!(
                    "\r  {:>5}/{} s  {:>9} requests  {:>9}/s  {} errors ",
                    Fixed(elapsed.min(args.duration.as_secs_f64()), 1),
                    Fixed(args.duration.as_secs_f64(), 0),
                    progress.requests.load(Ordering::Relaxed),
                    Fixed(progress.requests.load(Ordering::Relaxed) as f64 / elapsed, 0),
                    progress.errors.load(Ordering::Relaxed),
                );
            }
            eprintln!();
        }
        workers.into_iter().map(|w| w.join().expect("bench thread")).collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let mut latency = Histogram::new();
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    for t in &tallies {
        requests += t.requests;
        errors += t.errors;
        latency.merge(&t.latency);
        if first_error.is_none() {
            first_error.clone_from(&t.first_error);
        }
    }
    let server_rss = args.server_pid.and_then(process_rss);
    let held = progress.idle_rss.load(Ordering::Relaxed);
    Ok(Report {
        mode: args.mode,
        connections: args.connections,
        elapsed,
        requests,
        errors,
        first_error,
        p50: latency.percentile(50.0),
        p99: latency.percentile(99.0),
        p999: latency.percentile(99.9),
        max: latency.max,
        own_cpu: own_cpu().saturating_sub(own_before),
        server_cpu: args.server_pid.and_then(process_cpu).zip(cpu_before).map(|(a, b)| a.saturating_sub(b)),
        server_rss,
        rss_per_connection: (held > 0)
            .then_some(held)
            .zip(rss_before)
            .map(|(held, before)| held.saturating_sub(before) as f64 / args.connections.max(1) as f64),
        opened: (args.mode == Mode::Idle)
            .then(|| Duration::from_nanos(progress.opened_ns.load(Ordering::Relaxed))),
    })
}

/// One thread's share of the connections, on a single-threaded executor.
fn worker(
    args: &BenchArgs,
    addr: SocketAddr,
    thread: usize,
    threads: usize,
    connections: usize,
    deadline: Instant,
    progress: &Progress,
) -> Tally {
    let ex = LocalExecutor::new();
    let checker = Rc::new(Checker { expect: args.expect.as_ref().map(|e| e.as_bytes().to_vec()) });
    let mut request = args.request.clone().into_bytes();
    request.extend_from_slice(b"\r\n");
    let request: Rc<[u8]> = request.into();
    let peers: Vec<Peer> =
        (0..connections).map(|j| Peer::nth(addr, args.sources, thread + j * threads)).collect();
    let tasks: Vec<_> = peers
        .iter()
        .filter(|_| args.mode != Mode::Idle)
        .map(|&peer| {
            let (checker, request) = (checker.clone(), request.clone());
            ex.spawn(async move {
                let mut t = Tally { requests: 0, errors: 0, first_error: None, latency: Histogram::new() };
                let result = match args.mode {
                    Mode::RequestResponse => {
                        pipelined(peer, &request, 1, deadline, &checker, &mut t, progress).await
                    }
                    Mode::Pipeline => {
                        pipelined(peer, &request, args.depth.max(1), deadline, &checker, &mut t, progress)
                            .await
                    }
                    Mode::Churn => churn(peer, &request, deadline, &checker, &mut t, progress).await,
                    // Not spawned: `idle` below opens and holds its own connections.
                    Mode::Idle => Ok(()),
                };
                if let Err(e) = result {
                    t.errors += 1;
                    t.first_error.get_or_insert(e);
                }
                t
            })
        })
        .collect();
    let mut tally = Tally { requests: 0, errors: 0, first_error: None, latency: Histogram::new() };
    let mut add = |t: Tally| {
        tally.requests += t.requests;
        tally.errors += t.errors;
        tally.latency.merge(&t.latency);
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
    };
    if args.mode == Mode::Idle {
        add(smol::block_on(ex.run(idle(&ex, args, &peers, deadline, &request, &checker, progress))));
    } else {
        for task in tasks {
            add(smol::block_on(ex.run(task)));
        }
    }
    tally
}

/// Keeps `depth` requests in flight on one connection until the deadline (depth 1 is
/// request-response), checking and timing every reply.
async fn pipelined(
    peer: Peer,
    request: &[u8],
    depth: usize,
    deadline: Instant,
    checker: &Checker,
    t: &mut Tally,
    progress: &Progress,
) -> Result<(), String> {
    let mut stream = peer.connect().await?;
    let _ = stream.set_nodelay(true);
    let batch: Vec<u8> = request.repeat(depth);
    let mut sent_at = std::collections::VecDeque::with_capacity(depth);
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let now = Instant::now();
    stream.write_all(&batch).await.map_err(|e| format!("write: {e}"))?;
    sent_at.extend(std::iter::repeat_n(now, depth));
    while !sent_at.is_empty() {
        let n = read_or_stall(&mut stream, &mut buf).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        let now = Instant::now();
        let mut answered = 0;
        let mut start = 0;
        let data = &buf[..n];
        for (i, &b) in data.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            let line_ok = if partial.is_empty() {
                checker.ok(&data[start..=i])
            } else {
                partial.extend_from_slice(&data[start..=i]);
                let ok = checker.ok(&partial);
                partial.clear();
                ok
            };
            start = i + 1;
            answered += 1;
            let sent = sent_at.pop_front().ok_or("a reply nobody asked for")?;
            t.latency.record(now - sent);
            if line_ok {
                t.requests += 1;
            } else {
                t.errors += 1;
                if t.first_error.is_none() {
                    t.first_error =
                        Some(format!("unexpected reply {:?}", String::from_utf8_lossy(&data[..=i])));
                }
            }
        }
        partial.extend_from_slice(&data[start..]);
        progress.requests.fetch_add(answered, Ordering::Relaxed);
        if answered > 0 && now < deadline {
            stream
                .write_all(&batch[..answered as usize * request.len()])
                .await
                .map_err(|e| format!("write: {e}"))?;
            sent_at.extend(std::iter::repeat_n(now, answered as usize));
        }
    }
    Ok(())
}

/// Connect, request, reply, QUIT, the server's close; again until the deadline.
async fn churn(
    peer: Peer,
    request: &[u8],
    deadline: Instant,
    checker: &Checker,
    t: &mut Tally,
    progress: &Progress,
) -> Result<(), String> {
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        let start = Instant::now();
        let one = async {
            let mut stream = peer.connect().await?;
            let _ = stream.set_nodelay(true);
            stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
            let mut got = Vec::new();
            while !got.contains(&b'\n') {
                let n = read_or_stall(&mut stream, &mut buf).await?;
                if n == 0 {
                    return Err("closed before replying".to_string());
                }
                got.extend_from_slice(&buf[..n]);
            }
            if !checker.ok(&got) {
                return Err(format!("unexpected reply {:?}", String::from_utf8_lossy(&got)));
            }
            // QUIT, then wait for the server to close, as nc does: the server closing is part of
            // the session, and a server that does not close on QUIT is caught here. A jam server
            // sends nothing after QUIT; another server may answer it (redis: `+OK`).
            stream.write_all(b"QUIT\r\n").await.map_err(|e| format!("write QUIT: {e}"))?;
            loop {
                let closed =
                    or_stall_as("close after QUIT", "the server did not close", stream.read(&mut buf));
                match closed.await? {
                    0 => break,
                    n if checker.expect.is_none() => {
                        let extra = String::from_utf8_lossy(&buf[..n]);
                        return Err(format!("sent {extra:?} after QUIT instead of closing"));
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        match one.await {
            Ok(()) => {
                t.requests += 1;
                t.latency.record(start.elapsed());
                progress.requests.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                t.errors += 1;
                progress.errors.fetch_add(1, Ordering::Relaxed);
                t.first_error.get_or_insert(e);
            }
        }
    }
    Ok(())
}

/// Opens every connection, holds them until the deadline, then checks each is still served.
#[allow(clippy::too_many_arguments)]
async fn idle(
    ex: &LocalExecutor<'_>,
    args: &BenchArgs,
    peers: &[Peer],
    deadline: Instant,
    request: &[u8],
    checker: &Checker,
    progress: &Progress,
) -> Tally {
    let mut t = Tally { requests: 0, errors: 0, first_error: None, latency: Histogram::new() };
    let mut open = Vec::with_capacity(peers.len());
    // All at once, as many clients would: one slow connect must not hold up the rest.
    let connecting: Vec<_> = peers.iter().map(|peer| ex.spawn(peer.connect())).collect();
    for connected in connecting {
        match connected.await {
            Ok(s) => open.push(s),
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert(e);
            }
        }
    }
    let since_start = args.duration.saturating_sub(deadline.saturating_duration_since(Instant::now()));
    progress.opened_ns.fetch_max(since_start.as_nanos() as u64, Ordering::Relaxed);
    // Every connection must be accepted before the server's memory is read: ask on the last.
    if let Some(last) = open.last_mut() {
        let _ = last.write_all(request).await;
        let mut buf = [0u8; 64];
        let _ = last.read(&mut buf).await;
    }
    // The largest reading of the threads, each taken once its own share is open.
    if let Some(rss) = args.server_pid.and_then(process_rss) {
        progress.idle_rss.fetch_max(rss, Ordering::Relaxed);
    }
    Timer::at(deadline).await;
    let mut buf = [0u8; 256];
    for mut s in open {
        let start = Instant::now();
        let ok = async {
            s.write_all(request).await.ok()?;
            let n = read_or_stall(&mut s, &mut buf).await.ok()?;
            checker.ok(&buf[..n]).then_some(())
        }
        .await;
        match ok {
            Some(()) => {
                t.requests += 1;
                t.latency.record(start.elapsed());
                progress.requests.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                t.errors += 1;
                t.first_error.get_or_insert("an idle connection was not served".into());
            }
        }
    }
    t
}

// The command line: arguments, help and parser.

/// `jam bench --help`.
pub fn help() -> String {
    let d = BenchArgs::default();
    format!(
        "jam bench: load generator for a jam server (or any one-line request/reply server)

Usage: jam bench [OPTIONS] [HOST[:PORT]]

Every reply is checked; a wrong or missing one is an error, counted and shown. Prints
requests per second, latency percentiles, its own CPU use and, with --server-pid, the
server's CPU time per request and memory.

Modes:
  rr         each connection sends a request, waits for the reply, repeats
  pipeline   each connection keeps --depth requests in flight
  churn      per request: connect, request, reply, QUIT, until the server closes (as nc)
  idle       open the connections, hold them for the duration, check each is still served

Arguments:
  [HOST[:PORT]]            server to load [default: {target}]

Options:
  -m, --mode MODE          rr, pipeline, churn or idle [default: {mode}]
  -c, --connections N      connections [default: {connections}]
  -d, --duration DUR       how long to load [default: {duration}]
      --depth N            requests in flight per connection, pipeline mode [default: {depth}]
      --threads N          load generator threads [default: {threads}]
      --sources N          spread the connections over source addresses 127.0.0.1 to
                           127.0.0.N, past one address's limits (loopback servers)
                           [default: {sources}]
      --request TEXT       the request line, without CR LF [default: {request}]
      --expect TEXT        what each reply must start with [default: a strict JAM hh:mm:ss]
      --server-pid PID     report this process's CPU time per request and memory
      --json               print the report as one JSON object
  -h, --help               print this help
",
        target = d.target,
        mode = d.mode.name(),
        connections = d.connections,
        duration = show(d.duration),
        depth = d.depth,
        threads = d.threads,
        sources = d.sources,
        request = d.request,
    )
}

/// Parses `jam bench`'s arguments.
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<BenchArgs>, Error> {
    let mut args = BenchArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('m') | Long("mode") => {
                args.mode = value(p, "--mode", |m| {
                    Mode::parse(m).ok_or_else(|| format!("{m:?}: expected rr, pipeline, churn or idle"))
                })?
            }
            Short('c') | Long("connections") => {
                args.connections = value(p, "--connections", settings::count)?
            }
            Short('d') | Long("duration") => args.duration = value(p, "--duration", settings::duration)?,
            Long("depth") => args.depth = value(p, "--depth", settings::count)?,
            Long("threads") => args.threads = value(p, "--threads", settings::count)?,
            Long("sources") => args.sources = value(p, "--sources", settings::sources)?,
            Long("request") => args.request = text(p)?,
            Long("expect") => args.expect = Some(text(p)?),
            Long("server-pid") => {
                args.server_pid = Some(value(p, "--server-pid", |s| {
                    s.parse().map_err(|_| format!("{s:?} is not a process ID"))
                })?)
            }
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => positional(&mut server, v, Target::parse)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_within_a_bucket() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.percentile(50.0) as f64 / 1000.0;
        let p99 = h.percentile(99.0) as f64 / 1000.0;
        assert!((p50 - 500.0).abs() / 500.0 < 0.07, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "{p99}");
        assert_eq!(h.percentile(100.0), 1_000_000);
        for ns in [0, 1, 15, 16, 17, 1000, 123_456_789] {
            let b = Histogram::bucket(ns);
            let v = Histogram::value(b) as f64;
            assert!(ns < 16 && v == ns as f64 || (v - ns as f64).abs() / ns as f64 <= 1.0 / 16.0, "{ns} {v}");
        }
    }

    #[test]
    fn fixed_prints_like_the_standard_float_formatting() {
        for (value, places) in
            [(0.0, 0), (1.0, 2), (12.345, 1), (0.06, 1), (99.96, 1), (123456.7, 0), (-2.5, 2)]
        {
            let ours = Fixed(value, places).to_string();
            assert_eq!(ours, format!("{value:.*}", places as usize), "{value} to {places} places");
        }
        assert_eq!(format!("[{:>7}]", Fixed(45.678, 2)), "[  45.68]");
        assert_eq!(format!("[{:<6}]", Fixed(2.0, 1)), "[2.0   ]");
        assert_eq!(Fixed(-0.0001, 2).to_string(), "0.00");
        assert_eq!(Fixed(f64::NAN, 1).to_string(), "null");
    }

    #[test]
    fn the_checker_is_strict_for_jam_and_a_prefix_otherwise() {
        let jam = Checker { expect: None };
        assert!(jam.ok(b"JAM 12:00:00\r\n"));
        assert!(!jam.ok(b"JAM 09 05 25 16:37:26\r\n"));
        let pong = Checker { expect: Some(b"+PONG".to_vec()) };
        assert!(pong.ok(b"+PONG\r\n") && !pong.ok(b"-ERR\r\n"));
    }
}
