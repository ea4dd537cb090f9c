//! A real PostgreSQL (Debian's `postgresql`: `initdb` and `postgres` in a temporary directory)
//! and a real PgBouncer in transaction mode in front of it, on free loopback ports.
//!
//! One cluster serves the whole test binary ([`shared`]); every test gets a database of its
//! own ([`Cluster::database`]), so tests never see each other's rows. The outage test starts a
//! cluster of its own ([`Cluster::start`]) to stop and restart it.
//!
//! As root (CI), the servers run as the unprivileged `postgres` user (PostgreSQL refuses root).
//! Each server runs under a small shell that holds the read end of a pipe whose write end this
//! process keeps: when the test binary ends — passed, failed or killed — the pipe closes, and
//! the shell stops its server and removes the directory. Nothing is left running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chamada::store::postgres::{self, PgSettings, PgStore};
use secrecy::SecretString;
use tokio_postgres::NoTls;

pub const HASH_KEY: &str = "test-hash-key-0123456789abcdef0123456789";
const USER: &str = "chamada";

/// Which way the store reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through PgBouncer, `pool_mode = transaction`.
    Pooler,
}

/// A server process under its guard shell.
struct Guarded {
    child: Child,
    /// Closing it (or writing a line) stops the server.
    stop: Option<ChildStdin>,
}

impl Guarded {
    /// Stops the server and waits until it has exited.
    fn stop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            let _ = stop.write_all(b"stop\n");
        }
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    pub bouncer_port: u16,
    postgres: Option<Guarded>,
    bouncer: Option<Guarded>,
    /// Removes the directory when this process ends (after the servers stopped).
    _janitor: Option<Guarded>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The test binary's cluster, started on first use.
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(Cluster::start)
}

/// `postgres` when running as root (PostgreSQL will not), else nobody: run as ourselves.
fn run_as() -> Option<&'static str> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    (String::from_utf8_lossy(&uid.stdout).trim() == "0").then_some("postgres")
}

/// A command run as the servers' user.
fn as_server_user(program: &Path) -> Command {
    match run_as() {
        Some(user) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .arg("--init-groups")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The directory of PostgreSQL's server programs: the newest `/usr/lib/postgresql/*/bin`, or
/// `pg_config --bindir`.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL installed (scripts/test installs Debian's postgresql)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn pgbouncer_bin() -> PathBuf {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("PgBouncer installed (scripts/test installs Debian's pgbouncer)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program args…` as the servers' user under a guard shell: a line on (or the end of)
/// its standard input sends `signal` to the program and waits for it to exit.
fn guarded(program: &Path, args: &[String], signal: &str) -> Guarded {
    let script =
        format!("\"$@\" & pid=$!; read _; kill -{signal} $pid 2>/dev/null; wait $pid; exit 0");
    let mut command = as_server_user(Path::new("/bin/sh"));
    command
        .arg("-c")
        .arg(script)
        .arg("guard")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("the server starts");
    let stop = child.stdin.take();
    Guarded { child, stop }
}

/// Polls `pg_isready` until the server on `port` accepts connections.
fn wait_ready(bin: &Path, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
            .args(["-d", "postgres", "-t", "1"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never accepted connections"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

impl Cluster {
    /// `initdb`, PostgreSQL (with `pg_stat_statements`) and PgBouncer, ready.
    pub fn start() -> Cluster {
        let bin = postgres_bin();
        let n = DATABASES.fetch_add(1, Ordering::SeqCst);
        // As another user, a directory that user can reach (a TMPDIR under /root is not).
        let base = match run_as() {
            Some(_) => PathBuf::from("/tmp"),
            None => std::env::temp_dir(),
        };
        let dir = base.join(format!("chamada-pg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = run_as() {
            let chowned = Command::new("chown")
                .args([user, dir.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(chowned.success());
        }
        let janitor = Self::janitor(&dir);
        let initdb = as_server_user(&bin.join("initdb"))
            .args(["-D", dir.join("data").to_str().unwrap()])
            .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .arg("--no-instructions")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let bouncer_port = free_port();
        let mut cluster = Cluster {
            dir,
            bin,
            port,
            bouncer_port,
            postgres: None,
            bouncer: None,
            _janitor: janitor,
        };
        cluster.make_certificates();
        cluster.start_postgres();
        cluster.setup_roles();
        cluster.start_bouncer();
        cluster
    }

    /// A guard shell that removes `dir` when this process's end closes its pipe.
    fn janitor(dir: &Path) -> Option<Guarded> {
        let script = "read _; for _ in $(seq 100); do [ -e \"$0/data/postmaster.pid\" ] || break; sleep 0.1; done; rm -rf \"$0\"";
        let mut command = as_server_user(Path::new("/bin/sh"));
        command
            .arg("-c")
            .arg(script)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().ok()?;
        let stop = child.stdin.take();
        Some(Guarded { child, stop })
    }

    /// Starts PostgreSQL on the cluster's directory and port (again, after [`stop_postgres`]).
    pub fn start_postgres(&mut self) {
        let data = self.dir.join("data");
        let args: Vec<String> = [
            "-D",
            data.to_str().unwrap(),
            "-p",
            &self.port.to_string(),
            "-k",
            self.dir.to_str().unwrap(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "shared_preload_libraries=pg_stat_statements",
            "-c",
            "pg_stat_statements.track=top",
            // TLS for whoever asks (sslmode=require); the others stay in plain text.
            "-c",
            "ssl=on",
            "-c",
            &format!("ssl_cert_file={}", self.dir.join("server.crt").display()),
            "-c",
            &format!("ssl_key_file={}", self.dir.join("server.key").display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // SIGINT: fast shutdown (clients disconnected, nothing waited for).
        self.postgres = Some(guarded(&self.bin.join("postgres"), &args, "INT"));
        wait_ready(&self.bin, self.port, "PostgreSQL");
    }

    /// A test CA (`ca.pem`, the test's `DATABASE_CA_CERT`) and the server's certificate it
    /// signs, for the name `localhost` only (ECDSA P-256), made with the `openssl` command.
    fn make_certificates(&self) {
        let dir = &self.dir;
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl installed (Debian's ca-certificates depends on it)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Chamada test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&ca);
        let mut csr = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
        csr.extend(ec);
        csr.extend(["-out", "server.csr"]);
        openssl(&csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        if let Some(user) = run_as() {
            for file in ["server.key", "server.crt"] {
                let chowned = Command::new("chown")
                    .args([user, dir.join(file).to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(chowned.success());
            }
        }
    }

    /// The test CA's certificate file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Stops PostgreSQL (fast shutdown) and waits until it has exited. PgBouncer stays.
    pub fn stop_postgres(&mut self) {
        if let Some(mut postgres) = self.postgres.take() {
            postgres.stop();
        }
    }

    fn start_bouncer(&mut self) {
        let ini = self.dir.join("pgbouncer.ini");
        let users = self.dir.join("userlist.txt");
        std::fs::write(&users, format!("\"{USER}\" \"\"\n")).unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {bouncer}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = transaction\n\
                 max_client_conn = 2000\n\
                 default_pool_size = 20\n\
                 server_reset_query =\n\
                 server_login_retry = 1\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\n",
                port = self.port,
                bouncer = self.bouncer_port,
                users = users.display(),
                log = self.dir.join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        if let Some(user) = run_as() {
            for file in [&ini, &users] {
                Command::new("chown")
                    .args([user, file.to_str().unwrap()])
                    .status()
                    .unwrap();
            }
        }
        // SIGTERM: immediate shutdown.
        self.bouncer = Some(guarded(
            &pgbouncer_bin(),
            &[ini.to_str().unwrap().to_string()],
            "TERM",
        ));
        wait_ready(&self.bin, self.bouncer_port, "PgBouncer");
    }

    /// Supabase's two API roles, so the tests can show what they may do (nothing).
    fn setup_roles(&self) {
        let psql = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg("create role anon nologin; create role authenticated nologin;")
            .output()
            .unwrap();
        assert!(psql.status.success(), "{psql:?}");
    }

    /// The connection string of `database` by `route` (loopback, no TLS).
    pub fn url(&self, database: &str, route: Route) -> String {
        let port = match route {
            Route::Direct => self.port,
            Route::Pooler => self.bouncer_port,
        };
        format!("postgres://{USER}@127.0.0.1:{port}/{database}?sslmode=disable")
    }

    /// A new, empty database of this cluster, for one test.
    pub async fn database(&self) -> String {
        let name = format!("t{}", DATABASES.fetch_add(1, Ordering::SeqCst));
        let admin = self.admin("postgres").await;
        admin
            .batch_execute(&format!("create database {name}"))
            .await
            .unwrap();
        name
    }

    /// A superuser session on `database`, directly.
    pub async fn admin(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = self
            .url(database, Route::Direct)
            .parse::<tokio_postgres::Config>()
            .unwrap()
            .connect(NoTls)
            .await
            .expect("the test cluster answers");
        tokio::spawn(connection);
        client
    }

    /// A migrated database of its own, and a store on it by `route`.
    pub async fn store(&self, route: Route) -> (Arc<PgStore>, String) {
        let database = self.database().await;
        let settings = self.settings(&database, route);
        postgres::migrate(&settings)
            .await
            .expect("migrations apply");
        (
            Arc::new(PgStore::new(settings, &SecretString::from(HASH_KEY))),
            database,
        )
    }

    pub fn settings(&self, database: &str, route: Route) -> PgSettings {
        PgSettings::parse(&SecretString::from(self.url(database, route)), None).unwrap()
    }

    /// Top-level statements the server ran on `database` so far (`pg_stat_statements`), not
    /// counting this count's own, the migrations' or PgBouncer's health checks (`select 1`).
    pub async fn statements(&self, database: &str) -> i64 {
        let admin = self.admin(database).await;
        admin
            .batch_execute("create extension if not exists pg_stat_statements")
            .await
            .unwrap();
        let row = admin
            .query_one(
                "select coalesce(sum(calls), 0)::int8 from pg_stat_statements \
                 where dbid = (select oid from pg_database where datname = current_database()) \
                   and query not ilike '%pg_stat_statements%' \
                   and query not ilike '%schema_migrations%' \
                   and query <> 'select $1'",
                &[],
            )
            .await
            .unwrap();
        row.get(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut bouncer) = self.bouncer.take() {
            bouncer.stop();
        }
        self.stop_postgres();
        if let Some(mut janitor) = self._janitor.take() {
            janitor.stop();
        }
    }
}
