//! What the server counts, for the people who run it: `jam serve --metrics ADDR` serves these
//! in Prometheus's text exposition format on `/metrics` ([`crate::http`] does the HTTP).
//!
//! The counters are plain atomics, added to where the event happens (the accept loop, each
//! connection's reads, writes, answers and close) with relaxed ordering: a scrape needs each
//! figure, not a consistent snapshot of all of them, and an uncontended relaxed add is a few
//! nanoseconds against the microseconds a request costs (`bench/ab`, docs/PERFORMANCE.md). They
//! are counted whether or not anyone scrapes them, so that the server has one code path.
//! docs/OPERATIONS.md describes each metric and the queries an operator wants.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::server::Limits;
use crate::server::connection::Closed;
use crate::server::protocol::{Answered, Flow, RequestError};

/// Why connections ended, as the metric's `reason` label names them: the same reasons the log
/// gives, in [`Closed`]'s order.
pub const CLOSE_REASONS: [&str; 9] = [
    "quit",
    "client_closed",
    "client_closed_mid_line",
    "line_too_long",
    "idle_timeout",
    "line_timeout",
    "stopped_reading",
    "shutdown",
    "error",
];

/// The server's counters. One per server, shared by the accept loop, every connection and the
/// metrics page.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections being served now (the refused are not counted).
    pub(crate) open: AtomicUsize,
    accepted: AtomicU64,
    refused_busy: AtomicU64,
    refused_per_address: AtomicU64,
    time_requests: AtomicU64,
    quit_requests: AtomicU64,
    errors: [AtomicU64; RequestError::ALL.len()],
    closes: [AtomicU64; CLOSE_REASONS.len()],
    received: AtomicU64,
    sent: AtomicU64,
}

/// Who is counting, for `jam_build_info` and the limits' gauges.
#[derive(Debug, Clone)]
pub struct About {
    /// jam's version.
    pub version: &'static str,
    /// The zone the replies are in.
    pub zone: String,
    /// The compiled-in zone database's version.
    pub tzdb: &'static str,
    /// The limits in force.
    pub limits: Limits,
}

impl Metrics {
    /// A client served.
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A client turned away: the server full, or (`per_address`) its address at its share.
    pub(crate) fn refused(&self, per_address: bool) {
        let counter = if per_address { &self.refused_per_address } else { &self.refused_busy };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes read from a client.
    pub(crate) fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes a client took.
    pub(crate) fn sent(&self, n: usize) {
        if n > 0 {
            self.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// What one call of the protocol answered.
    pub(crate) fn answered(&self, a: &Answered) {
        if a.times > 0 {
            self.time_requests.fetch_add(a.times as u64, Ordering::Relaxed);
        }
        let quit = a.flow == Flow::Quit;
        if quit {
            self.quit_requests.fetch_add(1, Ordering::Relaxed);
        }
        if a.lines > a.times + usize::from(quit) {
            for (counter, n) in self.errors.iter().zip(a.errors) {
                if n > 0 {
                    counter.fetch_add(u64::from(n), Ordering::Relaxed);
                }
            }
        }
    }

    /// A connection ended.
    pub(crate) fn closed(&self, why: &Closed) {
        self.closes[close_index(why)].fetch_add(1, Ordering::Relaxed);
    }

    /// Clients served and refused so far: (served, refused busy, refused per address); the
    /// server's stop line and [`Stats`](crate::server::Stats) are made of these.
    pub fn admissions(&self) -> (u64, u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused_busy.load(Ordering::Relaxed),
            self.refused_per_address.load(Ordering::Relaxed),
        )
    }

    /// Every metric, in Prometheus's text exposition format (version 0.0.4).
    pub fn render(&self, about: &About) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "jam_build_info",
            "gauge",
            "jam's version, the time zone of its replies and its zone database's version; always 1.",
            &[(
                &format!(
                    "{{version=\"{}\",zone=\"{}\",tzdb=\"{}\"}}",
                    label(about.version),
                    label(&about.zone),
                    label(about.tzdb)
                ),
                1,
            )],
        );
        family(
            "jam_connections_open",
            "gauge",
            "Connections being served now.",
            &[("", self.open.load(Ordering::Relaxed) as u64)],
        );
        family(
            "jam_connections_accepted_total",
            "counter",
            "Connections served.",
            &[("", get(&self.accepted))],
        );
        family(
            "jam_connections_refused_total",
            "counter",
            "Connections turned away with one ERROR line: the server full (busy), or the client's address at its share (per_address).",
            &[
                ("{reason=\"busy\"}", get(&self.refused_busy)),
                ("{reason=\"per_address\"}", get(&self.refused_per_address)),
            ],
        );
        let errors: u64 = self.errors.iter().map(get).sum();
        family(
            "jam_requests_total",
            "counter",
            "Request lines answered, by kind: time, quit, or error (a line that is not a request).",
            &[
                ("{kind=\"time\"}", get(&self.time_requests)),
                ("{kind=\"quit\"}", get(&self.quit_requests)),
                ("{kind=\"error\"}", errors),
            ],
        );
        let by_reason: Vec<(String, u64)> = RequestError::ALL
            .iter()
            .zip(&self.errors)
            .map(|(e, c)| (format!("{{reason=\"{}\"}}", e.label()), get(c)))
            .collect();
        let by_reason: Vec<(&str, u64)> = by_reason.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(
            "jam_error_replies_total",
            "counter",
            "ERROR replies to request lines, by reason.",
            &by_reason,
        );
        let closes: Vec<(String, u64)> = CLOSE_REASONS
            .iter()
            .zip(&self.closes)
            .map(|(r, c)| (format!("{{reason=\"{r}\"}}"), get(c)))
            .collect();
        let closes: Vec<(&str, u64)> = closes.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(
            "jam_closes_total",
            "counter",
            "Served connections ended, by reason (as the log names them).",
            &closes,
        );
        family(
            "jam_received_bytes_total",
            "counter",
            "Bytes read from clients.",
            &[("", get(&self.received))],
        );
        family("jam_sent_bytes_total", "counter", "Bytes of replies clients took.", &[("", get(&self.sent))]);
        let l = &about.limits;
        family(
            "jam_limit_connections",
            "gauge",
            "--max-connections: connections served at once.",
            &[("", l.max_connections as u64)],
        );
        family(
            "jam_limit_per_address",
            "gauge",
            "--max-per-address: connections one client address may hold.",
            &[("", l.per_address() as u64)],
        );
        family(
            "jam_limit_line_bytes",
            "gauge",
            "--max-line: the longest request line, CR LF included.",
            &[("", l.connection.max_line as u64)],
        );
        family(
            "jam_limit_idle_timeout_seconds",
            "gauge",
            "--idle-timeout.",
            &[("", l.connection.idle_timeout.as_secs())],
        );
        family(
            "jam_limit_line_timeout_seconds",
            "gauge",
            "--line-timeout.",
            &[("", l.connection.line_timeout.as_secs())],
        );
        out
    }
}

fn close_index(why: &Closed) -> usize {
    match why {
        Closed::Quit => 0,
        Closed::ByClient => 1,
        Closed::ByClientMidLine => 2,
        Closed::TooLong => 3,
        Closed::IdleTimeout => 4,
        Closed::LineTimeout => 5,
        Closed::StoppedReading => 6,
        Closed::Shutdown => 7,
        Closed::Error(_) => 8,
    }
}

/// A label's value as the format asks: backslash, quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::{DEFAULT_MAX_LINE, respond};

    fn about() -> About {
        About { version: "0.1.0", zone: "Asia/Jakarta".into(), tzdb: "2025b", limits: Limits::default() }
    }

    /// The value of the sample `name` (labels included) in `text`.
    fn sample(text: &str, name: &str) -> u64 {
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        line.unwrap_or_else(|| panic!("no {name} in\n{text}")).rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn what_is_counted_is_what_is_shown() {
        let m = Metrics::default();
        m.accepted();
        m.accepted();
        m.refused(false);
        m.refused(true);
        m.refused(true);
        let mut out = Vec::new();
        let noon = crate::server::protocol::WallTime { hour: 12, minute: 0, second: 0 };
        let a =
            respond(b"TIME\r\nTIME\r\nHELLO\r\nTIME\nQUIT\r\n", noon, DEFAULT_MAX_LINE, 1 << 16, &mut out);
        m.answered(&a);
        m.received(30);
        m.sent(out.len());
        m.closed(&Closed::Quit);
        m.closed(&Closed::IdleTimeout);
        let text = m.render(&about());
        assert_eq!(sample(&text, "jam_connections_accepted_total"), 2);
        assert_eq!(sample(&text, "jam_connections_refused_total{reason=\"busy\"}"), 1);
        assert_eq!(sample(&text, "jam_connections_refused_total{reason=\"per_address\"}"), 2);
        assert_eq!(sample(&text, "jam_requests_total{kind=\"time\"}"), 2);
        assert_eq!(sample(&text, "jam_requests_total{kind=\"quit\"}"), 1);
        assert_eq!(sample(&text, "jam_requests_total{kind=\"error\"}"), 2);
        assert_eq!(sample(&text, "jam_error_replies_total{reason=\"unknown\"}"), 1);
        assert_eq!(sample(&text, "jam_error_replies_total{reason=\"bare_lf\"}"), 1);
        assert_eq!(sample(&text, "jam_closes_total{reason=\"quit\"}"), 1);
        assert_eq!(sample(&text, "jam_closes_total{reason=\"idle_timeout\"}"), 1);
        assert_eq!(sample(&text, "jam_received_bytes_total"), 30);
        assert_eq!(sample(&text, "jam_sent_bytes_total"), out.len() as u64);
        assert_eq!(sample(&text, "jam_limit_per_address"), 5000);
        assert!(text.contains("jam_build_info{version=\"0.1.0\",zone=\"Asia/Jakarta\",tzdb=\"2025b\"} 1"));
        // Every family has its HELP and TYPE, and every sample line a family.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(families.len(), 14);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(families.iter().any(|f| line.starts_with(f)), "{line}");
        }
    }

    #[test]
    fn the_operations_doc_names_every_metric_and_reason() {
        let doc = include_str!("../../docs/OPERATIONS.md");
        let text = Metrics::default().render(&about());
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = family.split(' ').next().unwrap();
            assert!(doc.contains(&format!("`{name}")), "docs/OPERATIONS.md does not describe {name}");
        }
        for reason in CLOSE_REASONS.iter().chain(RequestError::ALL.map(RequestError::label).iter()) {
            assert!(
                doc.contains(&format!("`{reason}`")),
                "docs/OPERATIONS.md does not name the reason {reason}"
            );
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
