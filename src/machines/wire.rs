//! `jam wire`: the namespace lab's network, an Ethernet switch in user space with delay, jitter,
//! loss and rate limits on each machine's link.
//!
//! Why not a kernel bridge and `tc netem`: many kernels that people run labs on (container
//! hosts, micro-VMs, this project's CI machines) are built without `sch_netem`, and then no
//! delay can be had at all. A switch of our own behaves the same on every kernel. Each port is a
//! TAP interface that `deploy/netns/lab` moves into a machine's namespace as its `eth0`; the
//! switch learns MAC addresses and floods unknown ones, as a bridge does.
//!
//! An impairment applies to the frames a machine sends, like netem on that machine's interface.
//! Each frame's departure time is computed when it arrives (rate limit, then delay plus a uniform
//! jitter) and frames leave in order, so jitter delays without reordering. The impairments are
//! read from a file, again on SIGHUP; SIGTERM or SIGINT stop the switch, and its interfaces go
//! with it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use nix::sys::signal::Signal;

use crate::Error;
use crate::settings::{Parsed, text, usage};

/// Frames waiting on one link, at most; more are dropped, as netem's default `limit 1000`.
pub const QUEUE_LIMIT: usize = 1000;
/// Largest frame read from a TAP interface (MTU 1500 plus the Ethernet header, with room).
const MAX_FRAME: usize = 2048;

/// What is done to the frames one machine sends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Added to every frame's departure.
    pub delay: Duration,
    /// Each frame's delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    /// Percent of frames dropped.
    pub loss: f64,
    /// Bits per second; 0 for no limit.
    pub rate: u64,
}

impl Impairment {
    /// Parses the words after a machine's name: `delay MS`, `jitter MS`, `loss PCT`,
    /// `rate RATE` (`1mbit`, `500kbit`, bits per second), in any order.
    pub fn parse(words: &[&str]) -> Result<Impairment, String> {
        let mut imp = Impairment::default();
        let mut it = words.iter();
        while let Some(&key) = it.next() {
            let value = it.next().ok_or_else(|| format!("{key} needs a value"))?;
            let number = decimal;
            match key {
                "delay" | "jitter" => {
                    let ms = number(value.trim_end_matches("ms"))
                        .ok_or_else(|| format!("{key} {value}: expected milliseconds"))?;
                    let d = Duration::from_secs_f64(ms / 1000.0);
                    if key == "delay" { imp.delay = d } else { imp.jitter = d }
                }
                "loss" => {
                    imp.loss = number(value.trim_end_matches('%'))
                        .filter(|p| *p <= 100.0)
                        .ok_or_else(|| format!("loss {value}: expected a percentage from 0 to 100"))?;
                }
                "rate" => {
                    imp.rate =
                        parse_rate(value).ok_or_else(|| format!("rate {value}: expected e.g. 1mbit"))?
                }
                other => {
                    return Err(format!(
                        "unknown impairment {other:?}: expected delay, jitter, loss or rate"
                    ));
                }
            }
        }
        Ok(imp)
    }
}

fn parse_rate(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (number, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n.to_string(), *scale)))
        .unwrap_or((lower.clone(), 1.0));
    let bits = decimal(&number)? * scale;
    (bits >= 1.0 && bits.is_finite()).then_some(bits as u64)
}

/// A number such as `20`, `0.5` or `.25`, not negative. Parsed by hand: the standard library's
/// float parser would add 15 KB to the binary for these few settings.
fn decimal(s: &str) -> Option<f64> {
    let (whole, part) = s.split_once('.').unwrap_or((s, ""));
    let digits = || whole.bytes().chain(part.bytes());
    // Fifteen digits are exact in an f64.
    if whole.len() + part.len() == 0 || whole.len() + part.len() > 15 || !digits().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n = digits().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    Some(n as f64 / 10f64.powi(part.len() as i32))
}

/// Reads an impairment file: one line per machine, `NAME [delay MS] [jitter MS] [loss PCT]
/// [rate RATE]`; `#` starts a comment. Machines not named are not impaired.
pub fn parse_impairments(text: &str) -> Result<HashMap<String, Impairment>, String> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split('#').next().unwrap_or("").split_whitespace().collect();
        if let Some((name, rest)) = words.split_first() {
            let imp = Impairment::parse(rest).map_err(|e| format!("line {}: {e}", n + 1))?;
            map.insert(name.to_string(), imp);
        }
    }
    Ok(map)
}

/// Settings of `jam wire`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireArgs {
    /// TAP interfaces to create, one per machine.
    pub ports: Vec<String>,
    /// The file of impairments, read at start and on SIGHUP.
    pub impairments: Option<PathBuf>,
}

struct Port {
    name: String,
    tap: File,
    impairment: RwLock<Impairment>,
}

/// A frame on its way: when it leaves and where to.
struct InFlight {
    due: Instant,
    frame: Vec<u8>,
    to: Option<usize>,
}

/// Runs the switch until SIGTERM or SIGINT.
pub fn run(args: &WireArgs) -> Result<(), Error> {
    let signals = crate::sys::block_signals(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP])?;
    let ports: Vec<Arc<Port>> = args
        .ports
        .iter()
        .map(|name| {
            let tap = crate::sys::open_tap(name).map_err(|e| {
                Error::new(format!("cannot create TAP interface {name}: {e} (root is needed)"))
            })?;
            Ok(Arc::new(Port { name: name.clone(), tap, impairment: RwLock::new(Impairment::default()) }))
        })
        .collect::<Result<_, Error>>()?;
    let ports = Arc::new(ports);
    load(&ports, args)?;
    let macs: Arc<Mutex<HashMap<[u8; 6], usize>>> = Arc::default();
    for index in 0..ports.len() {
        let (tx, rx) = sync_channel(QUEUE_LIMIT);
        let (p, m) = (ports.clone(), macs.clone());
        thread::Builder::new()
            .name(format!("wire-in-{}", ports[index].name))
            .spawn(move || receive(&p, index, &m, &tx))
            .map_err(|e| Error::new(format!("cannot start the switch thread: {e}")))?;
        let p = ports.clone();
        thread::Builder::new()
            .name(format!("wire-out-{}", ports[index].name))
            .spawn(move || deliver(&p, index, &rx))
            .map_err(|e| Error::new(format!("cannot start the switch thread: {e}")))?;
    }
    // Status lines only: the lab's network stays up even if nobody reads them any more (a closed
    // stdout), so a failed write is not a reason to stop switching.
    let status = |line: String| {
        let _ = crate::print(&line);
    };
    status(format!("jam wire: ports {} ready\n", args.ports.join(", ")));
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => match load(&ports, args) {
                Ok(()) => status("jam wire: impairments reloaded\n".into()),
                Err(e) => eprintln!("jam: {e}; keeping the previous impairments"),
            },
            Ok(signal) => {
                status(format!("jam wire: received {signal}: stopping\n"));
                return Ok(());
            }
            Err(e) => return Err(Error::new(format!("waiting for signals: {e}"))),
        }
    }
}

fn load(ports: &[Arc<Port>], args: &WireArgs) -> Result<(), Error> {
    let Some(path) = &args.impairments else { return Ok(()) };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::new(format!("cannot read {}: {e}", path.display()))),
    };
    let map = parse_impairments(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    for port in ports {
        *port.impairment.write().unwrap() = map.get(&port.name).copied().unwrap_or_default();
    }
    Ok(())
}

/// Reads frames from one port, applies its impairment and queues them for delivery.
fn receive(
    ports: &[Arc<Port>],
    index: usize,
    macs: &Mutex<HashMap<[u8; 6], usize>>,
    tx: &SyncSender<InFlight>,
) {
    let port = &ports[index];
    let mut buf = vec![0u8; MAX_FRAME];
    let (mut link_free, mut last_due) = (Instant::now(), Instant::now());
    loop {
        let n = match (&port.tap).read(&mut buf) {
            Ok(n) if n >= 14 => n,
            Ok(_) => continue,
            Err(_) => return,
        };
        let frame = &buf[..n];
        let dst: [u8; 6] = frame[0..6].try_into().unwrap();
        let src: [u8; 6] = frame[6..12].try_into().unwrap();
        let to = {
            let mut table = macs.lock().unwrap();
            if src[0] & 1 == 0 {
                table.insert(src, index);
            }
            table.get(&dst).copied().filter(|&to| to != index)
        };
        let imp = *port.impairment.read().unwrap();
        if imp.loss > 0.0 && fastrand::f64() * 100.0 < imp.loss {
            continue;
        }
        let now = Instant::now();
        if imp.rate > 0 {
            let serialise = Duration::from_secs_f64(n as f64 * 8.0 / imp.rate as f64);
            link_free = link_free.max(now) + serialise;
        } else {
            link_free = now;
        }
        let jitter = imp.jitter.as_secs_f64() * (fastrand::f64() * 2.0 - 1.0);
        let delay = Duration::from_secs_f64((imp.delay.as_secs_f64() + jitter).max(0.0));
        let due = (link_free + delay).max(last_due);
        last_due = due;
        // A full queue drops the frame, as an overflowing link does.
        let _ = tx.try_send(InFlight { due, frame: frame.to_vec(), to });
    }
}

/// Writes one port's frames out when they are due, to their port or to all others.
fn deliver(ports: &[Arc<Port>], from: usize, rx: &Receiver<InFlight>) {
    while let Ok(f) = rx.recv() {
        let wait = f.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        for (i, port) in ports.iter().enumerate() {
            if i != from && f.to.is_none_or(|to| to == i) {
                // A port whose machine is gone or whose queue is full loses the frame.
                let _ = (&port.tap).write(&f.frame);
            }
        }
    }
}

// The command line: arguments, help and parser.

/// `jam wire --help`.
pub fn help() -> String {
    "jam wire: a user-space Ethernet switch with impairments, for the network-namespace lab

Usage: jam wire [OPTIONS] PORT...

Creates one TAP interface per PORT and switches frames between them, applying to the frames
each port sends the impairment its line in the file gives (delay, jitter, loss, rate), like
netem, which many kernels lack. deploy/netns/lab runs it; see deploy/netns/README.md. Needs root
(CAP_NET_ADMIN). SIGHUP rereads the file; SIGTERM or SIGINT stop it.

Options:
      --impairments FILE  lines of NAME [delay MS] [jitter MS] [loss PCT] [rate RATE]
  -h, --help              print this help
"
    .into()
}

/// Parses `jam wire`'s arguments.
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<WireArgs>, Error> {
    let mut args = WireArgs { ports: Vec::new(), impairments: None };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("impairments") => args.impairments = Some(text(p)?.into()),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => args.ports.push(v.string().map_err(usage)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    if args.ports.len() < 2 {
        return Err(Error::usage("jam wire needs at least two ports to switch between"));
    }
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impairments_parse_like_netem() {
        let i =
            Impairment::parse(&["delay", "100", "jitter", "10ms", "loss", "20%", "rate", "1mbit"]).unwrap();
        assert_eq!(i.delay, Duration::from_millis(100));
        assert_eq!(i.jitter, Duration::from_millis(10));
        assert_eq!((i.loss, i.rate), (20.0, 1_000_000));
        assert_eq!(Impairment::parse(&[]).unwrap(), Impairment::default());
        assert_eq!(parse_rate("500kbit"), Some(500_000));
        assert_eq!(parse_rate("2Gbit"), Some(2_000_000_000));
        assert_eq!(parse_rate("9600"), Some(9600));
        assert_eq!(parse_rate("1.5mbit"), Some(1_500_000));
        let i = Impairment::parse(&["delay", "0.5ms", "loss", "0.25%"]).unwrap();
        assert_eq!((i.delay, i.loss), (Duration::from_micros(500), 0.25));
    }

    #[test]
    fn decimals_are_plain_digits_with_one_point() {
        assert_eq!(decimal("20"), Some(20.0));
        assert_eq!(decimal("0.5"), Some(0.5));
        assert_eq!(decimal(".25"), Some(0.25));
        assert_eq!(decimal("7."), Some(7.0));
        for bad in ["", ".", "-1", "1e3", "1.2.3", "inf", "NaN", " 1", "1234567890123456"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_impairments_say_what_is_wrong() {
        assert!(Impairment::parse(&["delay"]).unwrap_err().contains("needs a value"));
        assert!(Impairment::parse(&["loss", "120"]).unwrap_err().contains("0 to 100"));
        assert!(Impairment::parse(&["latency", "5"]).unwrap_err().contains("unknown impairment"));
        assert!(Impairment::parse(&["rate", "fast"]).is_err());
        assert!(Impairment::parse(&["delay", "-5"]).is_err());
    }

    #[test]
    fn impairment_files_name_machines() {
        let map = parse_impairments("# lab\nmesin1 delay 100\n\nmesin2 loss 5 # flaky\n").unwrap();
        assert_eq!(map["mesin1"].delay, Duration::from_millis(100));
        assert_eq!(map["mesin2"].loss, 5.0);
        assert!(!map.contains_key("mesin3"));
        assert!(parse_impairments("mesin1 delay x").unwrap_err().starts_with("line 1:"));
    }
}
