//! A private Redis master with one replica, watched by one Sentinel, for
//! tests: `redis-server` and `redis-server --sentinel` on free ports,
//! killed and deleted when dropped. The machine's shared Redis is never
//! touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::processes::{kill_child, redis_cli, wait_for_port};
use crate::{eventually, free_port};

/// The name the Sentinel knows the master by.
pub const SERVICE: &str = "herald";

/// One data server (the master or its replica).
struct Server {
    port: u16,
    process: Option<Child>,
}

pub struct RedisSentinel {
    servers: Vec<Server>,
    sentinel_port: u16,
    sentinel: Option<Child>,
    dir: PathBuf,
}

impl RedisSentinel {
    /// A master and its replica, in sync, and a Sentinel (quorum 1) that
    /// knows both and fails the master over after 1 s of silence.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "herald-sentinel-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let mut sentinel = Self {
            servers: Vec::new(),
            sentinel_port: free_port(),
            sentinel: None,
            dir,
        };
        let master = free_port();
        sentinel.servers.push(Server {
            port: master,
            process: None,
        });
        sentinel.launch(0, None);
        wait_for_port("sentinel's master", master).await;
        let replica = free_port();
        sentinel.servers.push(Server {
            port: replica,
            process: None,
        });
        sentinel.launch(1, Some(master));
        wait_for_port("sentinel's replica", replica).await;
        sentinel.launch_sentinel(master);
        wait_for_port("sentinel", sentinel.sentinel_port).await;
        sentinel.wait_until_replicated().await;
        sentinel
    }

    /// Starts the data server `index`; as a replica of `master` if given.
    /// Each has its own directory: a replica's full sync writes an RDB file.
    fn launch(&mut self, index: usize, master: Option<u16>) {
        let port = self.servers[index].port;
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("server dir");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        if let Some(master) = master {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.servers[index].process = Some(child);
    }

    fn launch_sentinel(&mut self, master: u16) {
        // Sentinel rewrites its configuration file as it learns: its own file.
        let config = self.dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n",
                port = self.sentinel_port,
                dir = self.dir.display(),
            ),
        )
        .expect("sentinel config");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.sentinel = Some(child);
    }

    /// fred's Sentinel URL: the Sentinel, and the name of the master.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}",
            self.sentinel_port
        )
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(&[], port, args)
    }

    /// The port of the master as the Sentinel names it now.
    pub fn master(&self) -> u16 {
        self.cli(
            self.sentinel_port,
            &["sentinel", "get-master-addr-by-name", SERVICE],
        )
        .lines()
        .nth(1)
        .and_then(|port| port.trim().parse().ok())
        .expect("the sentinel names a master")
    }

    /// kill -9 the data server on `port`.
    pub fn kill(&mut self, port: u16) {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of this setup");
        kill_child(&mut server.process);
    }

    /// Starts the killed server on `port` again, as a replica of the
    /// current master (as the Sentinel would reconfigure it anyway).
    pub async fn restart(&mut self, port: u16) {
        let index = self
            .servers
            .iter()
            .position(|s| s.port == port)
            .expect("a server of this setup");
        assert!(self.servers[index].process.is_none(), "{port} still runs");
        let master = self.master();
        self.launch(index, Some(master));
        wait_for_port("restarted redis-server", port).await;
    }

    /// Waits until the Sentinel names a master other than `old`, and that
    /// server says it is a master.
    pub async fn wait_for_failover(&self, old: u16) -> u16 {
        eventually(
            "the sentinel to promote the replica",
            Duration::from_secs(30),
            || async move {
                let master = self.master();
                (master != old
                    && self
                        .cli(master, &["info", "replication"])
                        .contains("role:master"))
                .then_some(master)
            },
        )
        .await
    }

    /// Waits until the master has a replica in sync and the Sentinel
    /// knows it.
    pub async fn wait_until_replicated(&self) {
        eventually(
            "the replica in sync and known to the sentinel",
            Duration::from_secs(60),
            || async move {
                let master = self.master();
                let replicas = self
                    .servers
                    .iter()
                    .filter(|s| s.port != master && s.process.is_some())
                    .filter(|s| {
                        self.cli(s.port, &["info", "replication"])
                            .contains("master_link_status:up")
                    })
                    .count();
                let known = self.sentinel_knows_a_live_replica_of(master);
                (replicas >= 1 && known).then_some(())
            },
        )
        .await;
    }
}

impl RedisSentinel {
    /// Whether the Sentinel lists a replica of `master` that is up (flags
    /// exactly `slave`, not `s_down` or `disconnected`) with its link to
    /// the master up. `SENTINEL REPLICAS` answers, per replica, a flat
    /// list of field names and values.
    fn sentinel_knows_a_live_replica_of(&self, master: u16) -> bool {
        let listed = self.cli(self.sentinel_port, &["sentinel", "replicas", SERVICE]);
        let lines: Vec<&str> = listed.lines().map(str::trim).collect();
        let mut replicas: Vec<std::collections::HashMap<&str, &str>> = Vec::new();
        for pair in lines.chunks(2) {
            let [field, value] = pair else { break };
            if *field == "name" {
                replicas.push(std::collections::HashMap::new());
            }
            if let Some(replica) = replicas.last_mut() {
                replica.insert(field, value);
            }
        }
        let master = master.to_string();
        replicas.iter().any(|r| {
            r.get("flags") == Some(&"slave")
                && r.get("master-link-status") == Some(&"ok")
                && r.get("master-port") == Some(&master.as_str())
        })
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let processes = self
            .servers
            .iter_mut()
            .map(|s| &mut s.process)
            .chain(std::iter::once(&mut self.sentinel));
        for process in processes {
            kill_child(process);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
