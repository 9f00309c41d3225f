//! Beyond one machine: the Kubernetes manifests (validated offline, hardening checked) and the
//! Swarm stack on a single-node swarm bound to loopback (replicas healthy, a killed task
//! replaced and a rolling update while a client keeps querying over the overlay network).
//! Everything the swarm test makes (the swarm itself, the stack, the client, the image) is
//! removed by a guard, also when a check fails.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{HANG, docker, docker_running, ok, repo, require, run, static_bin};

#[test]
fn the_kubernetes_manifests_validate_and_are_hardened() {
    let importable = Command::new("python3")
        .args(["-c", "import yaml, kubernetes_validate"])
        .status()
        .is_ok_and(|s| s.success());
    if !require("python3 with kubernetes-validate (pip install kubernetes-validate)", importable) {
        return;
    }
    let check = repo().join("deploy/kubernetes/check");
    let out = ok(&mut Command::new(&check));
    assert!(out.contains("4 objects valid (strict) against Kubernetes 1.25.0 and 1.37.0"), "{out}");

    // The check catches what a schema cannot: a weakened copy fails it.
    let tmp = std::env::temp_dir().join(format!("jam-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["kustomization.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "networkpolicy.yaml"] {
        let text = std::fs::read_to_string(repo().join("deploy/kubernetes").join(f)).unwrap();
        let weakened = text.replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false");
        std::fs::write(tmp.join(f), weakened).unwrap();
    }
    let out = run(Command::new(&check).arg("--dir").arg(&tmp));
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jam: root filesystem is writable"));
}

/// A single-node swarm, a stack and a client made by the test; all removed on drop.
struct Swarm {
    stack: String,
    image: String,
    client: String,
    /// Whether `swarm init` made docker_gwbridge (which `swarm leave` keeps).
    made_gwbridge: bool,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = run(&mut docker(&["rm", "-f", &self.client]));
        let _ = run(&mut docker(&["stack", "rm", &self.stack]));
        // The stack's tasks and network go asynchronously; wait so that leaving is clean.
        let label = format!("label=com.docker.stack.namespace={}", self.stack);
        let start = Instant::now();
        while start.elapsed() < HANG
            && !String::from_utf8_lossy(&run(&mut docker(&["ps", "-aq", "--filter", &label])).stdout)
                .trim()
                .is_empty()
        {
            thread::sleep(Duration::from_millis(250));
        }
        let _ = run(&mut docker(&["swarm", "leave", "--force"]));
        if self.made_gwbridge {
            let _ = run(&mut docker(&["network", "rm", "docker_gwbridge"]));
        }
        let _ = run(&mut docker(&["image", "rm", "-f", &self.image]));
    }
}

impl Swarm {
    fn service(&self) -> String {
        format!("{}_jam", self.stack)
    }

    /// The service's running task containers, once `n` of them are healthy.
    fn wait_healthy(&self, n: usize) -> Vec<String> {
        let label = format!("label=com.docker.swarm.service.name={}", self.service());
        let start = Instant::now();
        loop {
            let ids = ok(&mut docker(&["ps", "-q", "--filter", &label, "--filter", "health=healthy"]));
            let ids: Vec<String> = ids.lines().map(str::to_string).collect();
            if ids.len() == n {
                return ids;
            }
            assert!(start.elapsed() < HANG * 6, "{} healthy tasks, not {n}", ids.len());
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn replies(&self) -> usize {
        let out = run(&mut docker(&["logs", &self.client]));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("JAM ")).count()
    }

    fn wait_more_replies(&self, than: usize) -> usize {
        let start = Instant::now();
        loop {
            let n = self.replies();
            if n > than + 2 {
                return n;
            }
            assert!(start.elapsed() < HANG * 3, "the client stopped getting replies at {n}");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn the_swarm_stack_keeps_serving_through_a_lost_task_and_a_rolling_update() {
    if !docker_running() || static_bin().is_none() {
        return;
    }
    let state = ok(&mut docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]));
    assert_eq!(state.trim(), "inactive", "this Docker engine is already in a swarm; the test makes its own");
    let id = std::process::id();
    let had_gwbridge = run(&mut docker(&["network", "inspect", "docker_gwbridge"])).status.success();
    let swarm = Swarm {
        stack: format!("jamtest{id}"),
        image: format!("jam:test-swarm-{id}"),
        client: format!("jamtest{id}-client"),
        made_gwbridge: !had_gwbridge,
    };
    // Loopback only: the swarm's control plane listens nowhere else.
    ok(&mut docker(&["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"]));
    ok(Command::new(repo().join("deploy/image")).args(["--arch", "amd64", "--tag", &swarm.image]));
    // --resolve-image never: nothing is pulled, the local image is used as it is.
    ok(docker(&[
        "stack",
        "deploy",
        "--resolve-image",
        "never",
        "-c",
        "deploy/swarm/stack.yml",
        &swarm.stack,
    ])
    .current_dir(repo())
    .env("JAM_IMAGE", &swarm.image));
    let first = swarm.wait_healthy(3);

    // A client on the overlay network, asking the replicas (tasks.jam, resolved anew for every
    // connection) five times a second.
    let network = format!("{}_lab", swarm.stack);
    ok(&mut docker(&[
        "run",
        "-d",
        "--name",
        &swarm.client,
        "--network",
        &network,
        &swarm.image,
        "query",
        "tasks.jam",
        "--reconnect",
        "--count",
        "0",
        "--interval",
        "200ms",
        "--timeout",
        "2s",
    ]));
    let replies = swarm.wait_more_replies(0);

    // A task lost: the swarm replaces it, and the client carries on.
    ok(&mut docker(&["kill", &first[0]]));
    let start = Instant::now();
    let replaced = loop {
        let now = swarm.wait_healthy(3);
        if !now.contains(&first[0]) {
            break now;
        }
        assert!(start.elapsed() < HANG * 3, "the killed task was not replaced");
        thread::sleep(Duration::from_millis(250));
    };
    let replies = swarm.wait_more_replies(replies);

    // A rolling update of every task (start-first, one at a time), the client still carrying on.
    ok(&mut docker(&[
        "service",
        "update",
        "--detach=false",
        "--quiet",
        "--env-add",
        "JAM_LOG=info",
        "--update-monitor",
        "2s",
        "--update-delay",
        "1s",
        &swarm.service(),
    ]));
    let updated = swarm.wait_healthy(3);
    assert!(updated.iter().all(|c| !replaced.contains(c)), "some tasks were not replaced by the update");
    for c in &updated {
        let env = ok(&mut docker(&["inspect", "-f", "{{json .Config.Env}}", c]));
        assert!(env.contains("JAM_LOG=info"), "{env}");
    }
    swarm.wait_more_replies(replies);
    let running = ok(&mut docker(&["inspect", "-f", "{{.State.Running}}", &swarm.client]));
    assert_eq!(running.trim(), "true", "the client gave up");
    let log = run(&mut docker(&["logs", &swarm.client]));
    let failed = String::from_utf8_lossy(&log.stderr).lines().filter(|l| l.contains("trying again")).count();
    eprintln!("swarm: {} replies, {failed} failed attempts during the kill and the update", swarm.replies());

    let stack = swarm.stack.clone();
    drop(swarm);
    let label = format!("label=com.docker.stack.namespace={stack}");
    assert_eq!(ok(&mut docker(&["ps", "-aq", "--filter", &label])).trim(), "");
    assert_eq!(ok(&mut docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])).trim(), "inactive");
    let gwbridge = run(&mut docker(&["network", "inspect", "docker_gwbridge"])).status.success();
    assert_eq!(gwbridge, had_gwbridge, "docker_gwbridge left behind");
}
