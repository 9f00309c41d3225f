//! The appliance: jam as PID 1 of a QEMU virtual machine (deploy/appliance). Boots it, gets a
//! TIME reply through the forwarded loopback port, and powers it off through the ACPI power
//! button (with clients connected, owed replies) and through ctrl-alt-del, each time checking that QEMU exits 0; and boots it with a
//! broken `ip=` to see the problem reported on the console rather than a kernel panic.
//!
//! Needs qemu-system-x86_64 and the files deploy/appliance/build makes (tests/run builds them
//! and sets JAM_APPLIANCE_DIR).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, HANG, Reaped, assert_time, have, require, wait_exit};

struct Vm {
    qemu: Reaped,
    port: u16,
    console: PathBuf,
    qmp: PathBuf,
}

impl Vm {
    fn boot(dir: &Path, name: &str, extra: &[&str]) -> Vm {
        // QEMU binds the forwarded port itself (hostfwd takes a number, not a socket), so a port
        // free a moment ago is all that can be given; another process may take it in between,
        // which shows as QEMU failing to start, not as a wrong result.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = std::env::temp_dir().join(format!("jam-vm-{}-{name}", std::process::id()));
        let (console, qmp) = (base.with_extension("console"), base.with_extension("qmp"));
        let _ = std::fs::remove_file(&console);
        let _ = std::fs::remove_file(&qmp);
        let qemu = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/appliance/boot"))
            .arg("--dir")
            .arg(dir)
            .args(["--port", &port.to_string(), "--append", "TZ=Asia/Jakarta"])
            .arg("--console")
            .arg(&console)
            .arg("--qmp")
            .arg(&qmp)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("start deploy/appliance/boot");
        Vm { qemu: Reaped(qemu), port, console, qmp }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn wait_console(&self, needle: &str) {
        let start = Instant::now();
        while !self.console().contains(needle) {
            assert!(start.elapsed() < HANG * 3, "the console never showed {needle:?}:\n{}", self.console());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the forwarded port until a TIME reply comes; returns how long the boot took.
    fn wait_served(&self, booted: Instant) -> Duration {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], self.port).into();
        loop {
            // A probe, not a bare connect: QEMU accepts on the host side before the guest answers.
            let probe = Command::new(env!("CARGO_BIN_EXE_jam"))
                .args(["probe", &addr.to_string(), "--timeout", "2s"])
                .status()
                .unwrap();
            if probe.success() {
                return booted.elapsed();
            }
            assert!(booted.elapsed() < HANG * 3, "the appliance never answered:\n{}", self.console());
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn qmp(&self, command: &str) {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(&self.qmp) {
                Ok(s) => break s,
                Err(e) => assert!(start.elapsed() < HANG, "no QMP socket: {e}"),
            }
            thread::sleep(Duration::from_millis(50));
        };
        stream.set_read_timeout(Some(HANG)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // the greeting
        for c in [r#"{"execute":"qmp_capabilities"}"#, command] {
            writeln!(writer, "{c}").unwrap();
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert!(line.contains("\"return\"") || line.contains("\"event\""), "QMP {c}: {line}");
        }
    }

    /// Waits for QEMU to exit and returns its exit code.
    fn exit_code(&mut self) -> i32 {
        let status = wait_exit(&mut self.qemu.0, "QEMU");
        status.code().unwrap_or_else(|| panic!("QEMU was killed:\n{}", self.console()))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.console);
        let _ = std::fs::remove_file(&self.qmp);
    }
}

fn appliance() -> Option<PathBuf> {
    if !require("qemu-system-x86_64 (Debian's qemu-system-x86)", have("qemu-system-x86_64", "--version")) {
        return None;
    }
    let Some(dir) = std::env::var_os("JAM_APPLIANCE_DIR").map(PathBuf::from) else {
        require("JAM_APPLIANCE_DIR (deploy/appliance/build's output; tests/run sets it)", false);
        return None;
    };
    Some(dir)
}

fn assert_no_panic(vm: &Vm) {
    let console = vm.console();
    assert!(!console.contains("Kernel panic"), "{console}");
}

#[test]
fn the_appliance_serves_and_powers_off_on_the_power_button() {
    let Some(dir) = appliance() else { return };
    let mut vm = Vm::boot(&dir, "button", &[]);
    let took = vm.wait_served(Instant::now());
    eprintln!("appliance: first reply {took:?} after QEMU started");
    vm.wait_console("jam init: eth0 is 10.0.2.15/24, gateway 10.0.2.2");
    // Clients connected when the button is pressed: idle ones, and busy ones that have sent 200
    // requests in one write and read the first reply, so the server holds all 200.
    let addr = ([127, 0, 0, 1], vm.port).into();
    let mut idle: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut idle {
        c.time();
    }
    let mut busy: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut busy {
        c.send(&b"TIME\r\n".repeat(200));
        assert_time(&c.line());
    }
    let pressed = Instant::now();
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    // Every reply owed is delivered, then the notice, then an orderly close; then the power-off.
    for c in &mut busy {
        let rest = c.rest();
        let lines: Vec<&str> = rest.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 200, "{rest}");
        lines[..199].iter().for_each(|l| assert_time(l));
        assert_eq!(lines[199], "ERROR server shutting down\r\n");
    }
    for c in &mut idle {
        assert_eq!(c.rest(), "ERROR server shutting down\r\n");
    }
    assert_eq!(vm.exit_code(), 0);
    eprintln!(
        "appliance: 4 idle and 4 busy clients (796 replies still unread) served, powered off {:?} after the button",
        pressed.elapsed()
    );
    let console = vm.console();
    for line in ["jam init: power button pressed: powering off", "stopped: served ", "reboot: Power down"] {
        assert!(console.contains(line), "{line:?} missing:\n{console}");
    }
    assert_no_panic(&vm);
}

#[test]
fn the_appliance_powers_off_on_ctrl_alt_del() {
    let Some(dir) = appliance() else { return };
    let mut vm = Vm::boot(&dir, "cad", &[]);
    vm.wait_served(Instant::now());
    vm.qmp(
        r#"{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}"#,
    );
    assert_eq!(vm.exit_code(), 0);
    let console = vm.console();
    assert!(console.contains("jam init: received SIGINT: powering off"), "{console}");
    assert!(console.contains("reboot: Power down"), "{console}");
    assert_no_panic(&vm);
}

#[test]
fn a_broken_ip_parameter_is_reported_not_a_panic() {
    let Some(dir) = appliance() else { return };
    let mut vm = Vm::boot(&dir, "badip", &["--ip", "10.0.2.300::10.0.2.2"]);
    vm.wait_console("jam init: bad ip=10.0.2.300::10.0.2.2: the address \"10.0.2.300\" is not an IPv4 address; the network is not configured");
    // The server still starts (on lo), and the machine still powers off on request.
    vm.wait_console("listening on 0.0.0.0:45000");
    vm.qmp(r#"{"execute":"system_powerdown"}"#);
    assert_eq!(vm.exit_code(), 0);
    assert_no_panic(&vm);
}
