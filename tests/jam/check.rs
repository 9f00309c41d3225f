//! `jam check` graded against servers whose faults are known: jam itself (every check met), the
//! sheet's own final server, and tests/broken-server, each of whose faults must fail the check
//! that names it and only those that follow from it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jam::server::clock::Zone;
use jam::tools::check::{self, CheckArgs, Status};

use crate::support::{Reaped, TestServer, have, repo, require};

/// A server started from tests/broken-server, on the port it printed.
struct Python {
    _child: Reaped,
    addr: SocketAddr,
}

fn python(args: &[&str]) -> Option<Python> {
    if !require("python3 (tests/broken-server)", have("python3", "--version")) {
        return None;
    }
    let mut child = Command::new(repo().join("tests/broken-server"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tests/broken-server");
    let stdout = child.stdout.take().unwrap();
    let child = Reaped(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).parse().unwrap();
    Some(Python { _child: child, addr })
}

/// The checks that did not pass, each with its status.
fn not_passed(addr: SocketAddr) -> (BTreeSet<(&'static str, Status)>, check::Report) {
    let report = check::grade(addr, &Zone::utc(), &CheckArgs::default(), |_| {});
    let bad =
        report.outcomes.iter().filter(|o| o.status != Status::Pass).map(|o| (o.name, o.status)).collect();
    (bad, report)
}

fn fails(names: &[&'static str]) -> BTreeSet<(&'static str, Status)> {
    names.iter().map(|&n| (n, Status::Fail)).collect()
}

#[test]
fn jam_meets_every_check() {
    let server = TestServer::start(Default::default());
    let (bad, report) = not_passed(server.addr);
    assert!(bad.is_empty(), "{report:#?}");
    assert_eq!(report.outcomes.len(), 15);
    assert!(report.meets_the_sheet());
}

#[test]
fn a_correct_python_server_meets_every_check() {
    // The broken servers' common base: if it failed anything, the fault tests below would prove
    // nothing about their one fault.
    let Some(server) = python(&[]) else { return };
    let (bad, report) = not_passed(server.addr);
    assert!(bad.is_empty(), "{report:#?}");
}

/// Each fault, and the checks it must fail: the one that names it and those that follow.
const FAULTS: [(&str, &[&str]); 7] = [
    ("wrong-format", &["time-reply"]),
    ("lf-only", &["time-reply"]),
    // A connection closed after one reply cannot take a second request.
    ("close-after-first", &["many-requests", "many-clients", "joined-requests", "unknown-request"]),
    ("ignore-quit", &["quit-closes"]),
    // A client that stays connected blocks everyone behind it.
    ("one-at-a-time", &["second-client", "many-clients", "never-reads", "idle-crowd"]),
    // Framing by recv() has no lines: split and joined requests, and no line to be too long.
    ("one-recv", &["split-request", "joined-requests", "long-line"]),
    ("hour-off", &["time-current"]),
];

fn fault(name: &str) {
    let expected = FAULTS.iter().find(|(f, _)| *f == name).unwrap().1;
    let Some(server) = python(&["--fault", name]) else { return };
    let (bad, report) = not_passed(server.addr);
    assert_eq!(bad, fails(expected), "{name}: {report:#?}");
    let required_failed =
        report.outcomes.iter().any(|o| o.status == Status::Fail && o.level == check::Level::Required);
    assert_eq!(report.meets_the_sheet(), !required_failed);
}

/// The detail of check `name` in the report, which must be a failure.
fn failed(report: &check::Report, name: &str) -> String {
    let o = report.outcomes.iter().find(|o| o.name == name).unwrap();
    assert_eq!(o.status, Status::Fail, "{name}: {report:#?}");
    o.detail.clone()
}

/// A refusal is not a client served: a server that turns a client away while another is
/// connected (as `jam serve --max-connections 1` does) once passed second-client and idle-crowd,
/// whose ERROR line counted as a reply.
#[test]
fn a_refusal_is_not_a_served_reply() {
    let Some(server) = python(&["--fault", "busy-while-busy"]) else { return };
    let (_, report) = not_passed(server.addr);
    for name in ["second-client", "idle-crowd", "many-clients"] {
        let detail = failed(&report, name);
        assert!(
            detail.contains("\"ERROR server busy\\r\\n\": the server turned this client away"),
            "{name}: {detail}"
        );
    }
    assert!(!report.meets_the_sheet());
}

/// The first request goes to the first connection, alone: a server that leaves the first
/// client of its life waiting until another connects once passed everything.
#[test]
fn the_first_client_alone_is_asked_first() {
    let Some(server) = python(&["--fault", "first-waits"]) else { return };
    let (_, report) = not_passed(server.addr);
    let detail = failed(&report, "time-reply");
    assert!(detail.contains("the first client, alone, was not answered"), "{detail}");
}

/// An echo is not an answer: a server that sends unknown lines back once passed unknown-request
/// and bare-lf.
#[test]
fn an_echo_is_not_an_answer() {
    let Some(server) = python(&["--fault", "echo"]) else { return };
    let (bad, report) = not_passed(server.addr);
    assert_eq!(bad, fails(&["unknown-request", "bare-lf"]), "{report:#?}");
    for name in ["unknown-request", "bare-lf"] {
        assert!(failed(&report, name).contains("an echo of the request is not an answer"), "{report:#?}");
    }
}

/// A server that turns the checker itself away is reported as such, not as a reply that does
/// not begin with "JAM ".
#[test]
fn a_refused_checker_is_reported_as_refused() {
    let Some(server) = python(&["--fault", "refuse-all"]) else { return };
    let (_, report) = not_passed(server.addr);
    let detail = failed(&report, "time-reply");
    assert!(
        detail.contains("the server turned the checker away") && !detail.contains("must begin"),
        "{detail}"
    );
    assert!(failed(&report, "time-current").contains("the server refused the checker"));
}

#[test]
fn a_wrong_reply_format_fails_the_reply_check() {
    fault("wrong-format");
}

#[test]
fn lf_only_replies_fail_the_reply_check() {
    fault("lf-only");
}

#[test]
fn closing_after_the_first_reply_fails_the_checks_of_several_requests() {
    fault("close-after-first");
}

#[test]
fn ignoring_quit_fails_the_quit_check() {
    fault("ignore-quit");
}

#[test]
fn one_client_at_a_time_fails_the_concurrency_checks() {
    fault("one-at-a-time");
}

#[test]
fn one_recv_one_request_fails_the_framing_checks() {
    fault("one-recv");
}

#[test]
fn a_clock_an_hour_off_fails_the_time_check_and_names_the_offset() {
    fault("hour-off");
    let Some(server) = python(&["--fault", "hour-off"]) else { return };
    let (_, report) = not_passed(server.addr);
    let detail = &report.get("time-current").unwrap().detail;
    assert!(detail.contains("1 h ahead, as if the server's zone were UTC+01:00"), "{detail}");
}

/// A dead server still gets its whole report card, quickly enough that a class can be graded.
fn full_report_in_time(name: &str) {
    let Some(server) = python(&["--fault", name]) else { return };
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(["check", &server.addr.to_string(), "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = start.elapsed();
    eprintln!("jam check against a server that does {name}: {took:?}");
    // Generous: catches a check without a time limit, asserts no speed.
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert_eq!(out.status.code(), Some(1));
    let checks = statuses(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(checks.len(), 15, "{checks:?}");
    // A reset can come before the client has seen its connection open: then even `connect` fails.
    let connect = if name == "reset" { &["pass", "fail"][..] } else { &["pass"] };
    assert!(checks[0].0 == "connect" && connect.contains(&checks[0].1.as_str()), "{checks:?}");
    assert_eq!(checks[1], ("time-reply".to_string(), "fail".to_string()));
}

#[test]
fn a_server_that_hangs_gets_a_full_report() {
    full_report_in_time("hang");
}

#[test]
fn a_server_that_resets_every_connection_gets_a_full_report() {
    full_report_in_time("reset");
}

/// `(name, status)` of every check in `jam check --json`'s object.
fn statuses(json: &str) -> Vec<(String, String)> {
    json.split("{\"name\":\"")
        .skip(1)
        .map(|c| {
            let name = c.split('"').next().unwrap().to_string();
            let status = c.split("\"status\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
            (name, status)
        })
        .collect()
}

#[test]
fn the_sheets_server_fails_the_reply_format_and_the_framing() {
    let Some(server) = python(&["--sheet"]) else { return };
    let out = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(["check", &server.addr.to_string(), "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a required check fails: exit 1");
    let json = String::from_utf8(out.stdout).unwrap();
    let failed: BTreeSet<String> =
        statuses(&json).into_iter().filter(|(_, s)| s == "fail").map(|(n, _)| n).collect();
    // It echoes what it does not know: HELLO and a bare-LF line come back as they went.
    let expected =
        ["time-reply", "split-request", "joined-requests", "unknown-request", "bare-lf", "long-line"];
    assert_eq!(failed, expected.iter().map(|s| s.to_string()).collect(), "{json}");
    // It sends the date: the report says so, with the bytes it got.
    assert!(json.contains("(no date)"), "{json}");
    assert!(json.contains("\"meets_the_sheet\":false"), "{json}");
}

#[test]
fn the_binary_grades_jam_with_exit_0_and_rejects_bad_usage() {
    let server = TestServer::start(Default::default());
    let out = Command::new(env!("CARGO_BIN_EXE_jam"))
        .args(["check", &server.addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("  PASS  ")).count(), 15, "{text}");
    assert!(text.ends_with(
        "7 of 7 required and 8 of 8 recommended checks met: the server does what the sheet asks\n"
    ));
    let bad = Command::new(env!("CARGO_BIN_EXE_jam")).args(["check", "--bogus"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let bad =
        Command::new(env!("CARGO_BIN_EXE_jam")).args(["check", "--tz", "Nowhere/Special"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown time zone"));
}
