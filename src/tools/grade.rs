//! `jam grade`: a class's servers, each run in a sandbox and graded by `jam check`'s own checks,
//! into one gradebook (CSV, JSON and a self-contained HTML page).
//!
//! Each submission (a folder per student, or a server file) runs as untrusted code, in
//! bubblewrap (Debian's `bubblewrap`, the sandbox Flatpak uses):
//! - as a user of its own (uid 200000 up, no account), dropped to by `setpriv` before the
//!   sandbox is entered (bubblewrap run by root maps its user back to root outside), and niced
//!   below the grader;
//! - in namespaces of its own: a network with loopback alone (no route to the host, the lab or
//!   anywhere), processes (everything it starts dies with it, a fork that ignores SIGTERM too),
//!   IPC, UTS, users;
//! - the system and the submission read-only, a private `/tmp`, one scratch folder writable;
//! - limits (`prlimit`): processes and threads, address space, CPU time, open files; and a
//!   wall-clock limit kept here.
//!
//! The grader joins the sandbox's network namespace from a thread of its own (`setns`), so that
//! the checks reach the server at 127.0.0.1 as a student's own test would, while the grader
//! itself stays outside the sandbox. That needs root (CAP_SYS_ADMIN), which `jam grade` asks for.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use nix::sched::CloneFlags;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, posix_spawnp};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{MsgFlags, recv, setsockopt, sockopt};
use nix::sys::time::TimeVal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::packets::pcap::{Link, Writer};
use crate::packets::{self, filter, flow};
use crate::server::clock::Zone;
use crate::server::protocol::DEFAULT_PORT;
use crate::settings::{self, Env, Parsed, text, usage, value};
use crate::tools::capture::now_ns;
use crate::tools::check::{self, CheckArgs, Level, Report, Status};
use crate::tools::client::Target;
use crate::{Error, json_string, sys};

/// How long a server has to listen on its port after it starts.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The most one student's grading may take, start to stop; past it, the server is killed.
pub const DEFAULT_WALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Processes and threads one server may run (a thread per client; the checks hold 65 at once).
pub const MAX_PROCESSES: u32 = 256;
/// The address space one server may map: 2 GiB, room for a thread per client with Python's 8 MiB
/// stacks while the checks hold 65 connections at once (at 1 GiB, idle-crowd failed correct
/// servers), and a bound on a server that allocates without end.
pub const MAX_ADDRESS_SPACE: u64 = 2 << 30;
/// The CPU time one server may use.
pub const MAX_CPU_SECONDS: u32 = 60;
/// Open files one server may hold.
pub const MAX_OPEN_FILES: u32 = 1024;
/// Arrows of a failing check's session drawn in the gradebook, at most.
const MAX_ARROWS: usize = 24;
/// Lines of a server's output kept for a student whose server did not start.
const LAST_LINES: usize = 40;
/// The sandboxes' users: one of their own each, from here up (no account has them). One user for
/// all would share the process limit across students, so that one student's fork bomb would
/// starve the others' threads: the kernel counts a user's processes in every namespace at once.
const FIRST_UID: u32 = 200_000;

/// Settings of `jam grade`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradeArgs {
    /// The submissions: folders (one per student) or server files.
    pub submissions: Vec<PathBuf>,
    /// Where the gradebook goes.
    pub out: PathBuf,
    /// Students graded at once.
    pub parallel: usize,
    /// The zone replies are expected in.
    pub zone: String,
    /// The port the servers listen on.
    pub port: u16,
    /// The interpreter that runs a server file.
    pub python: String,
    /// How long a server has to listen.
    pub start_timeout: Duration,
    /// The most one student's grading may take.
    pub wall_timeout: Duration,
}

/// One student's grade.
#[derive(Debug)]
struct Graded {
    id: String,
    file: String,
    seconds: f64,
    /// The report, if the server started.
    report: Option<Report>,
    /// Why it was not graded: did not start, did not listen.
    problem: Option<String>,
    /// The server's last lines of output.
    last_lines: Vec<String>,
    /// For each failing check, a flow diagram (SVG) of one of its sessions, as captured.
    flows: Vec<(&'static str, String)>,
}

/// A submission: who, which folder, which file in it.
#[derive(Debug, Clone)]
struct Submission {
    id: String,
    folder: PathBuf,
    file: String,
}

/// `jam grade`.
pub fn run(args: &GradeArgs) -> Result<(), Error> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(Error::new(
            "jam grade needs root: it runs each server as a user of its own in a sandbox, and joins the \
             sandbox's network to grade it (sudo jam grade ...)",
        ));
    }
    for (tool, package) in [("bwrap", "bubblewrap"), ("setpriv", "util-linux"), ("prlimit", "util-linux")] {
        if !on_path(tool) {
            return Err(Error::new(format!("jam grade needs {tool} (apt-get install {package})")));
        }
    }
    let zone = Zone::named(&args.zone)?;
    let submissions = args.submissions.iter().map(|p| submission(p)).collect::<Result<Vec<_>, _>>()?;
    if submissions.is_empty() {
        return Err(Error::usage("jam grade needs submissions: jam grade FOLDER... or FILE..."));
    }
    fs::create_dir_all(&args.out)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", args.out.display())))?;
    let scratch = std::env::temp_dir().join(format!("jam-grade-{}", std::process::id()));
    fs::create_dir_all(&scratch)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", scratch.display())))?;
    let started =
        jiff::Timestamp::try_from(std::time::SystemTime::now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    eprintln!(
        "jam grade: {} submission(s), {} at a time, port {}, replies expected in {}; gradebook in {}",
        submissions.len(),
        args.parallel,
        args.port,
        zone.name,
        args.out.display()
    );
    let queue = Arc::new(Mutex::new(submissions.clone().into_iter().enumerate().collect::<Vec<_>>()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let total = submissions.len();
    thread::scope(|s| {
        for _ in 0..args.parallel.clamp(1, total) {
            let (queue, results, zone, scratch) = (queue.clone(), results.clone(), &zone, &scratch);
            s.spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((index, sub)) = next else { break };
                    let graded = grade_one(&sub, FIRST_UID + index as u32, args, zone, scratch);
                    let mut done = results.lock().unwrap_or_else(|e| e.into_inner());
                    done.push((index, graded));
                    eprintln!("[{}/{total}] {}", done.len(), progress(&done.last().unwrap().1));
                }
            });
        }
    });
    let _ = fs::remove_dir_all(&scratch);
    let mut results = Arc::try_unwrap(results)
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    let graded: Vec<Graded> = results.into_iter().map(|(_, g)| g).collect();
    let book = Book { graded: &graded, zone: &zone.name, port: args.port, at: started.to_string() };
    for (name, text) in
        [("gradebook.csv", book.csv()), ("gradebook.json", book.json()), ("gradebook.html", book.html())]
    {
        let path = args.out.join(name);
        fs::write(&path, text).map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
    }
    let met = graded.iter().filter(|g| g.report.as_ref().is_some_and(Report::meets_the_sheet)).count();
    eprintln!(
        "jam grade: {} graded, {met} meet the sheet; wrote {}/gradebook.csv, .json and .html",
        graded.len(),
        args.out.display()
    );
    Ok(())
}

/// The progress line of one student.
fn progress(g: &Graded) -> String {
    match (&g.report, &g.problem) {
        (Some(r), _) => format!("{}: {} ({:.1} s)", g.id, r.summary(), g.seconds),
        (None, Some(p)) => format!("{}: not graded: {p} ({:.1} s)", g.id, g.seconds),
        (None, None) => format!("{}: not graded ({:.1} s)", g.id, g.seconds),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// A submission from a path: a server file, or a folder with one (its only `.py` file, else its
/// only `server*.py`). The student's id is the folder's name or the file's stem.
fn submission(path: &Path) -> Result<Submission, Error> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = fs::metadata(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Submission { id, folder: absolute(folder)?, file: name(path) });
    }
    let mut py: Vec<String> = fs::read_dir(path)
        .map_err(|e| Error::new(format!("{}: {e}", path.display())))?
        .filter_map(|e| e.ok())
        .map(|e| name(&e.path()))
        .filter(|n| n.ends_with(".py"))
        .collect();
    py.sort();
    let servers: Vec<&String> = py.iter().filter(|n| n.starts_with("server")).collect();
    let file = match (py.len(), servers.len()) {
        (1, _) => py[0].clone(),
        (_, 1) => servers[0].clone(),
        (0, _) => return Err(Error::new(format!("{}: no .py file to run", path.display()))),
        _ => {
            return Err(Error::new(format!(
                "{}: cannot tell which file is the server ({}); name it server.py, or give the file",
                path.display(),
                py.join(", ")
            )));
        }
    };
    Ok(Submission { id: name(path), folder: absolute(path)?, file })
}

fn absolute(p: &Path) -> Result<PathBuf, Error> {
    fs::canonicalize(p).map_err(|e| Error::new(format!("{}: {e}", p.display())))
}

/// Runs one student's server in its sandbox, grades it, and stops it.
fn grade_one(sub: &Submission, uid: u32, args: &GradeArgs, zone: &Zone, scratch: &Path) -> Graded {
    let start = Instant::now();
    let mut graded = Graded {
        id: sub.id.clone(),
        file: sub.file.clone(),
        seconds: 0.0,
        report: None,
        problem: None,
        last_lines: Vec::new(),
        flows: Vec::new(),
    };
    let home = scratch.join(&sub.id);
    let log = scratch.join(format!("{}.log", sub.id));
    let outcome = (|| -> Result<Checked, String> {
        fs::create_dir_all(&home).map_err(|e| format!("scratch folder: {e}"))?;
        nix::unistd::chown(&home, Some(uid.into()), Some(uid.into()))
            .map_err(|e| format!("scratch folder: {e}"))?;
        let output = fs::File::create(&log).map_err(|e| format!("output file: {e}"))?;
        let mut sandbox = Sandbox::start(sub, uid, args, &home, &output)?;
        let result = sandbox.grade(args, zone);
        sandbox.stop();
        result
    })();
    match outcome {
        Ok(Checked { report, marks, capture }) => {
            graded.flows = flows(&report, &marks, &capture, args.port);
            graded.report = Some(report);
        }
        Err(problem) => graded.problem = Some(problem),
    }
    let mut output = String::new();
    if let Ok(mut f) = fs::File::open(&log) {
        let _ = f.read_to_string(&mut output);
    }
    let lines: Vec<&str> = output.lines().collect();
    graded.last_lines =
        lines[lines.len().saturating_sub(LAST_LINES)..].iter().map(|l| l.to_string()).collect();
    graded.seconds = start.elapsed().as_secs_f64();
    graded
}

/// What grading in the sandbox gave: the report, when each check ended (nanoseconds since
/// 1970), and the capture of the exchange (a pcap file in memory).
struct Checked {
    report: Report,
    marks: Vec<(&'static str, i64)>,
    capture: Vec<u8>,
}

/// For each check that failed, the diagram of its first session in the capture: the sessions
/// that began between the end of the check before it and its own end.
fn flows(
    report: &Report,
    marks: &[(&'static str, i64)],
    capture: &[u8],
    port: u16,
) -> Vec<(&'static str, String)> {
    let Ok(frames) = packets::pcap::read(capture) else { return Vec::new() };
    let Some(first) = frames.first().map(|f| f.time_ns) else { return Vec::new() };
    let Ok(mut sessions) = packets::sessions(&frames, port, |_| true) else { return Vec::new() };
    // Only the checks' own connections, from their SYN: not the end of the one that found the
    // server listening.
    sessions.retain(|(_, s)| s.arrows.first().is_some_and(|a| a.flags & packets::decode::flag::SYN != 0));
    let mut out = Vec::new();
    for (i, &(name, end)) in marks.iter().enumerate() {
        let start = if i == 0 { i64::MIN } else { marks[i - 1].1 };
        if report.get(name).is_none_or(|o| o.status == Status::Pass) {
            continue;
        }
        let began = |s: &flow::Session| s.arrows.first().map_or(i64::MIN, |a| first + a.time_ns);
        // A session begun in the check's time, else the one it used that was already open (the
        // first request goes to the connection the connect check opened).
        let found = sessions
            .iter()
            .find(|(_, s)| (start..end).contains(&began(s)))
            .or_else(|| sessions.iter().rev().find(|(_, s)| began(s) < end));
        if let Some((n, session)) = found {
            // The start of the exchange is what shows the fault; a flood (long-line sends 32 KiB)
            // would make a picture of hundreds of arrows.
            let mut shown = session.clone();
            shown.arrows.truncate(MAX_ARROWS);
            out.push((name, flow::svg(&[(*n, &shown)])));
        }
    }
    out
}

/// A capture of the sandbox's loopback, on the grader's side: a packet socket made in the
/// sandbox's network, read by a thread of its own into an in-memory pcap file.
struct Tap {
    stop: Arc<std::sync::atomic::AtomicBool>,
    reader: thread::JoinHandle<Vec<u8>>,
}

impl Tap {
    /// Starts capturing `port` on this thread's network's loopback; `None` if it cannot.
    fn start(port: u16) -> Option<Tap> {
        let lo = nix::net::if_::if_nametoindex("lo").ok()?;
        let program = filter::tcp_port_program(14, port, Some(lo));
        let sock = sys::packet_socket(false, lo, &program).ok()?;
        setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).ok()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until = stop.clone();
        let mut pcap = Writer::new(Vec::new(), Link::Ethernet, filter::KEEP).ok()?;
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 65_536 + 64];
            while !until.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                    let _ = pcap.push(now_ns(), n as u32, &buf[..n.min(buf.len())]);
                }
            }
            pcap.written().cloned().unwrap_or_default()
        });
        Some(Tap { stop, reader })
    }

    /// Ends the capture: the pcap file.
    fn finish(self) -> Vec<u8> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.reader.join().unwrap_or_default()
    }
}

/// A server running in its sandbox.
struct Sandbox {
    /// The sandbox's process outside (bubblewrap, once prlimit and setpriv have exec'd it).
    outer: Pid,
    /// How it ended, once it has.
    ended: Option<String>,
    /// The process inside, in the sandbox's namespaces (bubblewrap's first child).
    inside: Pid,
    started: Instant,
}

impl Sandbox {
    fn start(
        sub: &Submission,
        uid: u32,
        args: &GradeArgs,
        home: &Path,
        output: &fs::File,
    ) -> Result<Sandbox, String> {
        let folder = sub.folder.to_string_lossy().into_owned();
        let home = home.to_string_lossy().into_owned();
        let words: Vec<String> = [
            "prlimit".to_string(),
            format!("--nproc={MAX_PROCESSES}"),
            format!("--as={MAX_ADDRESS_SPACE}"),
            format!("--cpu={MAX_CPU_SECONDS}"),
            format!("--nofile={MAX_OPEN_FILES}"),
            "--".into(),
            // Below the grader: a server that burns the CPU slows its neighbours, not the checks.
            "nice".into(),
            "-n10".into(),
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]
        .into_iter()
        .chain(
            [
                "bwrap",
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--tmpfs",
                "/tmp",
                // At their own paths: the root is read-only, so no new mount point can be made
                // in it (under /tmp, the sandbox's own, they can).
                "--ro-bind",
                &folder,
                &folder,
                "--bind",
                &home,
                &home,
                "--chdir",
                &folder,
                "--clearenv",
                "--setenv",
                "PATH",
                "/usr/local/bin:/usr/bin:/bin",
                "--setenv",
                "HOME",
                &home,
                "--setenv",
                "TZ",
                &args.zone,
                "--setenv",
                "PYTHONUNBUFFERED",
                "1",
                "--setenv",
                "PYTHONDONTWRITEBYTECODE",
                "1",
                "--",
                &args.python,
                &sub.file,
            ]
            .iter()
            .map(|w| w.to_string()),
        )
        .collect();
        let argv: Vec<CString> = words
            .iter()
            .map(|w| CString::new(w.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let env: Vec<CString> = std::env::var("PATH")
            .ok()
            .into_iter()
            .filter_map(|p| CString::new(format!("PATH={p}")).ok())
            .collect();
        let mut actions = PosixSpawnFileActions::init().map_err(|e| e.to_string())?;
        let nothing = fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let spawned = (|| {
            actions.add_dup2(nothing.as_raw_fd(), 0)?;
            actions.add_dup2(output.as_raw_fd(), 1)?;
            actions.add_dup2(output.as_raw_fd(), 2)?;
            let attr = PosixSpawnAttr::init()?;
            posix_spawnp(&argv[0], &actions, &attr, &argv, &env)
        })();
        let outer = spawned.map_err(|e| format!("cannot start the sandbox: {e}"))?;
        let started = Instant::now();
        let mut sandbox = Sandbox { outer, ended: None, inside: outer, started };
        // bubblewrap's child is the first process in the new namespaces.
        loop {
            let children =
                fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse().ok()) {
                sandbox.inside = Pid::from_raw(pid);
                return Ok(sandbox);
            }
            if let Some(how) = sandbox.poll() {
                return Err(format!("the sandbox ended at once ({how})"));
            }
            if started.elapsed() > args.start_timeout {
                sandbox.stop();
                return Err("the sandbox did not start".into());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// How the sandbox ended, if it has.
    fn poll(&mut self) -> Option<&str> {
        if self.ended.is_none() {
            self.ended = match waitpid(self.outer, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status: {code}")),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("killed by {signal}")),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
        }
        self.ended.as_deref()
    }

    /// Joins the sandbox's network in a thread of its own, waits for the server to listen, and
    /// grades it there.
    fn grade(&mut self, args: &GradeArgs, zone: &Zone) -> Result<Checked, String> {
        let netns = fs::File::open(format!("/proc/{}/ns/net", self.inside))
            .map_err(|e| format!("the sandbox's network: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let check_args = CheckArgs {
            target: Target { host: "127.0.0.1".into(), port: args.port },
            zone: zone.name.to_string(),
            ..CheckArgs::default()
        };
        let deadline = self.started + args.start_timeout;
        let wall = self.started + args.wall_timeout;
        let inside = self.inside;
        // Set once the server's sandbox has ended: no use waiting for it to listen.
        let gone = &std::sync::atomic::AtomicBool::new(false);
        thread::scope(|s| {
            let grader = s.spawn(move || -> Result<Option<Checked>, String> {
                nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("cannot join the sandbox's network: {e}"))?;
                while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                    if Instant::now() > deadline || gone.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(None);
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                // The checks' exchanges, for the gradebook's pictures (made here: the socket
                // belongs to the network of the thread that makes it).
                let tap = Tap::start(args.port);
                let mut marks = Vec::new();
                let report = check::grade(addr, zone, &check_args, |o| marks.push((o.name, now_ns())));
                let capture = tap.map(Tap::finish).unwrap_or_default();
                Ok(Some(Checked { report, marks, capture }))
            });
            // The wall clock is kept from here: past it the server is killed, and the grader's
            // connections fail at once, so that it finishes.
            while !grader.is_finished() {
                if Instant::now() > wall {
                    let _ = kill(inside, Signal::SIGKILL);
                }
                if self.poll().is_some() {
                    gone.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(20));
            }
            match grader.join() {
                Ok(Ok(Some(graded))) => Ok(graded),
                Ok(Ok(None)) => Err(match self.poll() {
                    Some(how) => {
                        format!("the server exited ({how}) before it listened on port {}", args.port)
                    }
                    None => format!(
                        "does not listen on port {}: nothing answered at 127.0.0.1:{} within {}",
                        args.port,
                        args.port,
                        settings::show(args.start_timeout)
                    ),
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err("the grader failed".into()),
            }
        })
    }

    /// Kills everything the server started: the sandbox's first process takes its whole process
    /// namespace with it, whatever ignores SIGTERM or has forked away.
    fn stop(mut self) {
        let _ = kill(self.inside, Signal::SIGKILL);
        if self.poll().is_none() {
            let _ = kill(self.outer, Signal::SIGKILL);
            let _ = waitpid(self.outer, None);
        }
    }
}

/// The gradebook.
struct Book<'a> {
    graded: &'a [Graded],
    zone: &'a str,
    port: u16,
    at: String,
}

impl Book<'_> {
    fn result(g: &Graded) -> &'static str {
        match &g.report {
            Some(r) if r.meets_the_sheet() => "meets the sheet",
            Some(_) => "does not meet the sheet",
            None => "not graded",
        }
    }

    fn met(r: &Report, level: Level) -> usize {
        r.outcomes.iter().filter(|o| o.level == level && o.status != Status::Fail).count()
    }

    /// One row per student, one column per check.
    fn csv(&self) -> String {
        let names: Vec<&str> = check::checks().map(|(n, _)| n).collect();
        let mut out = format!(
            "student,file,result,required_met,recommended_met,{},problem,graded_at,zone,port\n",
            names.join(",")
        );
        for g in self.graded {
            let cells: Vec<String> = names
                .iter()
                .map(|n| g.report.as_ref().and_then(|r| r.get(n)).map_or("", |o| o.status.word()).to_string())
                .collect();
            let (req, rec) = g.report.as_ref().map_or((String::new(), String::new()), |r| {
                (Self::met(r, Level::Required).to_string(), Self::met(r, Level::Recommended).to_string())
            });
            let _ = writeln!(
                out,
                "{},{},{},{req},{rec},{},{},{},{},{}",
                csv_cell(&g.id),
                csv_cell(&g.file),
                Self::result(g),
                cells.join(","),
                csv_cell(g.problem.as_deref().unwrap_or("")),
                self.at,
                csv_cell(self.zone),
                self.port
            );
        }
        out
    }

    /// Everything `jam check --json` says, per student.
    fn json(&self) -> String {
        let target = Target { host: "127.0.0.1".into(), port: self.port };
        let students: Vec<String> = self
            .graded
            .iter()
            .map(|g| {
                format!(
                    r#"{{"student":{},"file":{},"result":{},"seconds":{:.1},"problem":{},"last_lines":[{}],"report":{}}}"#,
                    json_string(&g.id),
                    json_string(&g.file),
                    json_string(Self::result(g)),
                    g.seconds,
                    g.problem.as_deref().map_or("null".into(), json_string),
                    g.last_lines.iter().map(|l| json_string(l)).collect::<Vec<_>>().join(","),
                    g.report.as_ref().map_or("null".into(), |r| r.json(&target)),
                )
            })
            .collect();
        format!(
            "{{\"graded_at\":{},\"zone\":{},\"port\":{},\"students\":[\n{}\n]}}\n",
            json_string(&self.at),
            json_string(self.zone),
            self.port,
            students.join(",\n")
        )
    }

    /// One self-contained page: a row per student, a cell per check, and for a failing check
    /// its exact detail.
    fn html(&self) -> String {
        let checks: Vec<(&str, Level)> = check::checks().collect();
        let mut rows = String::new();
        let mut pictures = 0;
        for g in self.graded {
            let _ = write!(
                rows,
                "<tr><th>{}</th><td class=\"{}\">{}</td>",
                html(&g.id),
                match &g.report {
                    Some(r) if r.meets_the_sheet() => "pass",
                    _ => "fail",
                },
                html(Self::result(g))
            );
            for (name, _) in &checks {
                match g.report.as_ref().and_then(|r| r.get(name)) {
                    Some(o) => {
                        let _ = write!(
                            rows,
                            "<td class=\"{}\" title=\"{}\">{}</td>",
                            o.status.word(),
                            html(&o.detail),
                            o.status.word()
                        );
                    }
                    None => rows.push_str("<td></td>"),
                }
            }
            rows.push_str("</tr>\n");
            let mut details = String::new();
            if let Some(p) = &g.problem {
                let _ = write!(details, "<p><b>{}</b></p>", html(p));
                if !g.last_lines.is_empty() {
                    let _ = write!(details, "<pre>{}</pre>", html(&g.last_lines.join("\n")));
                }
            }
            for o in g.report.iter().flat_map(|r| &r.outcomes).filter(|o| o.status != Status::Pass) {
                let _ = write!(
                    details,
                    "<p><b>{} {}</b>: <code>{}</code></p>",
                    o.status.word(),
                    o.name,
                    html(&o.detail)
                );
                if let Some((_, svg)) = g.flows.iter().find(|(name, _)| *name == o.name) {
                    let svg = svg.split_once("?>").map_or(svg.as_str(), |(_, rest)| rest);
                    // Each picture's arrowheads under ids of its own: the first of a repeated id
                    // would be in a picture that is folded away, and draw nothing.
                    pictures += 1;
                    let svg = svg.replace("arrow-", &format!("arrow{pictures}-"));
                    let _ = write!(
                        details,
                        "<details><summary>its exchange, as captured</summary>{svg}</details>"
                    );
                }
            }
            if !details.is_empty() {
                let _ = writeln!(
                    rows,
                    "<tr class=\"detail\"><td></td><td colspan=\"{}\">{details}</td></tr>",
                    checks.len() + 1
                );
            }
        }
        let head: String = checks
            .iter()
            .map(|(n, l)| {
                format!(
                    "<th class=\"{}\">{}</th>",
                    if *l == Level::Required { "req" } else { "rec" },
                    html(n)
                )
            })
            .collect();
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jam grade: gradebook</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 20px; color: #1f2328; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #d0d4da; padding: 3px 6px; text-align: left; }}
thead th.req, thead th.rec {{ writing-mode: vertical-rl; transform: rotate(180deg); }} thead th {{ font-weight: 600; vertical-align: bottom; }}
thead th.req {{ background: #ddf4ff; }} .pass {{ background: #dafbe1; }} .warn {{ background: #fff8c5; }}
.fail {{ background: #ffebe9; }} tr.detail td {{ background: #f6f8fa; font-size: 13px; }}
code, pre {{ font: 12px ui-monospace, monospace; white-space: pre-wrap; }}
</style></head><body>
<h1>Gradebook</h1>
<p>Graded {at} by jam grade: {n} submission(s), port {port}, replies expected in {zone}. Checks in blue are what the
sheet requires; the rest are what TCP asks. A failing check shows the exact bytes sent and received.</p>
<table><thead><tr><th>student</th><th>result</th>{head}</tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
            at = html(&self.at),
            n = self.graded.len(),
            port = self.port,
            zone = html(self.zone),
        )
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn html(s: &str) -> String {
    crate::packets::flow::xml(s)
}

// The command line: arguments, help and parser.

/// `jam grade --help`.
pub fn help() -> String {
    let d = defaults(&|_| None);
    format!(
        "jam grade: grade a class: each student's server in a sandbox, one gradebook

Usage: sudo jam grade [OPTIONS] SUBMISSION...

Runs each student's server, grades it with jam check's checks, stops it, and writes the
gradebook: CSV (a column per check), JSON (all jam check --json says) and HTML (each failure's
bytes and a picture of its exchange). Each server runs as a user of its own (never root) in bubblewrap: a network with
loopback alone, the system and its folder read-only, a scratch folder, limits on processes
({procs}), address space ({mem} GiB), CPU ({cpu} s) and time; all it started is killed at the
end. Needs root, bwrap, setpriv and prlimit.

Arguments:
  SUBMISSION           a student's folder (its only .py, or its only server*.py) or a file;
                       the student's id is the folder's name or the file's stem

Options:
  -o, --out DIR        where the gradebook goes [default: {out}]
  -j, --parallel N     students graded at once [default: 8 per core, at most 16]
      --tz ZONE        the zone the replies should be in [env: TZ] [default: {zone}]
  -p, --port PORT      the port the servers listen on [default: {port}]
      --python CMD     the interpreter that runs a server file [default: {python}]
      --start-timeout DUR  how long a server has to listen [default: {start}]
      --timeout DUR    the most one student's grading may take [default: {wall}]
  -h, --help           print this help

Exit status: 0 when every submission was graded (whatever the grades), 1 when the grading
itself failed, 2 for bad usage.
",
        procs = MAX_PROCESSES,
        mem = MAX_ADDRESS_SPACE >> 30,
        cpu = MAX_CPU_SECONDS,
        out = d.out.display(),
        zone = d.zone,
        port = d.port,
        python = d.python,
        start = settings::show(d.start_timeout),
        wall = settings::show(d.wall_timeout),
    )
}

/// The cores this process may run on (std's `available_parallelism` would also read cgroup
/// quotas, for 5 KB of the binary).
fn cores() -> usize {
    nix::sched::sched_getaffinity(Pid::from_raw(0))
        .map_or(1, |set| (0..nix::sched::CpuSet::count()).filter(|&i| set.is_set(i).unwrap_or(false)).count())
        .max(1)
}

fn defaults(env: Env) -> GradeArgs {
    GradeArgs {
        submissions: Vec::new(),
        out: PathBuf::from("gradebook"),
        // Each grading waits on the checks' timeouts far more than it computes: on this 2-core
        // machine a class of 40 took 58 s at 4 at a time, 31 s at 8 and 18 s at 16, with the
        // same grades (bench/grade-class). Eight per core, at most 16.
        parallel: (cores() * 8).min(16),
        zone: env("TZ").filter(|z| !z.is_empty()).unwrap_or_else(|| check::DEFAULT_ZONE.into()),
        port: DEFAULT_PORT,
        python: "python3".into(),
        start_timeout: DEFAULT_START_TIMEOUT,
        wall_timeout: DEFAULT_WALL_TIMEOUT,
    }
}

/// Parses `jam grade`'s arguments, after the environment `env` looks up.
pub fn parse(p: &mut lexopt::Parser, env: Env) -> Result<Parsed<GradeArgs>, Error> {
    let mut args = defaults(env);
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('o') | Long("out") => args.out = text(p)?.into(),
            Short('j') | Long("parallel") => args.parallel = value(p, "--parallel", settings::count)?,
            Long("tz") => args.zone = text(p)?,
            Short('p') | Long("port") => args.port = value(p, "--port", settings::port)?,
            Long("python") => args.python = text(p)?,
            Long("start-timeout") => args.start_timeout = value(p, "--start-timeout", settings::duration)?,
            Long("timeout") => args.wall_timeout = value(p, "--timeout", settings::duration)?,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => args.submissions.push(PathBuf::from(v)),
            other => return Err(usage(other.unexpected())),
        }
    }
    if args.submissions.is_empty() {
        return Err(Error::usage("jam grade needs submissions: jam grade FOLDER... or FILE..."));
    }
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_when_they_must_be() {
        assert_eq!(csv_cell("alice"), "alice");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn a_folder_names_its_server() {
        let dir = std::env::temp_dir().join(format!("jam-grade-unit-{}", std::process::id()));
        let alice = dir.join("alice");
        fs::create_dir_all(&alice).unwrap();
        fs::write(alice.join("server_thread.py"), "").unwrap();
        let s = submission(&alice).unwrap();
        assert_eq!((s.id.as_str(), s.file.as_str()), ("alice", "server_thread.py"));
        fs::write(alice.join("helper.py"), "").unwrap();
        assert_eq!(submission(&alice).unwrap().file, "server_thread.py", "the one server*.py");
        fs::write(alice.join("server2.py"), "").unwrap();
        assert!(submission(&alice).unwrap_err().to_string().contains("cannot tell which file"));
        let file = submission(&alice.join("helper.py")).unwrap();
        assert_eq!((file.id.as_str(), file.file.as_str()), ("helper", "helper.py"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
