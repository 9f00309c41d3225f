//! The Unix calls jam makes, through nix, kept in one place: a leaf that knows nothing of jam's
//! policy (which signals stop what is [`crate::server::shutdown`]'s business).
//!
//! # Unsafe
//! jam's only `unsafe` code is here, and only for ioctls that nix can declare but not call
//! safely: TUNSETIFF (`jam wire`'s TAP devices), the interface ioctls SIOCSIFADDR,
//! SIOCSIFNETMASK, SIOCGIFFLAGS and SIOCSIFFLAGS, and SIOCADDRT (`jam init`, which has no `ip`
//! command). Each block passes a request built on the stack that outlives the call, and says why
//! that is sound beside it. Also `listen` itself, in [`set_backlog`]: nix's safe wrapper caps
//! the queue at musl's `SOMAXCONN` of 128, which is the very figure the setting exists to raise.
//! And `accept4`, in [`accept_nonblocking`]: nix's safe wrapper does not return the client's
//! address, which would cost a `getpeername` per connection. And `jam capture`'s packet socket
//! ([`packet_socket`], [`packet_statistics`]): the BPF filter, the bind to an interface, the
//! kernel's drop count, none of which nix wraps. The rest of the crate denies
//! `unsafe_code`; `main.rs` forbids it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket};

use crate::Error;

/// Blocks `signals` in the calling thread and returns them as a set, for [`wait_for_signal`].
///
/// Call it first thing, before any thread exists: threads inherit the signal mask, so the
/// signals then reach only the thread that waits for them with `sigwait`, and no handler runs
/// in the middle of the executor. This also works when jam is PID 1 in a container, where the
/// kernel drops signals that have the default action: a blocked signal is queued, not dropped.
pub fn block_signals(signals: &[Signal]) -> Result<SigSet, Error> {
    let mut set = SigSet::empty();
    for &signal in signals {
        set.add(signal);
    }
    set.thread_block().map_err(|e| Error::new(format!("cannot block {signals:?}: {e}")))?;
    Ok(set)
}

/// Waits until a signal of `set` arrives (the set must be blocked).
pub fn wait_for_signal(set: &SigSet) -> Option<Signal> {
    set.wait().ok()
}

/// Raises this process's soft limit on open files to the hard limit and returns the new soft
/// limit. Every connection is a file descriptor; the default soft limit (often 1024) would cap
/// the server far below what the machine can hold.
pub fn raise_open_files_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        // Without an answer, assume the usual default.
        Err(_) => 1024,
    }
}

/// Sets TCP_NODELAY on a listening socket. Linux gives the option to every connection accepted
/// from it, which saves a system call per connection.
pub fn set_nodelay_for_accepted(listener: &std::net::TcpListener) -> io::Result<()> {
    nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true).map_err(Into::into)
}

/// Sets the length of `listener`'s accept queue: connections the kernel has completed that the
/// server has not yet accepted. std listens with 128; calling `listen` again on a listening
/// socket changes the length, and Linux caps it at `net.core.somaxconn` (4096 since Linux 5.4).
#[allow(unsafe_code)]
pub fn set_backlog(listener: &std::net::TcpListener, backlog: u32) -> io::Result<()> {
    let backlog = nix::libc::c_int::try_from(backlog).unwrap_or(nix::libc::c_int::MAX);
    // SAFETY: `listen` takes a descriptor and a number; the descriptor is borrowed from a live
    // listener for the length of the call.
    let result = unsafe { nix::libc::listen(listener.as_raw_fd(), backlog) };
    Errno::result(result).map(drop).map_err(Into::into)
}

/// Accepts a client as a non-blocking socket, with its address: one `accept4`, where std's
/// `accept` and then `set_nonblocking` take a second call (an `ioctl`) per connection.
#[allow(unsafe_code)]
pub fn accept_nonblocking(listener: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    use nix::libc;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::FromRawFd;
    // SAFETY: an all-zero sockaddr_storage is a valid value of that plain C struct.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the address buffer and its length live on this stack frame for the whole call,
    // and the length tells the kernel the buffer's size; the descriptor is borrowed from a live
    // listener.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&raw mut storage).cast::<libc::sockaddr>(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: `accept4` returned a new descriptor that nothing else owns.
    let stream = std::net::TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let peer = match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel filled in a sockaddr_in, as the family says, which fits in the
            // storage; read_unaligned makes no assumption about its alignment.
            let a: libc::sockaddr_in = unsafe { std::ptr::read_unaligned((&raw const storage).cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned((&raw const storage).cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id))
        }
        family => return Err(io::Error::other(format!("accepted a socket of address family {family}"))),
    };
    Ok((stream, peer))
}

/// Starts a non-blocking TCP connection from `source` to `target`: binding before connecting is
/// what lets `jam lab`'s clients speak from 127.16.16.102 and .103, and std cannot do it. The
/// connection is under way when this returns; wait for the socket to be writable.
pub fn connect_from(source: SocketAddr, target: SocketAddr) -> io::Result<std::net::TcpStream> {
    let family = if target.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd: OwnedFd = socket(family, SockType::Stream, flags, None)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(source))?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(std::net::TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// Opens a TAP interface named `name` (an Ethernet device whose frames this process reads and
/// writes), for `jam wire`. The interface exists for as long as the returned file is open.
#[allow(unsafe_code)]
pub fn open_tap(name: &str) -> io::Result<std::fs::File> {
    use nix::libc;
    nix::ioctl_readwrite_bad!(tunsetiff, libc::TUNSETIFF, libc::ifreq);
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    let mut request = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_flags: flags })?;
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    // SAFETY: `request` is a valid, initialised ifreq that lives across the call; TUNSETIFF
    // reads it and writes the interface's name back into it, and keeps no pointer to it.
    unsafe { tunsetiff(file.as_raw_fd(), &mut request) }?;
    Ok(file)
}

/// An IPv4 address as the kernel's generic `sockaddr` (family, port 0, address).
fn sockaddr_v4(ip: std::net::Ipv4Addr) -> nix::libc::sockaddr {
    use nix::libc;
    let mut sa_data = [0 as libc::c_char; 14];
    for (dst, src) in sa_data[2..6].iter_mut().zip(ip.octets()) {
        *dst = src as libc::c_char;
    }
    libc::sockaddr { sa_family: libc::AF_INET as libc::sa_family_t, sa_data }
}

/// An interface request for `name`, checked to fit the kernel's name field.
fn ifreq(name: &str, ifru: nix::libc::__c_anonymous_ifr_ifru) -> io::Result<nix::libc::ifreq> {
    use nix::libc;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
    }
    let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(libc::ifreq { ifr_name, ifr_ifru: ifru })
}

/// Brings interface `name` up, with `address`/`netmask` if given, for `jam init`, which has no
/// `ip` command to call.
//
// The classic socket ioctls (SIOCSIFADDR and friends), which nix can declare but not call safely.
#[allow(unsafe_code)]
pub fn configure_interface(
    name: &str,
    address: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
) -> io::Result<()> {
    use nix::libc;
    nix::ioctl_write_ptr_bad!(set_addr, libc::SIOCSIFADDR, libc::ifreq);
    nix::ioctl_write_ptr_bad!(set_netmask, libc::SIOCSIFNETMASK, libc::ifreq);
    nix::ioctl_readwrite_bad!(get_flags, libc::SIOCGIFFLAGS, libc::ifreq);
    nix::ioctl_write_ptr_bad!(set_flags, libc::SIOCSIFFLAGS, libc::ifreq);
    let sock: OwnedFd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    let fd = sock.as_raw_fd();
    if let Some((ip, mask)) = address {
        let addr = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_addr: sockaddr_v4(ip) })?;
        let netmask = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_netmask: sockaddr_v4(mask) })?;
        // SAFETY: each request is a valid, initialised ifreq that outlives its call; these
        // ioctls only read it.
        unsafe {
            set_addr(fd, &addr)?;
            set_netmask(fd, &netmask)?;
        }
    }
    let mut flags = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_flags: 0 })?;
    // SAFETY: SIOCGIFFLAGS fills `ifru_flags` of a valid ifreq, which is then the union's field
    // to read; SIOCSIFFLAGS only reads the request.
    unsafe {
        get_flags(fd, &mut flags)?;
        flags.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        set_flags(fd, &flags)?;
    }
    Ok(())
}

/// Adds a default route through `gateway`.
#[allow(unsafe_code)]
pub fn add_default_route(gateway: std::net::Ipv4Addr) -> io::Result<()> {
    use nix::libc;
    nix::ioctl_write_ptr_bad!(add_route, libc::SIOCADDRT, libc::rtentry);
    let sock: OwnedFd = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    // SAFETY: an all-zero rtentry is valid (null device pointer: the kernel picks the interface
    // from the gateway); the fields that matter are set below, and SIOCADDRT only reads it.
    unsafe {
        let mut route: libc::rtentry = std::mem::zeroed();
        route.rt_dst = sockaddr_v4(std::net::Ipv4Addr::UNSPECIFIED);
        route.rt_genmask = sockaddr_v4(std::net::Ipv4Addr::UNSPECIFIED);
        route.rt_gateway = sockaddr_v4(gateway);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        add_route(sock.as_raw_fd(), &route)?;
    }
    Ok(())
}

/// A packet socket (AF_PACKET) for `jam capture`: `cooked` hands up each frame from its IP
/// header with the link-layer facts in the address (SOCK_DGRAM, as `tcpdump -i any`), else whole
/// frames (SOCK_RAW); on interface `ifindex` only, or on every one (0). `filter`, classic BPF
/// instructions (code, jump if true, jump if false, constant), is attached
/// before the socket is bound, so that no frame it would drop is ever queued. Needs CAP_NET_RAW.
//
// SO_ATTACH_FILTER and the bind to a `sockaddr_ll`: nix has no safe call for either. Each passes
// a structure built on the stack that outlives the call, which the kernel only reads.
#[allow(unsafe_code)]
pub fn packet_socket(cooked: bool, ifindex: u32, filter: &[(u16, u8, u8, u32)]) -> io::Result<OwnedFd> {
    use nix::libc;
    let kind = if cooked { SockType::Datagram } else { SockType::Raw };
    // Protocol 0: the socket receives nothing until it is bound with a protocol, below.
    let sock: OwnedFd = socket(AddressFamily::Packet, kind, SockFlag::SOCK_CLOEXEC, None)?;
    let fd = sock.as_raw_fd();
    let program: Vec<libc::sock_filter> =
        filter.iter().map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let fprog =
        libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies the program.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is a valid value; the fields that matter are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll on the stack for the call, with its true length.
    let bound = unsafe {
        libc::bind(fd, (&raw const addr).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Frames a packet socket has received and dropped (its queue full) since the last call:
/// PACKET_STATISTICS, which resets as it is read.
//
// getsockopt with a `tpacket_stats`, which nix does not declare.
#[allow(unsafe_code)]
pub fn packet_statistics(sock: &OwnedFd) -> io::Result<(u64, u64)> {
    use nix::libc;
    let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes of the sizes given, for the call.
    let got = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &mut len,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stats.tp_packets as u64, stats.tp_drops as u64))
}
