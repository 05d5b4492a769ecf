//! A private Redis Cluster for tests: `redis-server --cluster-enabled yes`
//! processes on free ports (plaintext or TLS), joined with `redis-cli --cluster create`, killed
//! and deleted when dropped. The machine's shared Redis is never touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually;
use crate::processes::{kill_child, redis_cli, wait_for_port};

/// One node of a [`RedisCluster`].
struct Node {
    port: u16,
    process: Option<Child>,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    /// The servers' TLS arguments; empty: plaintext.
    tls: Vec<String>,
    /// redis-cli's TLS arguments.
    cli_tls: Vec<String>,
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each, every slot
    /// covered, every replica in sync with its master.
    pub async fn start(masters: usize, replicas: usize) -> Self {
        Self::start_with(masters, replicas, None).await
    }

    /// Like [`RedisCluster::start`], every port (clients, the cluster bus,
    /// replication) over TLS with the server certificate of `certs`
    /// (clients need not present one).
    pub async fn start_tls(
        masters: usize,
        replicas: usize,
        certs: &crate::tls::Certificates,
    ) -> Self {
        Self::start_with(masters, replicas, Some(certs)).await
    }

    async fn start_with(
        masters: usize,
        replicas: usize,
        certs: Option<&crate::tls::Certificates>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-cluster-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            tls: Vec::new(),
            cli_tls: Vec::new(),
        };
        if let Some(certs) = certs {
            cluster.tls = ["--tls-cluster", "yes", "--tls-replication", "yes"]
                .map(String::from)
                .to_vec();
            cluster.tls.extend(certs.redis_server_args());
            cluster.cli_tls = vec!["--tls".into(), "--cacert".into(), certs.ca()];
        }
        for _ in 0..masters * (1 + replicas) {
            let port = free_cluster_port(&cluster.ports());
            cluster.nodes.push(Node {
                port,
                process: None,
            });
            cluster.launch(cluster.nodes.len() - 1);
        }
        for port in cluster.ports() {
            wait_for_port("cluster node", port).await;
        }
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(&cluster.cli_tls)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli on PATH");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_until_healthy(masters, replicas).await;
        cluster
    }

    fn launch(&mut self, index: usize) {
        let port = self.nodes[index].port.to_string();
        let ports: [&str; 4] = if self.tls.is_empty() {
            ["--port", &port, "--tls-port", "0"]
        } else {
            ["--port", "0", "--tls-port", &port]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(&self.tls)
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            // A master that stops answering for 2 s is failed over.
            .args(["--cluster-node-timeout", "2000"])
            // Slots of a live master keep serving while another fails over.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.nodes[index].process = Some(child);
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// fred's cluster URL (`rediss-cluster://` over TLS): one node, the
    /// others as `node=` seeds.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_empty() {
            "redis-cluster"
        } else {
            "rediss-cluster"
        };
        let ports = self.ports();
        let seeds: Vec<String> = ports[1..]
            .iter()
            .map(|port| format!("node=127.0.0.1:{port}"))
            .collect();
        format!("{scheme}://127.0.0.1:{}?{}", ports[0], seeds.join("&"))
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(&self.cli_tls, port, args)
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The nodes as `CLUSTER NODES` on a live node reports them.
    fn nodes_table(&self) -> Vec<NodeRow> {
        let port = *self.live_ports().first().expect("a live node");
        self.cli(port, &["cluster", "nodes"])
            .lines()
            .filter_map(NodeRow::parse)
            .collect()
    }

    /// Port of the master that serves `slot` now.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.nodes_table()
            .into_iter()
            .find(|row| row.master && !row.failed && row.serves(slot))
            .map(|row| row.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Port of the master that serves `key` now.
    pub fn master_of_key(&self, key: &str) -> u16 {
        self.master_of_slot(platform::redis::hash_slot(key))
    }

    /// kill -9 the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        kill_child(&mut node.process);
    }

    /// Starts the killed node on `port` again with its cluster config: it
    /// rejoins, as a replica of the master promoted in its place.
    pub async fn restart(&mut self, port: u16) {
        let index = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node of this cluster");
        assert!(
            self.nodes[index].process.is_none(),
            "node {port} still runs"
        );
        self.launch(index);
        wait_for_port("cluster node", port).await;
    }

    /// Waits until every live node says the cluster is ok, with
    /// `masters` masters serving every slot and every one of them
    /// having `replicas` replicas whose link is up.
    pub async fn wait_until_healthy(&self, masters: usize, replicas: usize) {
        eventually(
            "the cluster healthy",
            Duration::from_secs(60),
            || async move {
                let ok = self.live_ports().iter().all(|port| {
                    self.cli(*port, &["cluster", "info"])
                        .contains("cluster_state:ok")
                });
                let rows = self.nodes_table();
                let live_masters: Vec<&NodeRow> =
                    rows.iter().filter(|r| r.master && !r.failed).collect();
                let synced_replicas = rows
                    .iter()
                    .filter(|r| !r.master && !r.failed)
                    .filter(|r| {
                        self.cli(r.port, &["info", "replication"])
                            .contains("master_link_status:up")
                    })
                    .count();
                (ok && live_masters.len() == masters && synced_replicas >= masters * replicas)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until a master other than `old` serves `slot` (the cluster
    /// promoted a replica).
    pub async fn wait_for_failover(&self, slot: u16, old: u16) -> u16 {
        eventually(
            &format!("a new master for slot {slot}"),
            Duration::from_secs(30),
            || async move {
                let rows = self.nodes_table();
                rows.into_iter()
                    .find(|row| row.master && !row.failed && row.port != old && row.serves(slot))
                    .map(|row| row.port)
            },
        )
        .await
    }

    /// The lowest slot the master on `port` serves.
    pub fn first_slot(&self, port: u16) -> u16 {
        self.nodes_table()
            .into_iter()
            .find(|row| row.port == port)
            .and_then(|row| row.slots.iter().map(|(first, _)| *first).min())
            .unwrap_or_else(|| panic!("{port} serves no slot"))
    }

    /// Moves the `count` lowest slots of the master on `from`, with their
    /// keys, to the master on `to`, with `redis-cli --cluster reshard` as
    /// an operator would.
    pub fn reshard(&self, from: u16, to: u16, count: u16) {
        let id = |port: u16| self.cli(port, &["cluster", "myid"]).trim().to_owned();
        let resharded = Command::new("redis-cli")
            .args(&self.cli_tls)
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli on PATH");
        assert!(
            resharded.status.success(),
            "redis-cli --cluster reshard failed: {}",
            String::from_utf8_lossy(&resharded.stdout)
        );
    }

    /// Ports of the live masters.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes_table()
            .into_iter()
            .filter(|row| row.master && !row.failed)
            .map(|row| row.port)
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill_child(&mut node.process);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One line of `CLUSTER NODES`.
struct NodeRow {
    port: u16,
    master: bool,
    failed: bool,
    /// Slot ranges served (masters only).
    slots: Vec<(u16, u16)>,
}

impl NodeRow {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
        let flags = *fields.get(2)?;
        let slots = fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
            .filter_map(|range| match range.split_once('-') {
                Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                None => range.parse().ok().map(|slot| (slot, slot)),
            })
            .collect();
        Some(Self {
            port,
            master: flags.contains("master"),
            failed: flags.contains("fail") && !flags.contains("fail?") || flags.contains("noaddr"),
            slots,
        })
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&slot))
    }
}

/// A port whose cluster bus port (+10,000) is free too.
fn free_cluster_port(taken: &[u16]) -> u16 {
    use std::net::TcpListener;
    for _ in 0..1_000 {
        let port = 20_000 + (rand_u16() % 20_000);
        if taken.contains(&port) {
            continue;
        }
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
}
