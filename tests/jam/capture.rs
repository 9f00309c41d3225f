//! `jam capture` and `jam show`, with tshark as the oracle: real sessions captured on loopback
//! (by jam itself, and by tcpdump in both of Linux's cooked formats, and as pcapng), each frame's
//! row compared with `tshark -r` field by field; and bad captures, which must get one clear line
//! and exit 1, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use jam::packets::pcap::{Link, Writer};
use jam::server::Limits;

use crate::support::{JAM, Reaped, TestServer, have, lines_of, ok, require, run, wait_for_line};

/// A file in the system's temporary folder, removed when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("jam-capture-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if std::env::var_os("JAM_KEEP_CAPTURES").is_none() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Whether this test can capture (root, for a packet socket) and has the oracle.
pub(crate) fn can_capture() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    require("root (a packet socket needs CAP_NET_RAW)", root)
        && require("tshark", have("tshark", "--version"))
}

/// A capturing process (jam capture or tcpdump), stopped with SIGINT when finished and killed
/// when dropped; its standard error is read to the end, so that it can write its last lines.
pub(crate) struct Capturing(Option<Reaped>, pub(crate) std::sync::mpsc::Receiver<String>);

impl Capturing {
    /// `jam capture ARGS`, once it says it is capturing.
    pub(crate) fn jam(args: &[&str]) -> Capturing {
        Capturing::jam_saying(args).0
    }

    /// `jam capture ARGS`, once it says it is capturing, and what it said until then.
    pub(crate) fn jam_saying(args: &[&str]) -> (Capturing, Vec<String>) {
        let mut child = Command::new(JAM)
            .arg("capture")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stderr.take().unwrap());
        let said = crate::support::lines_until(&lines, "jam capture: TCP port");
        (Capturing(Some(Reaped(child)), lines), said)
    }

    /// `tcpdump ARGS`, once it says it is listening.
    fn tcpdump(args: &[&str]) -> Capturing {
        let mut child =
            Command::new("tcpdump").args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let lines = lines_of(child.stderr.take().unwrap());
        wait_for_line(&lines, "listening on");
        Capturing(Some(Reaped(child)), lines)
    }

    /// Lets the last segments through, then ends the capture cleanly and waits for it.
    pub(crate) fn finish(self) -> std::process::ExitStatus {
        self.finish_saying().0
    }

    /// [`Capturing::finish`], and what it said from its start line to its end.
    pub(crate) fn finish_saying(mut self) -> (std::process::ExitStatus, Vec<String>) {
        thread::sleep(Duration::from_millis(300));
        let mut child = self.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let status = crate::support::wait_exit(&mut child.0, "the capture");
        let mut said = Vec::new();
        while let Ok(line) = self.1.recv_timeout(crate::support::HANG) {
            said.push(line);
        }
        (status, said)
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until `n` bytes came or the peer closed.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    let mut have = 0;
    while have < n {
        match s.read(&mut got[have..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => have += k,
        }
    }
    got.truncate(have);
    got
}

/// The lab's exchange: `TIME` and `QUIT` on one connection, then the one-liner's.
fn lab_sessions(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(b"TIME\r\n").unwrap();
    assert_eq!(read_n(&mut s, 14).len(), 14);
    s.write_all(b"QUIT\r\n").unwrap();
    let _ = read_n(&mut s, 1);
    let mut s = connect(addr);
    s.write_all(b"TIME\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = read_n(&mut s, 100);
}

/// A request split byte by byte, then pipelined requests; an over-long line; a reset.
fn unusual_sessions(addr: SocketAddr) {
    let mut s = connect(addr);
    s.set_nodelay(true).unwrap();
    for b in b"TIME\r\n" {
        s.write_all(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(read_n(&mut s, 14).len(), 14);
    s.write_all(b"TIME\r\nTIME\r\nTIME\r\nQUIT\r\n").unwrap();
    let _ = read_n(&mut s, 100);
    let mut s = connect(addr);
    s.write_all(&[b'x'; 5000]).unwrap();
    let _ = read_n(&mut s, 1000);
    let s = connect(addr);
    let mut s2 = s.try_clone().unwrap();
    s2.write_all(b"TIME\r\n").unwrap();
    let _ = read_n(&mut s2, 14);
    // Closing with SO_LINGER 0 sends a reset.
    nix::sys::socket::setsockopt(
        &s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger { l_onoff: 1, l_linger: 0 },
    )
    .unwrap();
    drop((s, s2));
}

/// A client turned away: the server holds one connection, and the second gets `ERROR server busy`.
fn refused_session(addr: SocketAddr) {
    let mut held = connect(addr);
    held.write_all(b"TIME\r\n").unwrap();
    assert_eq!(read_n(&mut held, 14).len(), 14);
    let mut refused = connect(addr);
    let line = read_n(&mut refused, 100);
    assert!(line.starts_with(b"ERROR"), "{}", String::from_utf8_lossy(&line));
    held.write_all(b"QUIT\r\n").unwrap();
    let _ = read_n(&mut held, 1);
}

/// tshark's row for every segment of `port`: No., Time, Source, Destination, Protocol, Length, Info.
fn tshark_rows(pcap: &Path, port: u16) -> Vec<Vec<String>> {
    let out = ok(Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-Y", &format!("tcp.port == {port}"), "-T", "fields"])
        .args([
            "-e",
            "frame.number",
            "-e",
            "frame.time_relative",
            "-e",
            "_ws.col.Source",
            "-e",
            "_ws.col.Destination",
        ])
        .args(["-e", "_ws.col.Protocol", "-e", "frame.len", "-e", "_ws.col.Info"]));
    out.lines().map(|l| l.split('\t').map(String::from).collect()).collect()
}

/// jam show's rows, split into the same fields.
fn jam_rows(pcap: &Path, port: u16) -> Vec<Vec<String>> {
    let out = ok(Command::new(JAM).arg("show").args(["--port", &port.to_string()]).arg(pcap));
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("No."), "{out}");
    lines
        .take_while(|l| !l.is_empty())
        .map(|l| l.splitn(7, ' ').filter(|f| !f.is_empty()).map(String::from).collect::<Vec<_>>())
        .map(|fields| {
            // The columns are padded: split on runs of spaces for the first six, keep Info whole.
            let line = fields.join(" ");
            let mut words = line.split_whitespace();
            let mut row: Vec<String> = (0..6).map(|_| words.next().unwrap_or("").to_string()).collect();
            row.push(words.collect::<Vec<_>>().join(" "));
            row
        })
        .collect()
}

/// Every row of `pcap` the same in jam show and tshark: returns the rows, for what a test
/// checks beyond agreement.
pub(crate) fn agree_with_tshark(pcap: &Path, port: u16) -> Vec<Vec<String>> {
    let expected = tshark_rows(pcap, port);
    let shown = jam_rows(pcap, port);
    assert!(!expected.is_empty(), "tshark found no segments in {}", pcap.display());
    assert_eq!(
        shown.len(),
        expected.len(),
        "rows in {}:\njam:\n{shown:?}\ntshark:\n{expected:?}",
        pcap.display()
    );
    for (j, t) in shown.iter().zip(&expected) {
        let time = |s: &str| s.parse::<f64>().unwrap();
        let same = j[0] == t[0]
            && (time(&j[1]) - time(&t[1])).abs() < 2e-6
            && j[2..6] == t[2..6]
            && j[6] == t[6].split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(same, "{}: frame {}:\n  jam:    {j:?}\n  tshark: {t:?}", pcap.display(), t[0]);
    }
    expected
}

/// The first SYN to the test server's `port`. Not simply the first row: another test's client
/// may have been given that same number as its own port, and the capture's filter keeps its
/// segments too.
fn first_syn(rows: &[Vec<String>], port: u16) -> &Vec<String> {
    let to_server = format!("→ {port} [SYN]");
    rows.iter().find(|r| r[6].contains(&to_server)).unwrap_or_else(|| panic!("no SYN to {port}: {rows:?}"))
}

fn infos(rows: &[Vec<String>]) -> Vec<&str> {
    rows.iter().map(|r| r[6].as_str()).collect()
}

/// Sessions against a test server on `bind` with `limits`, captured by `jam capture -i
/// interface` into a file named `name`: the file and the server's port.
fn captured_by_jam(
    bind: &str,
    limits: Limits,
    interface: &str,
    name: &str,
    sessions: impl FnOnce(SocketAddr),
) -> (TempFile, u16) {
    let server = TestServer::start_on(bind.parse().unwrap(), limits);
    let port = server.addr.port();
    let file = TempFile::new(name);
    let capture =
        Capturing::jam(&["-i", interface, "--port", &port.to_string(), "-w", file.0.to_str().unwrap(), "-q"]);
    sessions(server.addr);
    assert!(capture.finish().success());
    server.stop();
    (file, port)
}

#[test]
fn the_labs_sessions_captured_by_jam_agree_with_tshark() {
    if !can_capture() {
        return;
    }
    let limits = Limits { max_connections: 3, max_per_address: Some(3), ..Limits::default() };
    let (file, port) = captured_by_jam("127.0.0.1:0", limits, "lo", "lab.pcap", |addr| {
        lab_sessions(addr);
        unusual_sessions(addr);
    });
    let rows = agree_with_tshark(&file.0, port);
    let info = infos(&rows);
    // What the sessions are known to hold: the handshake, the request and the reply, the FINs,
    // the split request's single bytes, and the reset.
    assert!(first_syn(&rows, port)[6].contains("[SYN] Seq=0"), "{info:?}");
    assert!(
        info.iter().any(|i| i.contains(&format!("{port} → ")) && i.contains("[SYN, ACK] Seq=0 Ack=1")),
        "{info:?}"
    );
    assert!(info.iter().any(|i| i.contains("[PSH, ACK]") && i.contains("Len=14")), "a reply: {info:?}");
    assert!(info.iter().filter(|i| i.contains("[FIN, ACK]")).count() >= 4, "{info:?}");
    assert!(info.iter().filter(|i| i.contains("Len=1 ")).count() >= 6, "the split request: {info:?}");
    assert!(info.iter().any(|i| i.contains("[RST")), "the reset: {info:?}");
    assert!(rows.iter().all(|r| r[5] != "0"), "{rows:?}");
}

#[test]
fn a_refusal_and_ipv6_agree_with_tshark() {
    if !can_capture() {
        return;
    }
    let limits = Limits { max_connections: 1, ..Limits::default() };
    let (file, port) = captured_by_jam("127.0.0.1:0", limits, "lo", "refused.pcap", refused_session);
    let rows = agree_with_tshark(&file.0, port);
    assert!(infos(&rows).iter().any(|i| i.contains("Len=19")), "ERROR server busy CR LF: {rows:?}");

    let Ok(v6) = std::net::TcpListener::bind("[::1]:0") else {
        require("IPv6 on loopback", false);
        return;
    };
    drop(v6);
    let (file, port) = captured_by_jam("[::1]:0", Limits::default(), "lo", "v6.pcap", lab_sessions);
    let rows = agree_with_tshark(&file.0, port);
    let syn = first_syn(&rows, port);
    assert!(syn[2] == "::1" && syn[3] == "::1", "{rows:?}");
}

#[test]
fn cooked_captures_of_any_and_pcapng_agree_with_tshark() {
    if !can_capture() || !require("tcpdump", have("tcpdump", "--version")) {
        return;
    }
    let server = TestServer::start(Limits::default());
    let port = server.addr.port();
    let filter = format!("tcp port {port}");
    let (sll, sll2, jam_any) =
        (TempFile::new("sll.pcap"), TempFile::new("sll2.pcap"), TempFile::new("any.pcap"));
    let captures = [
        Capturing::tcpdump(&[
            "-i",
            "any",
            "-y",
            "LINUX_SLL",
            "--immediate-mode",
            "-U",
            "-w",
            sll.0.to_str().unwrap(),
            &filter,
        ]),
        Capturing::tcpdump(&[
            "-i",
            "any",
            "-y",
            "LINUX_SLL2",
            "--immediate-mode",
            "-U",
            "-w",
            sll2.0.to_str().unwrap(),
            &filter,
        ]),
        Capturing::jam(&["-i", "any", "--port", &port.to_string(), "-w", jam_any.0.to_str().unwrap(), "-q"]),
    ];
    lab_sessions(server.addr);
    for c in captures {
        assert!(c.finish().success());
    }
    server.stop();
    for (file, header) in [(&sll, 16), (&sll2, 20), (&jam_any, 16)] {
        let rows = agree_with_tshark(&file.0, port);
        // The SYN with its options: 20 + 40 bytes of headers, and the cooked header.
        assert_eq!(first_syn(&rows, port)[5], (60 + header).to_string(), "{}: {rows:?}", file.0.display());
    }
    // The same capture as pcapng, what Wireshark saves.
    if require("editcap (Wireshark's)", have("editcap", "-V")) {
        let ng = TempFile::new("sll.pcapng");
        ok(Command::new("editcap").args(["-F", "pcapng"]).arg(&sll.0).arg(&ng.0));
        let mut magic = [0u8; 4];
        std::fs::File::open(&ng.0).unwrap().read_exact(&mut magic).unwrap();
        assert_eq!(magic, [0x0a, 0x0d, 0x0d, 0x0a], "a pcapng file");
        assert_eq!(agree_with_tshark(&ng.0, port), tshark_rows(&sll.0, port));
    }
}

#[test]
fn the_detail_names_the_layers_as_tshark_does_and_accounts_for_every_byte() {
    if !can_capture() {
        return;
    }
    let (file, port) = captured_by_jam("127.0.0.1:0", Limits::default(), "any", "detail.pcap", lab_sessions);
    for frame in ["1", "4"] {
        let detail =
            ok(Command::new(JAM).args(["show", "--port", &port.to_string(), "--detail", frame]).arg(&file.0));
        let tshark = ok(Command::new("tshark").arg("-r").arg(&file.0).args([
            "-V",
            "-Y",
            &format!("frame.number == {frame}"),
        ]));
        // tshark's top-level lines (no indent) for the frame, IP and TCP layers.
        for line in tshark.lines().filter(|l| {
            ["Frame ", "Internet Protocol", "Transmission Control"].iter().any(|p| l.starts_with(p))
        }) {
            assert!(detail.contains(line), "frame {frame}: jam's detail lacks tshark's {line:?}:\n{detail}");
        }
        assert!(detail.contains("Linux cooked capture v1"), "{detail}");
        // The bytes add up to the frame's length.
        let total: usize = detail
            .lines()
            .filter_map(|l| l.trim().split_once(" bytes  ").filter(|(_, w)| !w.starts_with("in all")))
            .map(|(n, _)| n.trim().parse::<usize>().unwrap())
            .sum();
        let wire: usize =
            detail.split(" bytes on wire").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(total, wire, "{detail}");
    }
    let syn = ok(Command::new(JAM).args(["show", "--port", &port.to_string(), "--detail", "1"]).arg(&file.0));
    assert!(syn.contains("76 bytes on wire") && syn.contains("It carries no data"), "{syn}");
    assert!(syn.contains("74 on eth0"), "why 76 and not 74: {syn}");
    let request =
        ok(Command::new(JAM).args(["show", "--port", &port.to_string(), "--detail", "4"]).arg(&file.0));
    assert!(request.contains("It carries 6 bytes of data: \"TIME\\r\\n\""), "{request}");
}

/// A capture of one frame with `data`, written by jam's own writer.
fn capture_of(link: Link, data: &[u8], wire: u32) -> Vec<u8> {
    let file = TempFile::new("frame.pcap");
    let mut w = Writer::new(std::fs::File::create(&file.0).unwrap(), link, 65535).unwrap();
    w.push(1_700_000_000_000_000_000, wire, data).unwrap();
    w.flush().unwrap();
    drop(w);
    std::fs::read(&file.0).unwrap()
}

/// An IPv4 TCP SYN to port 45000, raw (no link header).
fn raw_syn() -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[172, 16, 16, 102]);
    p[16..20].copy_from_slice(&[172, 16, 16, 101]);
    p[20..22].copy_from_slice(&50000u16.to_be_bytes());
    p[22..24].copy_from_slice(&45000u16.to_be_bytes());
    p[32] = 0x50;
    p[33] = 0x02;
    p[34..36].copy_from_slice(&64240u16.to_be_bytes());
    p
}

#[test]
fn bad_captures_get_one_clear_line_and_exit_1() {
    let good = capture_of(Link::Raw, &raw_syn(), 40);
    let show = |bytes: &[u8], name: &str| {
        let file = TempFile::new(name);
        std::fs::write(&file.0, bytes).unwrap();
        let out = run(Command::new(JAM).arg("show").arg(&file.0));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = show(&good, "good.pcap");
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("172.16.16.102") && stdout.contains("50000 → 45000 [SYN] Seq=0 Win=64240 Len=0"),
        "{stdout}"
    );

    let mut unknown_link = good.clone();
    unknown_link[20..24].copy_from_slice(&147u32.to_ne_bytes());
    let short_snap = capture_of(Link::Raw, &raw_syn()[..30], 40);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated", good[..good.len() - 5].to_vec(), "cut short"),
        ("not a capture", b"this is not a capture at all".to_vec(), "not a pcap or pcapng capture"),
        ("unknown link", unknown_link, "link type 147"),
        ("snapshot too short", short_snap, "snapshot length is too short"),
        ("empty", Vec::new(), "not a pcap or pcapng capture"),
    ];
    for (what, bytes, says) in cases {
        let (code, _, stderr) = show(&bytes, "bad.pcap");
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(stderr.starts_with("jam: ") && stderr.contains(says), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    let (code, _, stderr) = show(b"", "missing");
    assert_eq!(code, Some(1), "{stderr}");
}
