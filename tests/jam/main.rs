//! jam's integration tests, in one test binary (ripgrep's layout): one module per level.
//!
//! - `server`: the server in-process over real sockets on 127.0.0.1, exact bytes.
//! - `binary`: the real `jam` executable as a subprocess: signals, exit codes, nc, the static build.
//! - `capture`: `jam capture` and `jam show` on real captures, with tshark as the oracle (root).
//! - `check`: `jam check` against jam, the sheet's server and servers with one known fault each.
//! - `container`: the FROM scratch image and the compose lab (needs Docker).
//! - `netns`: the network-namespace lab of deploy/netns (needs root).
//! - `appliance`: jam as PID 1 of a QEMU virtual machine (needs qemu-system-x86_64).
//! - `orchestrators`: the Kubernetes manifests (offline) and the Swarm stack (needs Docker).
//! - `grade`: `jam grade`, a small class in bubblewrap sandboxes, the hostile contained (root).
//! - `layout`: the house's rules read from the source: dependencies one way, the papers.
//! - `metrics`: `jam serve --metrics` scraped by a real Prometheus, and checked by promtool.
//! - `reliability`: load at this machine's ceiling, and bench/soak's abuse, briefly.
//! - `web`: `jam capture --web` in a real headless browser, and its viewers (root, chromium).
//!
//! Tests that need something this machine may lack (nc, Docker, root) skip with a loud message on
//! a laptop and fail under `CI=true`; see `support::require`.

mod appliance;
mod binary;
mod capture;
mod check;
mod container;
mod grade;
mod layout;
mod metrics;
mod netns;
mod orchestrators;
mod reliability;
mod server;
mod support;
mod web;
