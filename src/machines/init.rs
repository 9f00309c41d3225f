//! `jam init`: jam as PID 1 of the appliance, a virtual machine in which jam is the whole system.
//!
//! The kernel starts `/init` from the initramfs that `deploy/appliance/build` makes. jam notices
//! that it is PID 1 (or is told, `jam init`) and does what an init must: mounts /proc, /sys and
//! /dev; loads the kernel modules the build put in `/lib/modules/jam` (the network card's driver,
//! the ACPI power button, input events); configures `lo` and the interface named by the `ip=`
//! parameter of the kernel command line, which Debian's kernel does not do itself; serves;
//! reaps orphans; and never exits, since PID 1 exiting panics the kernel. The ACPI power button
//! (QEMU's `system_powerdown`) and ctrl-alt-del (which the kernel turns into SIGINT for PID 1)
//! stop the server gracefully and power the machine off. Problems are reported on the console
//! and the machine keeps running, so that a person can read them.
//!
//! Settings come from the kernel command line: the kernel gives PID 1 the `NAME=value` words it
//! does not know as environment variables, so `TZ=Asia/Jakarta JAM_LOG=debug` work as usual.

use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::server::shutdown::Shutdown;
use crate::{Error, error, notice, sys, warn};

/// Where the build puts the modules, and the file that lists them in load order.
pub const MODULES: &str = "/lib/modules/jam";
/// How long to wait for the network interface to appear once its driver is loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(5);

/// A static network configuration from the kernel's `ip=` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// The interface's address.
    pub address: Ipv4Addr,
    /// Its netmask (255.255.255.0 when not given).
    pub netmask: Ipv4Addr,
    /// The default route, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The interface (eth0 when not given).
    pub device: String,
}

/// Reads `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF` (the kernel's own format,
/// static addresses only) from a kernel command line. `None` when there is no `ip=`.
pub fn parse_ip(cmdline: &str) -> Option<Result<IpConfig, String>> {
    let value = cmdline.split_whitespace().rev().find_map(|w| w.strip_prefix("ip="))?;
    Some(parse_ip_value(value).map_err(|why| format!("bad ip={value}: {why}")))
}

fn parse_ip_value(value: &str) -> Result<IpConfig, String> {
    let f: Vec<&str> = value.split(':').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    if matches!(field(0), "dhcp" | "on" | "any" | "bootp" | "rarp") || field(6).starts_with("dhcp") {
        return Err("DHCP is not supported; give a static address, e.g. ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off".into());
    }
    let ip = |s: &str, what: &str| {
        s.parse::<Ipv4Addr>().map_err(|_| format!("{what} {s:?} is not an IPv4 address"))
    };
    let address = ip(field(0), "the address")?;
    let gateway = match field(2) {
        "" => None,
        g => Some(ip(g, "the gateway")?),
    };
    let netmask = match field(3) {
        "" => Ipv4Addr::new(255, 255, 255, 0),
        m => ip(m, "the netmask")?,
    };
    if u32::from(netmask).leading_ones() + u32::from(netmask).trailing_zeros() != 32 {
        return Err(format!("the netmask {netmask} is not contiguous"));
    }
    let device = match field(5) {
        "" => "eth0".to_string(),
        d => d.to_string(),
    };
    Ok(IpConfig { address, netmask, gateway, device })
}

/// Runs as PID 1. Returns only with an error before anything was changed (not PID 1).
pub fn run() -> Result<(), Error> {
    if std::process::id() != 1 {
        return Err(Error::new(
            "jam init runs as PID 1, the appliance's /init (see deploy/appliance/README.md)",
        ));
    }
    // Before any thread starts: every thread inherits the mask, and only the signal thread
    // below takes these signals, with sigwait.
    let signals = match sys::block_signals(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD]) {
        Ok(signals) => signals,
        Err(e) => {
            error!("jam init: {e}");
            SigSet::empty()
        }
    };
    notice!("jam {} init: starting as PID 1", env!("CARGO_PKG_VERSION"));
    mount_filesystems();
    // ctrl-alt-del: SIGINT to PID 1 instead of an immediate reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!("jam init: cannot take over ctrl-alt-del: {e}");
    }
    load_modules(Path::new(MODULES));
    configure_network();

    let shutdown = Shutdown::new();
    watch_signals(signals, shutdown.clone());
    watch_power_buttons(&shutdown);

    let env = |name: &str| std::env::var(name).ok();
    match crate::server::Config::from_env(&env) {
        Ok(config) => {
            if let Err(e) = crate::server::run_until(config, shutdown.clone()) {
                error!("jam init: the server stopped: {e}; waiting for the power button");
            }
        }
        Err(e) => error!("jam init: bad server settings on the kernel command line: {e}"),
    }
    // Whatever happened to the server, PID 1 stays until it is asked to power off.
    smol::block_on(shutdown.wait());
    power_off()
}

fn mount_filesystems() {
    let mounts: [(&str, &str, &str); 3] =
        [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")];
    for (source, target, fstype) in mounts {
        let _ = std::fs::create_dir_all(target);
        match mount(Some(source), target, Some(fstype), MsFlags::MS_NOSUID, None::<&str>) {
            Ok(()) => {}
            // Mounted already (devtmpfs may be, by the kernel).
            Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => error!("jam init: cannot mount {fstype} on {target}: {e}"),
        }
    }
}

/// Loads the modules that `dir/order` lists, in that order (the build resolved dependencies).
fn load_modules(dir: &Path) {
    let order = match std::fs::read_to_string(dir.join("order")) {
        Ok(order) => order,
        Err(e) => {
            warn!("jam init: no module list in {}: {e}", dir.display());
            return;
        }
    };
    let mut loaded = Vec::new();
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = dir.join(name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => {
                error!("jam init: cannot open module {}: {e}", path.display());
                continue;
            }
        };
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => loaded.push(name.trim_end_matches(".ko")),
            Err(e) => error!("jam init: cannot load module {}: {e}", path.display()),
        }
    }
    notice!("jam init: loaded modules: {}", loaded.join(" "));
}

fn configure_network() {
    if let Err(e) = sys::configure_interface("lo", Some((Ipv4Addr::LOCALHOST, Ipv4Addr::new(255, 0, 0, 0)))) {
        error!("jam init: cannot bring up lo: {e}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = match parse_ip(&cmdline) {
        None => {
            warn!("jam init: no ip= on the kernel command line; only lo is configured");
            return;
        }
        Some(Err(e)) => {
            error!("jam init: {e}; the network is not configured");
            return;
        }
        Some(Ok(config)) => config,
    };
    // The driver's probe may register the interface a moment after the module loads.
    let start = Instant::now();
    while nix::net::if_::if_nametoindex(config.device.as_str()).is_err() {
        if start.elapsed() > DEVICE_WAIT {
            error!(
                "jam init: no interface {} after {} s; the network is not configured",
                config.device,
                DEVICE_WAIT.as_secs()
            );
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = sys::configure_interface(&config.device, Some((config.address, config.netmask))) {
        error!("jam init: cannot configure {}: {e}", config.device);
        return;
    }
    if let Some(gw) = config.gateway {
        if let Err(e) = sys::add_default_route(gw) {
            error!("jam init: cannot add the default route via {gw}: {e}");
        }
    }
    notice!(
        "jam init: {} is {}/{}{}",
        config.device,
        config.address,
        u32::from(config.netmask).leading_ones(),
        config.gateway.map(|g| format!(", gateway {g}")).unwrap_or_default()
    );
}

/// SIGCHLD: reap every orphan that ends. SIGTERM and SIGINT (ctrl-alt-del): shut down.
fn watch_signals(signals: SigSet, shutdown: Shutdown) {
    let spawned = thread::Builder::new().name("jam-init-signals".into()).spawn(move || {
        loop {
            match signals.wait() {
                Ok(Signal::SIGCHLD) => {
                    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                        if status == WaitStatus::StillAlive {
                            break;
                        }
                    }
                }
                Ok(signal) => {
                    notice!("jam init: received {signal}: powering off");
                    shutdown.trigger();
                }
                Err(e) => {
                    error!("jam init: waiting for signals: {e}");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        error!("jam init: cannot start the signal thread: {e}");
    }
}

/// Watches every input device named "Power Button" (the ACPI button driver's) for KEY_POWER.
fn watch_power_buttons(shutdown: &Shutdown) {
    let Ok(entries) = std::fs::read_dir("/sys/class/input") else { return };
    let mut found = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let device_name = std::fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if device_name.trim() != "Power Button" {
            continue;
        }
        let Ok(mut dev) = File::open(format!("/dev/input/{name}")) else {
            warn!("jam init: cannot open /dev/input/{name}");
            continue;
        };
        found += 1;
        let shutdown = shutdown.clone();
        let _ = thread::Builder::new().name(format!("jam-init-{name}")).spawn(move || {
            // struct input_event on 64-bit Linux: a 16-byte timeval, then type, code, value.
            let mut event = [0u8; 24];
            while dev.read_exact(&mut event).is_ok() {
                let kind = u16::from_ne_bytes([event[16], event[17]]);
                let code = u16::from_ne_bytes([event[18], event[19]]);
                let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
                const EV_KEY: u16 = 1;
                const KEY_POWER: u16 = 116;
                if kind == EV_KEY && code == KEY_POWER && value == 1 {
                    notice!("jam init: power button pressed: powering off");
                    shutdown.trigger();
                }
            }
        });
    }
    if found == 0 {
        warn!("jam init: no power button found; ctrl-alt-del or SIGTERM still power off");
    }
}

fn power_off() -> ! {
    nix::unistd::sync();
    notice!("jam init: powering off");
    let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    error!("jam init: power off failed: {e:?}");
    // PID 1 must not exit: the kernel would panic.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

// The command line: arguments, help and parser.

/// `jam init --help`.
pub fn help() -> String {
    "jam init: PID 1 of the appliance, a virtual machine in which jam is the whole system

Usage: jam init        (or jam as /init with no arguments: it notices that it is PID 1)

Mounts /proc, /sys and /dev, loads the modules in /lib/modules/jam, configures lo and the
interface of the kernel's ip= parameter, serves on port 45000, reaps orphans, and powers off on
the ACPI power button, ctrl-alt-del or SIGTERM. Settings are the kernel command line's NAME=value
words (TZ, JAM_...). See deploy/appliance/README.md.
"
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_ip_parameters_parse() {
        let c =
            parse_ip("console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off quiet").unwrap().unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(c.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.device, "eth0");
        let c = parse_ip("ip=172.16.16.101").unwrap().unwrap();
        assert_eq!(
            (c.gateway, c.netmask, c.device.as_str()),
            (None, Ipv4Addr::new(255, 255, 255, 0), "eth0")
        );
        assert!(parse_ip("console=ttyS0 quiet").is_none());
    }

    #[test]
    fn broken_ip_parameters_say_why() {
        let e = parse_ip("ip=10.0.2.300::10.0.2.2").unwrap().unwrap_err();
        assert!(e.starts_with("bad ip=10.0.2.300::10.0.2.2: the address \"10.0.2.300\""), "{e}");
        assert!(parse_ip("ip=dhcp").unwrap().unwrap_err().contains("DHCP is not supported"));
        assert!(
            parse_ip("ip=10.0.0.1::10.0.0.254:255.0.255.0").unwrap().unwrap_err().contains("not contiguous")
        );
    }
}
