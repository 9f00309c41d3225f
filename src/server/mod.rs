//! The time server: the accept loop, the connection limit, graceful shutdown, and `jam serve`.
//!
//! [`serve`] takes a bound listener, the [`Reactor`] its tasks run on and a [`Shutdown`]: tests
//! bind `127.0.0.1:0`, read the port back and stop the server by triggering the shutdown. [`run`]
//! is `jam serve`: it adds what is process-wide (signals, the open-files limit, the threads that
//! run the reactor).
//!
//! Executor design: the reactor's tasks ([`Reactor::spawn`]), run by [`DEFAULT_THREADS`] (one)
//! thread unless `--threads` asks for more, each under [`Reactor::block_on`]. Connections are
//! tasks that never block, so a slow or busy client never holds up the others; with more threads
//! any of them may run any connection, and whichever thread is idle waits in the reactor's epoll
//! set. [`serve`] returns only once every connection's task has ended.
//! docs/PERFORMANCE.md has the measurements behind the default.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use event_listener::Event;
use futures_lite::future;

use crate::log;
use crate::server::clock::{Clock, Zone};
use crate::server::reactor::{Interest, Reactor, Socket};
use crate::server::shutdown::Shutdown;
use crate::{Error, debug, http, info, notice, sys, warn};

pub mod clock;
pub mod config;
mod connection;
pub mod metrics;
pub mod protocol;
pub mod reactor;
pub mod shutdown;
mod tzdb;

pub use config::Config;
pub use metrics::Metrics;

/// Connections served at once; past it a new client gets `ERROR server busy`. Also capped by the
/// open-files limit less [`RESERVED_FDS`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// After SIGTERM, how long connections get to receive what they are owed before the server
/// exits anyway. Docker waits 10 s before it kills, Kubernetes 30 s; 5 s fits well inside both.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// File descriptors kept back from connections: stdio, the listener, the reactor, and a margin.
pub const RESERVED_FDS: u64 = 32;
/// Executor threads unless `--threads` says otherwise. One: the server's time goes to the
/// kernel's TCP work, which a single thread does with the fewest wake-ups, and every measured
/// load (docs/PERFORMANCE.md) cost less CPU per request on one thread than on two. More threads
/// help only a server with cores of its own under more load than one core can carry.
pub const DEFAULT_THREADS: usize = 1;
/// The listen backlog unless `--backlog` says otherwise: connections the kernel has completed and
/// queues until the server accepts them. When the queue is full the kernel drops the handshake
/// and the client sends it again a second later, so a burst of connects (a class starting at
/// once, a load test) waits that second. With 10,000 connects at once (`bench/burst`, figures in
/// docs/RELIABILITY.md), std's 128 dropped thousands of handshakes and every burst took 1.0 s;
/// redis's and nginx's 511 dropped some in 2 runs of 5; at 1024 and 4096 none was dropped and
/// all were established in about 0.3 s. 4096 leaves room for a server busier than that one.
/// Linux caps the figure at `net.core.somaxconn` (4096 by default since 5.4), and the queue
/// costs memory only while it holds connections.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Pause after `accept` fails for lack of file descriptors, so the loop never spins.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Unless `--max-per-address` says otherwise, one client address may hold this share of
/// `--max-connections` (1/2: 5,000 of the default 10,000); past it that address gets `ERROR too
/// many connections from your address` while every other is still served. Half, because the
/// limit has two jobs that pull apart (docs/PROTOCOL.md, "Why half"): the sheet's concurrency test
/// is run from one machine and must be served thousands of connections (at the old fixed 128, a
/// student's "how many threads" client got 128 served and 564 refused), while one runaway client
/// (one flooded all 10,000 places in about 10 s) must still leave most places to everyone else.
pub const PER_ADDRESS_SHARE: usize = 2;
/// Refused clients lingering at once, at most: each waits up to `connection::LINGER` for the
/// client's FIN, so that the close is orderly. Past it, in a flood, a refused client still gets
/// its line and our FIN, and its socket is held in a queue for [`REFUSAL_HOLD`] instead (see
/// [`HeldRefusals`]), so that a flood cannot use up file descriptors or tasks this way.
pub const MAX_REFUSING: usize = 64;
/// Refused sockets held at once past the lingering ones, at most; when the queue is full, the
/// oldest is closed early. Each costs a descriptor and nothing else (no task, no timer).
pub const MAX_HELD_REFUSALS: usize = 1024;
/// How long a held refused socket stays open for the client's request to arrive and be read
/// before it is closed: a request that comes after the close is answered with a reset. Clients
/// send theirs within a few milliseconds of connecting (3 to 7 ms in the capture that found
/// this); `bench/refusals` measures what is left.
pub const REFUSAL_HOLD: Duration = Duration::from_millis(250);

/// Refused clients are logged at most once in this long, with a count of those refused in
/// between: a flood turns thousands away a second, and a line each would bury the log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

pub use crate::server::connection::Limits as ConnectionLimits;

/// The limits on what clients can make the server hold: each connection's own, and the
/// server's over all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// What one connection may hold and wait for.
    pub connection: ConnectionLimits,
    /// Connections served at once; past it a new client gets `ERROR server busy`.
    pub max_connections: usize,
    /// Connections from one client address at once; past it, `ERROR too many connections from
    /// your address`. `None`: a share of `max_connections` ([`Limits::per_address`]).
    pub max_per_address: Option<usize>,
    /// After the stop, how long connections get to finish.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connection: ConnectionLimits::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_address: None,
            grace: DEFAULT_GRACE,
        }
    }
}

impl Limits {
    /// Connections one client address may hold at once: `max_per_address`, else
    /// 1/[`PER_ADDRESS_SHARE`] of `max_connections` (at least 1).
    pub fn per_address(&self) -> usize {
        self.max_per_address.unwrap_or((self.max_connections / PER_ADDRESS_SHARE).max(1))
    }
}

/// What a server and its connections share.
#[derive(Debug)]
struct Shared {
    clock: Clock,
    limits: Limits,
    shutdown: Shutdown,
    /// What is counted, connections being served (`metrics.open`) among them.
    metrics: Arc<Metrics>,
    /// Connections being served, by client address (only addresses with one or more).
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Clients being turned away.
    refusing: AtomicUsize,
    /// Notified when `active` or `refusing` drops to zero.
    drained: Event,
    /// Readiness for the clients' sockets.
    reactor: Arc<Reactor>,
}

/// What a server did, reported when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Clients served.
    pub accepted: u64,
    /// Clients turned away: the server full, or their address at its maximum.
    pub refused: u64,
    /// Of those, the ones turned away for their address (`ERROR too many connections from your
    /// address`); the rest were told `ERROR server busy`.
    pub refused_per_address: u64,
    /// Connections still open when the grace period ran out.
    pub cut_off: usize,
}

impl Shared {
    /// Whether every connection, served or turned away, has ended.
    fn is_drained(&self) -> bool {
        self.metrics.open.load(Ordering::SeqCst) == 0 && self.refusing.load(Ordering::SeqCst) == 0
    }

    /// Completes once every connection, served or turned away, has ended.
    async fn drained(&self) {
        loop {
            let listener = self.drained.listen();
            if self.is_drained() {
                return;
            }
            listener.await;
        }
    }

    /// Counts a refused client's connection as ended.
    fn refused_one(&self) {
        if self.refusing.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drained.notify(usize::MAX);
        }
    }
}

/// Counts a connection as active, in all and for its address, for as long as it lives.
struct Active(Arc<Shared>, IpAddr);

impl Active {
    /// Counts a new connection from `ip`; returns it with the counts it makes, all and from `ip`.
    fn new(shared: &Arc<Shared>, ip: IpAddr) -> (Active, usize, usize) {
        let open = shared.metrics.open.fetch_add(1, Ordering::SeqCst) + 1;
        let from_ip = {
            let mut map = shared.per_address.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(ip).or_insert(0);
            *n += 1;
            *n
        };
        (Active(shared.clone(), ip), open, from_ip)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        {
            let mut map = self.0.per_address.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&self.1) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.1);
                }
            }
        }
        if self.0.metrics.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify(usize::MAX);
        }
    }
}

/// Serves `listener` until `shutdown` is triggered, then stops accepting, tells every
/// connection, and waits up to the grace period for them to finish; past it, cuts them off.
///
/// The connections are `reactor`'s tasks and their sockets are in its set, so the caller's
/// threads must run under [`Reactor::block_on`], which runs the tasks and delivers their
/// readiness and deadlines. Returns once every connection has ended.
///
/// What happens is counted in `metrics` as it happens (`jam serve --metrics` shows it).
pub async fn serve(
    reactor: &Arc<Reactor>,
    listener: TcpListener,
    clock: Clock,
    limits: Limits,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
) -> io::Result<Stats> {
    // Replies are single small writes that should leave at once, not wait for Nagle.
    if let Err(e) = sys::set_nodelay_for_accepted(&listener) {
        warn!("cannot set TCP_NODELAY: {e}; replies may be delayed");
    }
    listener.set_nonblocking(true)?;
    let listener = reactor.register(listener)?;
    let shared = Arc::new(Shared {
        clock,
        limits,
        shutdown: shutdown.clone(),
        metrics,
        per_address: Mutex::new(HashMap::new()),
        refusing: AtomicUsize::new(0),
        drained: Event::new(),
        reactor: reactor.clone(),
    });
    let mut out_of_fds = false;
    let mut refusals = RefusalLog { last: None, quiet: 0 };
    let mut held = HeldRefusals::default();
    loop {
        held.release_due();
        let due = held.next();
        let accepted = future::or(
            async { Some(Some(accept(&listener).await)) },
            future::or(
                async {
                    shutdown.wait().await;
                    None
                },
                async {
                    match due {
                        Some(due) => reactor.sleep_until(due).await,
                        None => future::pending::<()>().await,
                    }
                    // A held refusal is due: round the loop to release it.
                    Some(None)
                },
            ),
        )
        .await;
        let accepted = match accepted {
            None => None,
            Some(None) => continue,
            Some(Some(accepted)) => Some(accepted),
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                if out_of_fds {
                    notice!("accepting connections again");
                    out_of_fds = false;
                }
                admit(&shared, stream, peer, &mut refusals, &mut held);
            }
            Some(Err(e)) if is_out_of_fds(&e) => {
                // Held refusals are the descriptors most cheaply given back.
                held.release_all();
                if !out_of_fds {
                    warn!(
                        "cannot accept: {e}; serving the {} open connections and retrying every {} ms",
                        shared.metrics.open.load(Ordering::SeqCst),
                        ACCEPT_BACKOFF.as_millis()
                    );
                    out_of_fds = true;
                }
                future::or(reactor.sleep_until(Instant::now() + ACCEPT_BACKOFF), shutdown.wait()).await;
            }
            // The client went away between connecting and being accepted, and the like; unless
            // the reactor itself has failed, when nothing can be served any more.
            Some(Err(e)) => {
                reactor.check()?;
                debug!("accept: {e}");
            }
        }
    }
    drop(listener);
    held.release_all();
    // Every connection that waits hears the stop now; a busy one at its next wait.
    reactor.stop();

    let open = shared.metrics.open.load(Ordering::SeqCst);
    notice!(
        "shutting down: stopped accepting; {open} connection(s) open, waiting up to {} ms",
        shared.limits.grace.as_millis()
    );
    let finished = future::or(
        async {
            shared.drained().await;
            true
        },
        async {
            reactor.sleep_until(Instant::now() + shared.limits.grace).await;
            false
        },
    )
    .await;
    let mut cut_off = 0;
    if !finished {
        cut_off = shared.metrics.open.load(Ordering::SeqCst);
        warn!("{cut_off} connection(s) still open after the grace period; closing them");
        // Every wait of theirs fails from now on, so each ends at its next step; the server
        // returns once they have, with no task and no socket left behind.
        reactor.cut_off();
        shared.drained().await;
    }
    // What the stop line reports is what the metrics counted.
    let (accepted, busy, per_address) = shared.metrics.admissions();
    Ok(Stats { accepted, refused: busy + per_address, refused_per_address: per_address, cut_off })
}

/// Starts serving a freshly accepted client, or turns it away when the server is full or its
/// address already holds its share of places.
fn admit(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    refusals: &mut RefusalLog,
    held: &mut HeldRefusals,
) {
    let stream = match shared.reactor.register(stream) {
        Ok(stream) => stream,
        Err(e) => {
            warn!("cannot serve {peer}: {e}");
            return;
        }
    };
    let (active, open, from_ip) = Active::new(shared, peer.ip());
    let turned_away = if open > shared.limits.max_connections {
        if let Some(also) = refusals.due() {
            warn!("server busy: refused {peer} ({} connections open){also}", open - 1);
        }
        Some(protocol::BUSY)
    } else if from_ip > shared.limits.per_address() {
        if let Some(also) = refusals.due() {
            warn!(
                "too many connections from {}: refused {peer} ({} open from it){also}",
                peer.ip(),
                from_ip - 1
            );
        }
        Some(protocol::TOO_MANY_FROM_ADDRESS)
    } else {
        None
    };
    if let Some(line) = turned_away {
        drop(active);
        shared.metrics.refused(line == protocol::TOO_MANY_FROM_ADDRESS);
        if shared.refusing.fetch_add(1, Ordering::SeqCst) < MAX_REFUSING {
            let shared = shared.clone();
            let reactor = shared.reactor.clone();
            reactor.spawn(async move {
                connection::refuse(stream, line).await;
                shared.refused_one();
            });
        } else {
            if let Some(socket) = connection::refuse_and_hold(stream, line) {
                held.hold(socket);
            }
            shared.refused_one();
        }
        return;
    }
    shared.metrics.accepted();
    info!("connection from {peer} ({open} open)");
    shared.reactor.spawn(async move {
        let shared = &active.0;
        let summary = connection::serve(
            stream,
            &shared.clock,
            &shared.limits.connection,
            &shared.shutdown,
            &shared.metrics,
        )
        .await;
        info!("closed {peer} after {} request(s): {}", summary.requests, summary.closed);
    });
}

/// When the last refusal was logged, and how many have not been since.
struct RefusalLog {
    last: Option<Instant>,
    quiet: usize,
}

impl RefusalLog {
    /// For a refusal to log now, what to add to its line (the count of those not logged); `None`
    /// when one was logged less than [`REFUSAL_LOG_INTERVAL`] ago (it is counted instead).
    fn due(&mut self) -> Option<String> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + REFUSAL_LOG_INTERVAL) {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(match std::mem::take(&mut self.quiet) {
            0 => String::new(),
            n => format!("; {n} more refused since the last such line"),
        })
    }
}

/// Refused sockets held open a moment past their line and FIN, oldest first (see
/// [`MAX_REFUSING`]): a queue the accept loop owns, with no task or timer per socket.
#[derive(Default)]
struct HeldRefusals(VecDeque<(Instant, Socket)>);

impl HeldRefusals {
    /// Holds `socket` until [`REFUSAL_HOLD`] from now, closing the oldest first when full.
    fn hold(&mut self, socket: Socket) {
        if self.0.len() >= MAX_HELD_REFUSALS {
            if let Some((_, oldest)) = self.0.pop_front() {
                connection::release(oldest);
            }
        }
        self.0.push_back((Instant::now() + REFUSAL_HOLD, socket));
    }

    /// Closes those whose time is up.
    fn release_due(&mut self) {
        let now = Instant::now();
        while self.0.front().is_some_and(|(until, _)| *until <= now) {
            if let Some((_, socket)) = self.0.pop_front() {
                connection::release(socket);
            }
        }
    }

    /// When the next one is due.
    fn next(&self) -> Option<Instant> {
        self.0.front().map(|(until, _)| *until)
    }

    /// Closes them all (the server is stopping).
    fn release_all(&mut self) {
        for (_, socket) in self.0.drain(..) {
            connection::release(socket);
        }
    }
}

/// Accepts the next client, waiting in the reactor while none is queued. The listener's
/// readiness is kept like a client socket's: no `accept4` is tried until an edge says a client
/// may be waiting (a failed one is not cheap: Linux allocates the new socket's file before it
/// finds the queue empty; perf put async-io's retries at 1.5 to 2.5% of the server's CPU).
async fn accept(listener: &Socket<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    loop {
        match listener.accept() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                listener.wait(Interest::Read, None).await?;
            }
            result => return result,
        }
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// `jam serve`: serves until SIGTERM or SIGINT, then shuts down gracefully and returns.
pub fn run(config: Config) -> Result<(), Error> {
    // First, before any thread starts, so that every thread inherits the blocked signal mask.
    let shutdown = Shutdown::new();
    shutdown.on_signals("jam-signals")?;
    run_until(config, shutdown)
}

/// Serves until `shutdown` is triggered (by the caller's signal handling), then shuts down
/// gracefully and returns. `jam init` uses it with its own signals and the power button.
pub fn run_until(config: Config, shutdown: Shutdown) -> Result<(), Error> {
    log::set_level(config.log);
    let zone = Zone::resolve(config.zone_flag.as_deref(), config.zone_env.as_deref())?;
    let open_files = sys::raise_open_files_limit();
    let mut limits = config.limits;
    let fd_capacity = usize::try_from(open_files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if limits.max_connections > fd_capacity {
        warn!(
            "open-files limit {open_files} allows only {fd_capacity} connections, not {}; \
             raise it (ulimit -n) to serve more",
            limits.max_connections
        );
        limits.max_connections = fd_capacity;
    }
    let listener = TcpListener::bind(config.listen).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            " (is another server already listening there?)"
        } else {
            ""
        };
        Error::new(format!("cannot listen on {}: {e}{hint}", config.listen))
    })?;
    sys::set_backlog(&listener, config.backlog)
        .map_err(|e| Error::new(format!("cannot set the listen backlog to {}: {e}", config.backlog)))?;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok();
    if let Some(cap) =
        somaxconn.and_then(|s| s.trim().parse::<u32>().ok()).filter(|&cap| cap < config.backlog)
    {
        warn!("the kernel caps the listen backlog at {cap} (net.core.somaxconn), not {}", config.backlog);
    }
    let local = listener.local_addr().map_err(|e| {
        Error::new(format!("cannot read the address of the socket bound to {}: {e}", config.listen))
    })?;
    let threads = config.threads.max(1);
    notice!(
        "jam {} listening on {local}; time zone {} (tzdb {}); up to {} connections (open files {open_files}), \
         {} from one address, backlog {}; \
         line limit {} bytes, idle timeout {:?}, line timeout {:?}, grace {:?}; {threads} thread(s)",
        env!("CARGO_PKG_VERSION"),
        zone.name,
        crate::server::tzdb::VERSION,
        limits.max_connections,
        limits.per_address(),
        config.backlog,
        limits.connection.max_line,
        limits.connection.idle_timeout,
        limits.connection.line_timeout,
        limits.grace,
    );

    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.metrics {
        let about = metrics::About {
            version: env!("CARGO_PKG_VERSION"),
            zone: zone.name.to_string(),
            tzdb: crate::server::tzdb::VERSION,
            limits,
        };
        serve_metrics(addr, metrics.clone(), about)?;
    }
    let reactor = Reactor::new().map_err(|e| Error::new(format!("cannot start the reactor: {e}")))?;
    let stats = thread::scope(|scope| {
        let done = Shutdown::new();
        for i in 1..threads {
            let (done, reactor) = (done.clone(), &reactor);
            thread::Builder::new()
                .name(format!("jam-worker-{i}"))
                .spawn_scoped(scope, move || reactor.block_on(done.wait()))
                .map_err(|e| Error::new(format!("cannot start worker thread: {e}")))?;
        }
        let serving = serve(&reactor, listener, Clock::new(zone), limits, shutdown, metrics);
        let stats = reactor.block_on(serving).map_err(|e| Error::new(format!("cannot serve: {e}")))?;
        done.trigger();
        Ok::<Stats, Error>(stats)
    })?;
    // Each reason under its own name: a flood from one address is not a full server.
    notice!(
        "stopped: served {} connection(s), refused {} busy and {} per address, cut off {}",
        stats.accepted,
        stats.refused - stats.refused_per_address,
        stats.refused_per_address,
        stats.cut_off
    );
    Ok(())
}

/// Serves the metrics page on `addr` from a thread of its own, for the life of the process.
fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>, about: metrics::About) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        Error::new(format!("cannot serve metrics on {addr}: {e}; choose another with --metrics ADDR"))
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let handler = move |request: &http::Request| match request.path.as_str() {
        "/metrics" => {
            http::Reply::ok("text/plain; version=0.0.4; charset=utf-8", metrics.render(&about).into_bytes())
        }
        "/" => http::Reply::ok("text/plain; charset=utf-8", &b"jam serve: metrics at /metrics\n"[..]),
        path => {
            http::Reply::error(http::Status::NotFound, format!("nothing at {path}; metrics are at /metrics"))
        }
    };
    http::serve(listener, "jam-metrics", Arc::new(handler))
        .map_err(|e| Error::new(format!("cannot start the metrics server: {e}")))?;
    notice!("metrics at http://{bound}/metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jam serve ARGS`'s settings, with no environment.
    fn serve(args: &[&str]) -> Config {
        let mut p = lexopt::Parser::from_args(args.iter().map(std::ffi::OsString::from));
        match config::parse(&mut p, &|_| None).unwrap() {
            crate::settings::Parsed::Run(c) => c,
            crate::settings::Parsed::Help => panic!("help"),
        }
    }

    #[test]
    fn the_protocol_doc_states_the_codes_replies_and_limits() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let errors = [
            protocol::RequestError::Unknown,
            protocol::RequestError::BareLf,
            protocol::RequestError::NotUtf8,
            protocol::RequestError::Control,
            protocol::RequestError::TooLong,
        ];
        let replies = errors.iter().map(|e| e.reply()).chain([
            protocol::BUSY,
            protocol::TOO_MANY_FROM_ADDRESS,
            protocol::IDLE_TIMEOUT,
            protocol::LINE_TIMEOUT,
            protocol::SHUTTING_DOWN,
        ]);
        for reply in replies {
            let text = std::str::from_utf8(reply.strip_suffix(b"\r\n").unwrap()).unwrap();
            assert!(doc.contains(&format!("`{text}`")), "docs/PROTOCOL.md does not show {text:?}");
        }
        // The limits table: "| `--flag`, VALUE [unit] |", each the flag's default.
        let plain = serve(&[]);
        let mut rows = 0;
        for cell in doc.split('|').map(str::trim).filter(|c| c.starts_with("`--")) {
            let (flag, value) = cell.split_once(", ").unwrap();
            let number = value.split_whitespace().next().unwrap();
            let flag = flag.trim_matches('`');
            if number == "half" {
                // A share, not a figure: the default is no fixed figure at all.
                assert_eq!(plain.limits.max_per_address, None, "PROTOCOL.md: {cell}");
                let shown = format!("({})", plain.limits.per_address());
                assert!(value.ends_with(&shown), "PROTOCOL.md: {cell} should end {shown}");
                rows += 1;
                continue;
            }
            assert_eq!(serve(&[flag, number]), plain, "PROTOCOL.md: {cell}");
            rows += 1;
        }
        assert_eq!(rows, 6, "the limits table has a row per limit");
        let prose = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let budget = format!("{} KiB of replies", connection::OUTPUT_BUDGET / 1024);
        assert!(prose.contains(&budget), "PROTOCOL.md should say {budget:?}");
        let linger = format!("up to {} s", connection::LINGER.as_secs());
        assert!(prose.contains(&linger), "PROTOCOL.md should say {linger:?}");
    }

    #[test]
    fn one_address_may_hold_half_the_places_unless_told() {
        assert_eq!(serve(&[]).limits.per_address(), DEFAULT_MAX_CONNECTIONS / 2);
        assert_eq!(serve(&["--max-connections", "100"]).limits.per_address(), 50);
        assert_eq!(serve(&["--max-connections", "1"]).limits.per_address(), 1);
        assert_eq!(serve(&["--max-per-address", "7"]).limits.per_address(), 7);
    }

    #[test]
    fn refusals_are_logged_once_an_interval_with_a_count_of_the_rest() {
        let mut log = RefusalLog { last: None, quiet: 0 };
        assert_eq!(log.due().as_deref(), Some(""));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        // An interval later: logged, with the two that were not.
        log.last = log.last.map(|last| last - REFUSAL_LOG_INTERVAL);
        assert_eq!(log.due().as_deref(), Some("; 2 more refused since the last such line"));
        assert_eq!(log.due(), None);
    }
}
