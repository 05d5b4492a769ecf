//! Real processes for tests: Herald's own binaries and private Redis servers
//! that a test may kill (the machine's shared servers are never stopped).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

/// Folder of the workspace's built binaries (`target/debug`), found from the
/// test executable (`target/debug/deps/<test>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("target directory")
}

/// Path of a workspace binary; fails with a hint when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --bins`, as `make test` does)",
        path.display()
    );
    path
}

/// Runs a binary to completion with the given environment.
pub fn run_binary(
    name: &str,
    vars: &std::collections::HashMap<String, String>,
    args: &[&str],
) -> Output {
    Command::new(binary(name))
        .args(args)
        .envs(vars)
        .env("HERALD__LOG__FORMAT", "text")
        .stdin(Stdio::null())
        .output()
        .expect("run binary")
}

/// A running child process, killed when dropped.
pub struct ChildGuard {
    pub name: String,
    child: Child,
}

impl ChildGuard {
    /// Starts a binary; its logs go to the test's output when `TEST_LOG` is set.
    pub fn spawn(
        name: &str,
        vars: &std::collections::HashMap<String, String>,
        args: &[&str],
    ) -> Self {
        let show_logs = std::env::var_os("TEST_LOG").is_some();
        let output = || {
            if show_logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        Self::spawn_with(name, vars, args, output(), output())
    }

    /// Starts a binary writing its logs (stderr) to `log_file`.
    pub fn spawn_logging_to(
        name: &str,
        vars: &std::collections::HashMap<String, String>,
        args: &[&str],
        log_file: &std::path::Path,
    ) -> Self {
        let file = std::fs::File::create(log_file).expect("create log file");
        Self::spawn_with(name, vars, args, Stdio::null(), Stdio::from(file))
    }

    fn spawn_with(
        name: &str,
        vars: &std::collections::HashMap<String, String>,
        args: &[&str],
        stdout: Stdio,
        stderr: Stdio,
    ) -> Self {
        let child = Command::new(binary(name))
            .args(args)
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn binary");
        Self {
            name: name.to_owned(),
            child,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_for_exit(timeout)
    }

    /// Waits (up to `timeout`) for the process to exit by itself.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private `redis-server` on a free port, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    process: Option<Child>,
    dir: PathBuf,
    persistence: &'static [&'static str],
    /// `--tls-*` arguments: the port then takes TLS connections only.
    tls: Vec<String>,
}

const NO_PERSISTENCE: &[&str] = &["--save", "", "--appendonly", "no"];
/// Every write is fsynced to the append-only file before Redis answers.
const AOF_ALWAYS: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
];

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = Self::reserve();
        server.restart().await;
        server
    }

    /// A server with `appendonly yes` and `appendfsync always`; its data
    /// survives `kill` + `restart`.
    pub async fn start_with_aof() -> Self {
        let mut server = Self::reserve();
        server.persistence = AOF_ALWAYS;
        server.restart().await;
        server
    }

    /// A server whose port takes TLS connections only, with the server
    /// certificate of `certs` (clients need not present one).
    pub async fn start_tls(certs: &crate::tls::Certificates) -> Self {
        let mut server = Self::reserve();
        server.tls = certs.redis_server_args();
        server.restart().await;
        server
    }

    /// Picks a port but starts nothing yet: for tests of a server that is
    /// not there when a service starts.
    pub fn reserve() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        Self {
            port,
            process: None,
            dir,
            persistence: NO_PERSISTENCE,
            tls: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_empty() {
            "redis"
        } else {
            "rediss"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let port = self.port.to_string();
        let ports: [&str; 4] = if self.tls.is_empty() {
            ["--port", &port, "--tls-port", "0"]
        } else {
            ["--port", "0", "--tls-port", &port]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(&self.tls)
            .args(self.persistence)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.process = Some(child);
        wait_for_port("private redis-server", self.port).await;
    }

    /// kill -9: no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `redis-cli <tls> -p <port> <args>` and returns its output.
pub fn redis_cli(tls: &[String], port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(tls)
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli on PATH");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// kill -9 of a process still running, if any.
pub fn kill_child(process: &mut Option<Child>) {
    if let Some(mut child) = process.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Waits (up to 10 s) until something accepts TCP connections on `port`.
pub async fn wait_for_port(what: &str, port: u16) {
    eventually(
        &format!("{what} to accept connections on {port}"),
        Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}
