//! PostgreSQL-side servers a test starts for itself: a private PostgreSQL
//! configured its way (TLS only; `initdb` into a scratch folder and
//! `postgres` as a child) and a PgBouncer, each killed and removed when
//! dropped. Both refuse to run as root, so as root they run as the OS user
//! `herald-dev` (the one `make run` uses for its own cluster; created here
//! when missing).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tls::Certificates;
use crate::{eventually, free_port};

const OS_USER: &str = "herald-dev";

pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PostgresServer {
    /// A server that takes TLS connections only (`hostnossl ... reject`),
    /// with the server certificate of `certs`; user `postgres`, trust auth.
    pub async fn start_tls_only(certs: &Certificates) -> Self {
        let bin = bin_dir();
        let owner = owner();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-pg-{}", uuid::Uuid::now_v7()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        chown(&dir, owner);
        let initdb = command(&bin.join("initdb"), owner)
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        for (from, to) in [
            (certs.server_cert(), "server.pem"),
            (certs.server_key(), "server.key"),
        ] {
            let target = data.join(to);
            std::fs::copy(from, &target).expect("copy certificate");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                .expect("key mode");
            chown(&target, owner);
        }
        append(
            &data.join("postgresql.conf"),
            &format!(
                "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
                 listen_addresses = '127.0.0.1'\nport = {port}\n\
                 unix_socket_directories = '{}'\nfsync = off\n",
                dir.display()
            ),
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("pg_hba.conf");
        let child = command(&bin.join("postgres"), owner)
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let server = Self { port, dir, child };
        let socket_dir = server.dir.clone();
        eventually(
            "private PostgreSQL to accept connections",
            Duration::from_secs(30),
            || {
                let socket_dir = socket_dir.clone();
                let pg_isready = bin.join("pg_isready");
                async move {
                    let ready = Command::new(pg_isready)
                        .arg("-h")
                        .arg(&socket_dir)
                        .args(["-p", &port.to_string(), "-U", "postgres"])
                        .stdout(Stdio::null())
                        .status()
                        .ok()?
                        .success();
                    ready.then_some(())
                }
            },
        )
        .await;
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, plus `query` when not empty.
    pub fn url(&self, query: &str) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian keeps PostgreSQL's server programs in /usr/lib/postgresql/<major>/bin.
fn bin_dir() -> PathBuf {
    let mut majors: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    majors.sort_by_key(|bin| {
        bin.parent()
            .and_then(|major| major.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    majors.pop().unwrap_or_else(|| {
        // Elsewhere (Fedora, Arch, Homebrew) they are on PATH.
        let initdb = Command::new("sh")
            .args(["-c", "command -v initdb"])
            .output()
            .expect("sh");
        let path = String::from_utf8_lossy(&initdb.stdout).trim().to_owned();
        assert!(!path.is_empty(), "PostgreSQL's initdb not found");
        PathBuf::from(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    })
}

/// The uid/gid the server runs as: `herald-dev` as root, else ourselves.
fn owner() -> Option<(u32, u32)> {
    if id(&["-u"]) != 0 {
        return None;
    }
    let exists = Command::new("id")
        .arg(OS_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        // Two tests creating it at once: one wins, the other's failure is harmless.
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                OS_USER,
            ])
            .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
            .status();
    }
    Some((id(&["-u", OS_USER]), id(&["-g", OS_USER])))
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes()).expect("write postgresql.conf");
}

/// A PgBouncer in transaction mode in front of the shared test PostgreSQL
/// (every database name maps to the same one there), with prepared
/// statements pooled (`max_prepared_statements`) and few server connections
/// per database, so clients' transactions really do share them. The binary
/// comes from `scripts/pgbouncer.sh` (1.21 or newer, built once if needed).
pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl PgBouncer {
    pub async fn start(server_port: u16, server_connections: usize) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pgbouncer.sh");
        let found = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/pgbouncer.sh runs");
        assert!(found.status.success(), "scripts/pgbouncer.sh failed");
        let binary = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
        let owner = owner();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-pgbouncer-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").expect("userlist");
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\n\
                 pool_mode = transaction\nmax_prepared_statements = 200\n\
                 default_pool_size = {server_connections}\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                dir = dir.display()
            ),
        )
        .expect("pgbouncer.ini");
        for file in ["", "userlist.txt", "pgbouncer.ini"] {
            chown(&dir.join(file), owner);
        }
        let child = command(&binary, owner)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        crate::processes::wait_for_port("PgBouncer", port).await;
        Self { port, dir, child }
    }

    /// What PgBouncer logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
