//! `jam serve --metrics`: the page as Prometheus sees it. A real Prometheus (Debian's package)
//! scrapes a real `jam serve`, and its HTTP API is asked for what the test made happen; promtool
//! checks the exposition format; and the page's HTTP side refuses what it should.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, HANG, Reaped, Served, have, require, serve, wait_for_line};

/// `jam serve ARGS --metrics 127.0.0.1:0`, and where its metrics page is.
fn serve_with_metrics(args: &[&str]) -> (Served, SocketAddr) {
    let mut all = args.to_vec();
    all.extend(["--metrics", "127.0.0.1:0"]);
    let s = serve(&all);
    let line = wait_for_line(&s.log, "metrics at http://");
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap();
    (s, addr)
}

/// GET `path` from `addr`: the status line and the body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// The value of sample `name` (labels included) on a metrics page.
fn sample(page: &str, name: &str) -> f64 {
    let line = page.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.unwrap_or_else(|| panic!("no {name} in\n{page}")).rsplit(' ').next().unwrap().parse().unwrap()
}

/// Requests of every kind, and one refusal, on a server with two places: one client holds
/// a place, another asks for the time twice and says HELLO, a third is told the server is busy,
/// and then the second quits. Time 3, quit 1, error 1; 2 served, 1 refused.
fn traffic(addr: SocketAddr) {
    let mut held = Client::connect(addr);
    held.time();
    let mut other = Client::connect(addr);
    other.send(b"TIME\r\nTIME\r\nHELLO\r\n");
    for _ in 0..3 {
        other.line();
    }
    let mut refused = Client::connect(addr);
    assert_eq!(refused.rest(), "ERROR server busy\r\n");
    other.send(b"QUIT\r\n");
    assert_eq!(other.rest(), "");
    std::mem::forget(held);
}

#[test]
fn the_page_counts_what_happened_in_prometheus_text_format() {
    let (s, metrics) = serve_with_metrics(&["--max-connections", "2", "--max-per-address", "2"]);
    traffic(s.addr);
    let (status, page) = get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{page}");
    assert_eq!(sample(&page, "jam_requests_total{kind=\"time\"}"), 3.0, "{page}");
    assert_eq!(sample(&page, "jam_requests_total{kind=\"quit\"}"), 1.0);
    assert_eq!(sample(&page, "jam_requests_total{kind=\"error\"}"), 1.0);
    assert_eq!(sample(&page, "jam_error_replies_total{reason=\"unknown\"}"), 1.0);
    assert_eq!(sample(&page, "jam_connections_refused_total{reason=\"busy\"}"), 1.0);
    assert_eq!(sample(&page, "jam_connections_accepted_total"), 2.0);
    // The one that quit is counted closed, and no longer open, once the server has finished
    // with it (the two a moment apart: its task counts the close, then ends).
    let deadline = Instant::now() + HANG;
    let mut page = page;
    while (sample(&page, "jam_closes_total{reason=\"quit\"}") < 1.0
        || sample(&page, "jam_connections_open") > 1.0)
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
        page = get(metrics, "/metrics").1;
    }
    assert_eq!(sample(&page, "jam_closes_total{reason=\"quit\"}"), 1.0);
    assert_eq!(sample(&page, "jam_connections_open"), 1.0, "the one still held");
    assert_eq!(sample(&page, "jam_limit_connections"), 2.0);
    assert_eq!(sample(&page, "jam_limit_per_address"), 2.0);
    assert!(page.contains("jam_build_info{version=\""), "{page}");
    if require("promtool (Debian's prometheus package)", have("promtool", "--version")) {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    }
    assert_eq!(get(metrics, "/nothing").0, "HTTP/1.1 404 Not Found");
    let (status, _) = {
        let mut c = TcpStream::connect(metrics).unwrap();
        c.set_read_timeout(Some(HANG)).unwrap();
        c.write_all(b"TIME\r\n\r\n").unwrap();
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        (r.lines().next().unwrap_or("").to_string(), r)
    };
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
}

/// A free port on loopback, for a program that must be told one (Prometheus).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What Prometheus's HTTP API says `query` is now: the first result's value, if any.
fn query(prometheus: SocketAddr, query: &str) -> Option<f64> {
    let encoded: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    // Not up yet: refused.
    TcpStream::connect(prometheus).ok()?;
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={encoded}"));
    if !status.contains("200") {
        return None;
    }
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[T,"V"]}]}}
    let value = body.split("\"value\":[").nth(1)?;
    value.split('"').nth(1)?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_jam() {
    if !require("prometheus (Debian's prometheus package)", have("prometheus", "--version")) {
        return;
    }
    let (s, metrics) = serve_with_metrics(&["--max-connections", "2", "--max-per-address", "2"]);
    traffic(s.addr);
    let dir = std::env::temp_dir().join(format!("jam-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(dir.clone());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: jam\n    static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Prometheus starts, scrapes every second, and answers from what it scraped.
    let deadline = Instant::now() + HANG * 3;
    let (mut requests, mut refused) = (None, None);
    while Instant::now() < deadline {
        requests = query(web, "jam_requests_total{kind=\"time\"}");
        refused = query(web, "jam_connections_refused_total{reason=\"busy\"}");
        if requests.is_some() && refused.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(requests, Some(3.0), "jam_requests_total{{kind=\"time\"}} as Prometheus scraped it");
    assert_eq!(refused, Some(1.0), "the refusal as Prometheus scraped it");
    assert_eq!(query(web, "up{job=\"jam\"}"), Some(1.0));
    assert_eq!(query(web, "sum(jam_requests_total)"), Some(5.0));
}
