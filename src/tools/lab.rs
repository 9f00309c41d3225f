//! `jam lab`: the course's three-machine experiment on the loopback range, without root or Docker.
//!
//! Linux routes all of 127.0.0.0/8 to the loopback interface, so any 127.x.y.z address can be
//! bound without configuration. The lab's addresses keep their last two numbers: mesin1 serves
//! on 127.16.16.101, and mesin2 and mesin3 connect from 127.16.16.102 and 127.16.16.103, so the
//! server's log reads like the lab's (`connection from 127.16.16.102:…`). Everything runs in this
//! one process and is printed as one transcript on stdout, each line after its machine's name.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use futures_lite::future;
use lexopt::prelude::*;
use smol::Timer;

use crate::server::clock::{Clock, Zone};
use crate::server::protocol::DEFAULT_PORT;
use crate::server::reactor::Reactor;
use crate::server::shutdown::Shutdown;
use crate::server::{self, Limits};
use crate::settings::{self, Env, Parsed, show, text, usage, value};
use crate::tools::client::{Session, Target};
use crate::{Error, outln};

/// mesin1, the server.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(127, 16, 16, 101);
/// mesin2 and mesin3, the clients.
pub const CLIENTS: [(&str, Ipv4Addr); 2] =
    [("mesin2", Ipv4Addr::new(127, 16, 16, 102)), ("mesin3", Ipv4Addr::new(127, 16, 16, 103))];

/// Settings of `jam lab`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabArgs {
    /// mesin1's port; 0 for any free one.
    pub port: u16,
    /// Sessions (connect, TIME, QUIT) each client runs.
    pub rounds: u64,
    /// The pause between a client's sessions.
    pub interval: Duration,
    /// `--tz`.
    pub zone_flag: Option<String>,
    /// The `TZ` environment variable.
    pub zone_env: Option<String>,
}

impl Default for LabArgs {
    fn default() -> LabArgs {
        LabArgs {
            port: DEFAULT_PORT,
            rounds: 3,
            interval: Duration::from_secs(1),
            zone_flag: None,
            zone_env: None,
        }
    }
}

/// Runs the experiment; succeeds when every client's every query was answered.
pub fn run(args: &LabArgs) -> Result<(), Error> {
    let zone = Zone::resolve(args.zone_flag.as_deref(), args.zone_env.as_deref())?;
    let bind = SocketAddr::from((SERVER, args.port));
    let listener = TcpListener::bind(bind).map_err(|e| {
        Error::new(format!("cannot listen on {bind}: {e} (is a lab already running? try --port)"))
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::new(format!("cannot read the port mesin1 listens on: {e}")))?
        .port();
    outln!("jam lab: the course's three machines on the loopback range (time zone {})", zone.name)?;
    outln!("  mesin1  {SERVER}:{port}  serves TIME")?;
    for (name, ip) in CLIENTS {
        outln!("  {name}  {ip}        asks {} times, every {}", args.rounds, show(args.interval))?;
    }
    outln!()?;
    crate::log::to_stdout("mesin1 | ");

    let target = Target { host: SERVER.to_string(), port };
    let reactor = Reactor::new().map_err(|e| Error::new(format!("cannot start the reactor: {e}")))?;
    let shutdown = Shutdown::new();
    let (served, results) = thread::scope(|scope| {
        // A second thread in the reactor, as `jam serve --threads 2` runs: the server's
        // connection tasks move between the two threads. The clients run in this thread's
        // future; their sockets are async-io's, which its own thread drives, and its wakes reach
        // this thread through the reactor's eventfd.
        let done = Shutdown::new();
        let helper = {
            let (done, reactor) = (done.clone(), &reactor);
            scope.spawn(move || reactor.block_on(done.wait()))
        };
        let serving = server::serve(
            &reactor,
            listener,
            Clock::new(zone),
            Limits::default(),
            shutdown.clone(),
            Default::default(),
        );
        let clients = async {
            let [(a, a_ip), (b, b_ip)] = CLIENTS;
            let results =
                future::zip(client(a, a_ip.into(), &target, args), client(b, b_ip.into(), &target, args))
                    .await;
            shutdown.trigger();
            results
        };
        let (served, results) = reactor.block_on(future::zip(serving, clients));
        done.trigger();
        let _ = helper.join();
        (served, results)
    });
    served.map_err(|e| Error::new(format!("cannot serve: {e}")))?;
    let answered = results.0? + results.1?;
    let asked = 2 * args.rounds;
    outln!()?;
    if answered == asked {
        outln!("jam lab: every client was served: {answered} of {asked} queries answered")
    } else {
        Err(Error::new(format!("only {answered} of {asked} queries were answered")))
    }
}

/// One client machine: `rounds` sessions of connect, TIME, QUIT. Returns how many were answered.
async fn client(name: &str, source: IpAddr, target: &Target, args: &LabArgs) -> Result<u64, Error> {
    let mut answered = 0;
    for round in 0..args.rounds {
        if round > 0 {
            Timer::after(args.interval).await;
        }
        let session = async {
            let mut s =
                Session::connect_from(Some(source), target, crate::tools::client::DEFAULT_QUERY_TIMEOUT)
                    .await?;
            let reply = s.time().await?;
            s.quit().await?;
            Ok::<String, Error>(reply)
        };
        match session.await {
            Ok(reply) => {
                answered += 1;
                outln!("{name} | TIME -> {reply}")?;
            }
            Err(e) => outln!("{name} | failed: {e}")?,
        }
    }
    Ok(answered)
}

// The command line: arguments, help and parser.

/// `jam lab --help`.
pub fn help() -> String {
    let d = LabArgs::default();
    format!(
        "jam lab: the course's three-machine experiment on the loopback range

Usage: jam lab [OPTIONS]

Needs no root and no Docker. mesin1 serves on 127.16.16.101; mesin2 and mesin3 connect from
127.16.16.102 and 127.16.16.103 at the same time, each running connect, TIME, QUIT a few times.
Prints the transcript, the server's log included, and exits 0 when every query was answered.

Options:
  -p, --port PORT         mesin1's port; 0 for any free one [default: {port}]
  -n, --rounds N          sessions each client runs [default: {rounds}]
  -i, --interval DUR      pause between a client's sessions [default: {interval}]
      --tz ZONE           time zone of the replies [env: TZ] [default: the system's, else UTC]
  -h, --help              print this help
",
        port = d.port,
        rounds = d.rounds,
        interval = show(d.interval),
    )
}

/// Parses `jam lab`'s arguments.
pub fn parse(p: &mut lexopt::Parser, env: Env) -> Result<Parsed<LabArgs>, Error> {
    let mut args = LabArgs { zone_env: env("TZ"), ..LabArgs::default() };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('p') | Long("port") => args.port = value(p, "--port", settings::port)?,
            Short('n') | Long("rounds") => args.rounds = value(p, "--rounds", settings::count)? as u64,
            Short('i') | Long("interval") => {
                args.interval = value(p, "--interval", settings::duration_or_zero)?
            }
            Long("tz") => args.zone_flag = Some(text(p)?),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Parsed::Run(args))
}
