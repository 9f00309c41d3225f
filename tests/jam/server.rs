//! The server in-process, over real sockets on 127.0.0.1: exact bytes for every rule, every limit
//! crossed, concurrency, backpressure and shutdown.

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use jam::server::{ConnectionLimits, Limits};

use crate::support::{Client, HANG, TestServer, assert_time, io_kind, require, time_once_a_place_is_free};

fn limits() -> Limits {
    Limits::default()
}

/// The default limits but for each connection's, which are `connection`.
fn per_connection(connection: ConnectionLimits) -> Limits {
    Limits { connection, ..limits() }
}

#[test]
fn time_gets_one_jam_line() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    c.send(b"TIME\r\n");
    let line = c.line();
    assert_eq!(line.len(), 14);
    assert!(line.starts_with("JAM "));
    assert_time(&line);
}

#[test]
fn many_requests_on_one_connection_then_quit_closes_in_order() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    for _ in 0..50 {
        c.time();
    }
    c.send(b"QUIT\r\n");
    assert_eq!(c.rest(), "");
}

#[test]
fn a_request_split_over_segments_gets_one_reply() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    for piece in [&b"TI"[..], b"ME\r", b"\n"] {
        c.send(piece);
        thread::sleep(Duration::from_millis(30));
    }
    assert_time(&c.line());
    c.send(b"QUIT\r\n");
    assert_eq!(c.rest(), "");
}

#[test]
fn requests_joined_in_one_segment_get_one_reply_each_in_order() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    c.send(b"TIME\r\nHELLO\r\nTIME\r\nQUIT\r\nTIME\r\n");
    assert_time(&c.line());
    assert_eq!(c.line(), "ERROR unknown request, expected TIME or QUIT\r\n");
    assert_time(&c.line());
    assert_eq!(c.rest(), "", "nothing after QUIT is answered");
}

#[test]
fn a_client_that_half_closes_after_its_request_gets_the_reply() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    c.send(b"TIME\r\n");
    c.half_close();
    assert_time(&c.line());
    assert_eq!(c.rest(), "");
}

#[test]
fn bad_requests_get_an_error_line_and_the_connection_stays_usable() {
    let server = TestServer::start(limits());
    let mut c = server.connect();
    let cases: [(&[u8], &str); 5] = [
        (b"HELLO\r\n", "ERROR unknown request, expected TIME or QUIT\r\n"),
        (b"TIME\n", "ERROR line must end with CR LF (with nc, use -C)\r\n"),
        (b"TIME \xc3\x28\r\n", "ERROR request is not valid UTF-8\r\n"),
        (b"TI\x00ME\r\n", "ERROR request contains a control character\r\n"),
        (b"\r\n", "ERROR unknown request, expected TIME or QUIT\r\n"),
    ];
    for (request, reply) in cases {
        c.send(request);
        assert_eq!(c.line(), reply, "{request:?}");
        c.time();
    }
}

#[test]
fn an_overlong_line_gets_an_error_and_an_orderly_close() {
    let server = TestServer::start(per_connection(ConnectionLimits { max_line: 64, ..Default::default() }));
    let mut c = server.connect();
    c.time();
    c.send(&[b'A'; 5000]);
    assert_eq!(c.line(), "ERROR line too long\r\n");
    // The server lingers for our FIN, so its own close is a FIN, not a reset.
    c.half_close();
    assert_eq!(c.rest(), "");
}

#[test]
fn a_line_at_the_limit_is_accepted() {
    let server = TestServer::start(per_connection(ConnectionLimits { max_line: 64, ..Default::default() }));
    let mut c = server.connect();
    let mut line = b"TIME".to_vec();
    line.resize(62, b'x');
    line.extend_from_slice(b"\r\n");
    c.send(&line);
    assert_time(&c.line());
}

#[test]
fn an_idle_connection_is_told_and_closed() {
    let idle = Duration::from_millis(300);
    let server =
        TestServer::start(per_connection(ConnectionLimits { idle_timeout: idle, ..Default::default() }));
    let mut c = server.connect();
    c.time();
    let last_request = Instant::now();
    assert_eq!(c.line(), "ERROR idle timeout\r\n");
    assert!(last_request.elapsed() >= idle, "closed {:?} after the last request", last_request.elapsed());
    assert_eq!(c.rest(), "");
}

#[test]
fn activity_keeps_a_connection_open_past_the_idle_timeout() {
    // Generous margins: a loaded CI machine may stall the client for a few hundred ms.
    let server = TestServer::start(per_connection(ConnectionLimits {
        idle_timeout: Duration::from_millis(1500),
        ..Default::default()
    }));
    let mut c = server.connect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4500) {
        c.time();
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_line_not_finished_in_time_is_closed_even_while_bytes_trickle_in() {
    let server = TestServer::start(per_connection(ConnectionLimits {
        line_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    }));
    let mut c = server.connect();
    c.time();
    // A slow-loris client: a byte every 100 ms never finishes its line.
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < HANG {
        if c.stream.write_all(b"T").is_err() {
            closed = true;
            break;
        }
        c.stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 64];
        match c.stream.read(&mut buf) {
            Ok(n) => {
                assert_eq!(&buf[..n], b"ERROR line not finished in time\r\n");
                closed = true;
                break;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(closed);
}

#[test]
fn past_the_connection_limit_a_client_is_told_the_server_is_busy() {
    // Every client is 127.0.0.1: its share is the whole.
    let server = TestServer::start(Limits { max_connections: 2, max_per_address: Some(2), ..limits() });
    let mut a = server.connect();
    let mut b = server.connect();
    a.time();
    b.time();
    let mut c = server.connect();
    assert_eq!(c.rest(), "ERROR server busy\r\n");
    // A place freed is a place taken.
    a.send(b"QUIT\r\n");
    assert_eq!(a.rest(), "");
    time_once_a_place_is_free(server.addr);
    b.time();
    drop((b, c));
    // Refused as busy, not for the address (time_once_a_place_is_free may have been refused too).
    let stats = server.stop();
    assert!(stats.refused >= 1 && stats.refused_per_address == 0, "{stats:?}");
}

/// A flood from one address, with the default share: it gets half of the places, the other
/// half is left to every other machine, and the flood's next connection is told why it is refused.
#[test]
fn a_flood_from_one_address_leaves_half_the_places() {
    let server = TestServer::start(Limits { max_connections: 40, max_per_address: None, ..limits() });
    let mut flood: Vec<Client> = (0..20).map(|_| Client::connect_from([127, 0, 0, 2], server.addr)).collect();
    for c in &mut flood {
        c.time();
    }
    let mut more = Client::connect_from([127, 0, 0, 2], server.addr);
    assert_eq!(more.rest(), "ERROR too many connections from your address\r\n");
    // The class: twenty more places, from two other machines, all served while the flood holds on.
    let mut class: Vec<Client> =
        (0..20).map(|i| Client::connect_from([127, 0, 0, 3 + (i % 2)], server.addr)).collect();
    for c in &mut class {
        c.time();
    }
    drop(flood);
    let stats = server.stop();
    assert!(stats.refused_per_address >= 1 && stats.refused == stats.refused_per_address, "{stats:?}");
}

/// A flood of refusals, more at once than linger (jam::server::MAX_REFUSING), each client
/// sending its request 30 ms after it connects, as a real client does: every one gets its line
/// and an orderly close, and none a reset for a request the server had closed its socket before.
#[test]
fn a_flood_of_refusals_gets_lines_and_no_resets() {
    let server = TestServer::start(Limits { max_per_address: Some(1), ..limits() });
    let mut held = Client::connect_from([127, 0, 0, 2], server.addr);
    held.time();
    let addr = server.addr;
    let clients: Vec<_> = (0..jam::server::MAX_REFUSING * 3)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect_from([127, 0, 0, 2], addr);
                thread::sleep(Duration::from_millis(30));
                let _ = c.stream.write_all(b"TIME\r\n");
                let got = c.rest();
                // A reset that comes after the FIN is only seen as the socket's error.
                thread::sleep(Duration::from_millis(50));
                (got, c.stream.take_error().unwrap())
            })
        })
        .collect();
    for c in clients {
        let (got, error) = c.join().unwrap();
        assert_eq!(got, "ERROR too many connections from your address\r\n");
        assert!(error.is_none(), "a refused client was reset: {error:?}");
    }
    drop(held);
}

#[test]
fn one_address_cannot_take_every_place() {
    let server = TestServer::start(Limits { max_per_address: Some(8), ..limits() });
    // 127.0.0.2 takes its eight places, and the ninth is refused with the reason.
    let mut held: Vec<Client> = (0..8).map(|_| Client::connect_from([127, 0, 0, 2], server.addr)).collect();
    for c in &mut held {
        c.time();
    }
    let mut ninth = Client::connect_from([127, 0, 0, 2], server.addr);
    assert_eq!(ninth.rest(), "ERROR too many connections from your address\r\n");
    // Every other address is served as before, each up to its own eight.
    let mut others: Vec<Client> =
        (0..16).map(|i| Client::connect_from([127, 0, 0, 3 + (i % 2)], server.addr)).collect();
    let start = Instant::now();
    for c in &mut others {
        c.time();
    }
    assert!(start.elapsed() < HANG);
    // A place given back is a place for that address again, once the server has seen it go.
    held.pop();
    let mut refused = 1;
    let again = Instant::now();
    loop {
        let mut c = Client::connect_from([127, 0, 0, 2], server.addr);
        c.send(b"TIME\r\n");
        let reply = c.line();
        if !reply.starts_with("ERROR too many") {
            assert_time(&reply);
            break;
        }
        refused += 1;
        assert!(again.elapsed() < HANG, "the address never got its place back");
        thread::sleep(Duration::from_millis(20));
    }
    drop((held, others));
    // Counted under their own reason: the server was never full.
    let stats = server.stop();
    assert_eq!((stats.refused, stats.refused_per_address), (refused, refused));
}

#[test]
fn many_clients_at_once_are_all_served() {
    let server = TestServer::start(limits());
    let addr = server.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..20 {
                    c.time();
                }
                c.send(b"QUIT\r\n");
                assert_eq!(c.rest(), "");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let stats = server.stop();
    assert_eq!((stats.accepted, stats.refused, stats.cut_off), (100, 0, 0));
}

#[test]
fn a_client_that_never_reads_does_not_slow_the_others() {
    let server = TestServer::start(limits());
    let mut hog = server.connect();
    hog.stream.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    // Pipeline requests without reading a reply until the server stops taking them.
    let burst = b"TIME\r\n".repeat(10_000);
    let mut sent = 0usize;
    let start = Instant::now();
    loop {
        match hog.stream.write(&burst) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(start.elapsed() < HANG, "the server kept reading from a client that never reads");
    }
    // The server stopped reading (backpressure), having taken a bounded amount.
    assert!(sent < 64 * 1024 * 1024, "sent {sent} bytes before the server pushed back");
    let mut other = server.connect();
    for _ in 0..10 {
        other.time();
    }
    // And the hog, once it reads, gets its replies in order.
    for _ in 0..100 {
        assert_time(&hog.line());
    }
}

#[test]
fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
    let server = TestServer::start(per_connection(ConnectionLimits {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    }));
    let mut hog = server.connect();
    hog.stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let burst = b"TIME\r\n".repeat(10_000);
    let start = Instant::now();
    // Keep writing until the server, no longer reading, has closed the connection.
    loop {
        match hog.stream.write(&burst) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break, // reset or broken pipe: closed
        }
        assert!(start.elapsed() < HANG, "a client that never reads was never closed");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shutdown_delivers_replies_owed_then_closes_every_connection() {
    let server = TestServer::start(limits());
    let mut idle = server.connect();
    idle.time();
    let mut busy = server.connect();
    busy.time();
    busy.send(b"TIME\r\n");
    let stats = server.stop();
    assert_eq!(stats.cut_off, 0);
    assert_time(&busy.line());
    assert_eq!(busy.line(), "ERROR server shutting down\r\n");
    assert_eq!(busy.rest(), "");
    assert_eq!(idle.line(), "ERROR server shutting down\r\n");
    assert_eq!(idle.rest(), "");
}

#[test]
fn shutdown_stops_accepting() {
    let server = TestServer::start(limits());
    let addr = server.addr;
    server.stop();
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn shutdown_is_bounded_by_the_grace_period() {
    let server = TestServer::start(Limits { grace: Duration::from_millis(300), ..limits() });
    let mut hog = server.connect();
    hog.stream.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    let burst = b"TIME\r\n".repeat(10_000);
    while io_kind(hog.stream.write(&burst)).is_none() {}
    let started = Instant::now();
    // Stopped on a thread, so that a server that never stops fails here instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || tx.send(server.stop()).unwrap());
    let stats = rx.recv_timeout(HANG).expect("the server stops within the grace period");
    assert_eq!(stats.cut_off, 1, "the client that never reads cannot finish");
    assert!(started.elapsed() >= Duration::from_millis(300), "stopped before the grace period was up");
    // Cut off means closed: once the server has returned, the hog's connection is gone (a reset,
    // as it left input unread), not merely forgotten with its socket still open.
    hog.stream.set_read_timeout(Some(HANG)).unwrap();
    let mut sink = vec![0; 1 << 16];
    loop {
        match hog.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the cut-off connection is still open: {e}"),
        }
    }
}

#[test]
fn ipv6_loopback_is_served() {
    if !require("an IPv6 loopback address (::1)", std::net::TcpListener::bind("[::1]:0").is_ok()) {
        return;
    }
    let server = TestServer::start_on("[::1]:0".parse().unwrap(), limits());
    server.connect().time();
}
