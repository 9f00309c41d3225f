//! `jam capture --web`, the course's Wireshark in a browser: a real headless chromium driven by
//! selenium (tests/browser/view.py) over a real capture on loopback (root); several viewers at
//! once, one of which never reads; and the page's HTTP side held to its bounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;

use jam::http::MAX_HEAD;
use jam::server::Limits;

use crate::capture::{Capturing, TempFile, can_capture};
use crate::support::{HANG, JAM, TestServer, have, repo, require, run};

/// Whether a real browser can be driven here.
pub(crate) fn can_browse() -> bool {
    require("chromium", have("chromium", "--version"))
        && require("chromedriver", have("chromedriver", "--version"))
        && require(
            "selenium for python3 (pip install selenium)",
            Command::new("python3").args(["-c", "import selenium"]).status().is_ok_and(|s| s.success()),
        )
}

/// `jam capture --web 127.0.0.1:0` of the test server's port on loopback, and the page's address.
fn capture_with_page(port: u16, more: &[&str]) -> (Capturing, SocketAddr) {
    let port = port.to_string();
    let mut args = vec!["-i", "lo", "--port", &port, "--web", "127.0.0.1:0"];
    args.extend_from_slice(more);
    let (capture, said) = Capturing::jam_saying(&args);
    let line =
        said.iter().find(|l| l.contains("the page is at http://")).unwrap_or_else(|| panic!("{said:?}"));
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches('/').parse().unwrap();
    (capture, addr)
}

/// One request, and the whole reply (the page closes every connection after its reply).
fn get(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    s.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn the_page_shows_the_exchange_live_in_a_real_browser() {
    if !can_capture() || !can_browse() {
        return;
    }
    let server = TestServer::start(Limits::default());
    let (capture, page) = capture_with_page(server.addr.port(), &[]);
    let downloads = TempFile::new("downloads");
    std::fs::create_dir_all(&downloads.0).unwrap();
    let out = run(Command::new("python3").arg(repo().join("tests/browser/view.py")).args([
        "--url",
        &format!("http://{page}/"),
        "--query",
        &format!("{JAM} query {}", server.addr),
        "--downloads",
        downloads.0.to_str().unwrap(),
    ]));
    let said = String::from_utf8_lossy(&out.stdout);
    println!("{said}");
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    // The page's download is the capture, and tshark reads it.
    let file = said.lines().find_map(|l| l.strip_prefix("downloaded: ")).expect("a download");
    let tshark = run(Command::new("tshark").args(["-r", file]));
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    let rows = String::from_utf8_lossy(&tshark.stdout);
    assert!(rows.contains("[SYN]") && rows.contains("[FIN, ACK]"), "{rows}");
    let _ = std::fs::remove_dir_all(&downloads.0);
    assert!(capture.finish().success());
}

/// Reads one viewer's event stream to its `end` event; returns the rows it was sent.
fn view(addr: SocketAddr) -> thread::JoinHandle<usize> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG * 3)).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: jam\r\n\r\n").unwrap();
    thread::spawn(move || {
        let mut rows = 0;
        for line in BufReader::new(s).lines() {
            let line = line.expect("the stream went on to its end");
            if line.starts_with("id: ") {
                rows += 1;
            }
            if line == "event: end" {
                break;
            }
        }
        rows
    })
}

#[test]
fn a_viewer_that_never_reads_stalls_neither_the_capture_nor_the_other_viewers() {
    if !can_capture() {
        return;
    }
    // JAM_VIEWERS raises it to measure how many viewers a capture holds (docs/PERFORMANCE.md).
    let viewers: usize = std::env::var("JAM_VIEWERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let server = TestServer::start(Limits::default());
    let (capture, page) = capture_with_page(server.addr.port(), &[]);
    // One viewer asks for the stream and never reads it, with a small receive buffer so that it
    // is full soon.
    let stalled = {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
        };
        let sock = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
        setsockopt(&sock, sockopt::RcvBuf, &4096).unwrap();
        let SocketAddr::V4(v4) = page else { unreachable!("the page is on 127.0.0.1") };
        connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &SockaddrIn::from(v4)).unwrap();
        let mut s = TcpStream::from(sock);
        s.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
        s
    };
    let readers: Vec<_> = (0..viewers).map(|_| view(page)).collect();
    // Enough sessions that the stalled viewer's queue overflows: about 10 segments each.
    let sessions = 1_000;
    for _ in 0..sessions {
        let mut c = server.connect();
        c.send(b"TIME\r\nQUIT\r\n");
        let _ = c.rest();
    }
    let (status, said) = capture.finish_saying();
    assert!(status.success(), "{said:?}");
    let number = |suffix: &str| -> u64 {
        said.iter()
            .find_map(|l| l.strip_suffix(suffix).and_then(|n| n.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no line ending {suffix:?} in {said:?}"))
    };
    let captured = number(" packets captured");
    assert!(captured >= sessions as u64 * 7, "{said:?}");
    assert_eq!(number(" packets dropped by kernel"), 0, "the capture kept up: {said:?}");
    assert_eq!(
        number(" page viewers fell behind and were dropped (a browser reconnects and catches up)"),
        1,
        "the viewer that never read was dropped: {said:?}"
    );
    for reader in readers {
        assert_eq!(reader.join().unwrap() as u64, captured, "every reading viewer got every row");
    }
    println!("figure: {viewers} viewers and one stalled, {captured} segments, none dropped by the kernel");
    drop(stalled);
}

#[test]
fn the_pages_http_side_refuses_what_it_should() {
    if !can_capture() {
        return;
    }
    let server = TestServer::start(Limits::default());
    let (capture, page) = capture_with_page(server.addr.port(), &[]);
    let page_html = get(page, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        page_html.starts_with("HTTP/1.1 200 OK\r\n") && page_html.contains("<title>jam capture"),
        "{page_html}"
    );
    assert!(
        !page_html.contains("http://") && !page_html.contains("https://"),
        "nothing is fetched from elsewhere"
    );
    for (request, status) in [
        (b"GET /nothing HTTP/1.1\r\n\r\n".to_vec(), "404"),
        (b"TIME\r\n\r\n".to_vec(), "400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx".to_vec(), "405"),
        ([b"GET /".to_vec(), vec![b'a'; MAX_HEAD], b" HTTP/1.1\r\n\r\n".to_vec()].concat(), "400"),
    ] {
        let reply = get(page, &request);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {reply}");
    }
    // A client that sends half a head and nothing more is not answered, and is closed in the end.
    let mut slow = TcpStream::connect(page).unwrap();
    slow.write_all(b"GET / HT").unwrap();
    slow.set_read_timeout(Some(HANG)).unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(capture.finish().success());
}
