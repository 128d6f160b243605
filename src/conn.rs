//! Connection settings as psql users expect them, and connecting without ever printing
//! a password.
//!
//! TLS follows libpq: `sslmode` (disable, allow, prefer — the default —, require,
//! verify-ca, verify-full), `sslrootcert` (a file, or `system`), `sslcert` and `sslkey`,
//! from the URL's query or the `key=value` string, else `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGSSLCERT`, `PGSSLKEY`, else `~/.postgresql/root.crt`, `postgresql.crt` and
//! `postgresql.key` when they exist. A root certificate, when there is one, is checked
//! in every mode that uses TLS (so `require` then acts as `verify-ca`, as in libpq).
//! tokio-postgres understands only disable/prefer/require, so these parameters are taken
//! out of the string here and the rest is handed to [`tokio_postgres::Config`].
//!
//! Time limits follow libpq too, with one difference: `connect_timeout` (URL, `key=value`
//! string, else `PGCONNECT_TIMEOUT`; whole seconds, 0 or negative waits forever, 1 means
//! 2) bounds the whole connection start — TCP connect, TLS, authentication, the server's
//! first `ReadyForQuery` — per host, as libpq's does; without one pgphase waits
//! [`DEFAULT_CONNECT_TIMEOUT`] where libpq would wait forever. TCP keepalives are on, as
//! in libpq (`keepalives`, `keepalives_idle`, `keepalives_interval`, `keepalives_count`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{CancelToken, Client, Config, NoTls, Socket};

/// How long a connection may take to start when neither the connection string nor
/// `PGCONNECT_TIMEOUT` says (libpq would wait forever; a server that accepts TCP and
/// never answers must not hang a pipeline).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, with a printable description that never contains the password.
#[derive(Clone)]
pub struct ConnInfo {
    config: Config,
    tls: Tls,
    /// The limit on starting a connection (per host); `None` waits forever.
    connect_timeout: Option<Duration>,
    /// The password was found in the password file (for this database), not given.
    password_from_pgpass: bool,
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS (unverified) only if the server refuses plain connections.
    Allow,
    /// TLS when the server offers it, else plain (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked only if a root certificate is present.
    Require,
    /// TLS, and the server certificate must chain to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> anyhow::Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => bail!(
                "invalid sslmode `{other}`: expected disable, allow, prefer, require, verify-ca or verify-full"
            ),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the trusted root certificates come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RootCert {
    /// `sslrootcert=system`: the operating system's trusted roots.
    System,
    File(PathBuf),
}

/// The TLS parameters after the string and the environment had their say; the
/// `~/.postgresql` defaults are looked at when connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tls {
    mode: SslMode,
    root_cert: Option<RootCert>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The connection-string parameters handled here rather than by tokio-postgres: TLS
/// (see the module), `connect_timeout` (libpq's meaning, which tokio-postgres applies to
/// the TCP connect only) and libpq's `keepalives_count` (tokio-postgres calls it
/// `keepalives_retries`).
const LOCAL_PARAMS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "keepalives_count",
];

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl ConnInfo {
    /// From `--database-url` / `DATABASE_URL`, else libpq's `PG*` variables.
    /// Returns `None` when nothing says where to connect.
    pub fn resolve(url: Option<&str>) -> anyhow::Result<Option<ConnInfo>> {
        if let Some(url) = url {
            return Ok(Some(ConnInfo::parse(url)?));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if env("PGHOST").is_none() && env("PGDATABASE").is_none() && env("PGPORT").is_none() {
            return Ok(None);
        }
        let mut config = Config::new();
        config.host(env("PGHOST").unwrap_or_else(|| "localhost".into()));
        if let Some(p) = env("PGPORT") {
            config.port(
                p.parse()
                    .with_context(|| format!("PGPORT `{p}` is not a port number"))?,
            );
        }
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
        config.dbname(env("PGDATABASE").unwrap_or_else(|| user.clone()));
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        }
        Ok(Some(ConnInfo::finish(config, Vec::new(), &env)?))
    }

    /// Parses a `postgres://` URL or a `key=value` connection string.
    pub fn parse(url: &str) -> anyhow::Result<ConnInfo> {
        ConnInfo::parse_with_env(url, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// A libpq service: the section `[name]` of the connection service file
    /// (`PGSERVICEFILE`, else `~/.pg_service.conf`, else `PGSYSCONFDIR/pg_service.conf`),
    /// its `key=value` lines taken as a connection string, as libpq's `service=name`.
    /// Values are never echoed in errors (a service file may hold a password).
    pub fn from_service(name: &str) -> anyhow::Result<ConnInfo> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(f) = env("PGSERVICEFILE") {
            files.push(f.into());
        } else if let Some(h) = env("HOME") {
            files.push(Path::new(&h).join(".pg_service.conf"));
        }
        if let Some(d) = env("PGSYSCONFDIR") {
            files.push(Path::new(&d).join("pg_service.conf"));
        }
        for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            if let Some(pairs) = service_section(&text, name) {
                let string = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                    .collect::<Vec<_>>()
                    .join(" ");
                return ConnInfo::parse(&string).map_err(|_| {
                    anyhow::anyhow!(
                        "service `{name}` in {} is not a valid connection (its keys: {})",
                        f.display(),
                        pairs
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            }
        }
        bail!(
            "service `{name}` not found in {}",
            if files.is_empty() {
                "any service file (set PGSERVICEFILE or HOME)".to_string()
            } else {
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            }
        )
    }

    /// [`ConnInfo::parse`] with the environment given, for tests.
    fn parse_with_env(url: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ConnInfo> {
        let (rest, tls_params) = split_tls_params(url).map_err(|e| {
            anyhow::anyhow!(
                "cannot parse the database URL ({}); expected postgres://user[:password]@host[:port]/dbname",
                redact_error(&e, url)
            )
        })?;
        let config: Config = match rest.parse() {
            Ok(c) => c,
            // tokio-postgres' message can echo the input; say what is wrong without it
            Err(e) => bail!(
                "cannot parse the database URL ({}); expected postgres://user[:password]@host[:port]/dbname",
                redact_error(&e.to_string(), url)
            ),
        };
        ConnInfo::finish(config, tls_params, env)
    }

    /// Adds what the string left out: application name, password from the password
    /// file, TLS parameters and `connect_timeout` from the environment.
    fn finish(
        mut config: Config,
        tls_params: Vec<(String, String)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ConnInfo> {
        if config.get_application_name().is_none() {
            config.application_name("pgphase");
        }
        let mut password_from_pgpass = false;
        if config.get_password().is_none() {
            if let Some(pw) = pgpass_lookup(&config) {
                config.password(pw);
                password_from_pgpass = true;
            }
        }
        let param = |name: &str, var: &str| {
            tls_params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| if var.is_empty() { None } else { env(var) })
        };
        let root_cert = param("sslrootcert", "PGSSLROOTCERT").map(|v| match v.as_str() {
            "system" => RootCert::System,
            _ => RootCert::File(v.into()),
        });
        let mode = match param("sslmode", "PGSSLMODE") {
            Some(m) => SslMode::parse(&m)?,
            // as libpq: the system's roots trust too much for anything weaker
            None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            bail!(
                "sslmode={} may not be used with sslrootcert=system: use sslmode=verify-full",
                mode.as_str()
            );
        }
        let tls = Tls {
            mode,
            root_cert,
            cert: param("sslcert", "PGSSLCERT").map(PathBuf::from),
            key: param("sslkey", "PGSSLKEY").map(PathBuf::from),
        };
        let connect_timeout = match param("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(v) => parse_connect_timeout(&v)?,
            None => Some(DEFAULT_CONNECT_TIMEOUT),
        };
        if let Some(n) = param("keepalives_count", "") {
            config.keepalives_retries(n.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid integer value \"{n}\" for connection option \"keepalives_count\""
                )
            })?);
        }
        Ok(ConnInfo {
            config,
            tls,
            connect_timeout,
            password_from_pgpass,
        })
    }

    /// The limit on starting a connection (per host); `None` waits forever.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The `sslmode` in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// `postgres://user@host:port/db`, never with the password.
    pub fn redacted(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                Host::Tcp(s) => s.clone(),
                Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{}:{}/{}",
            self.config.get_user().unwrap_or(""),
            host,
            port,
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// The same connection (host, port, user, TLS, time limits) to another database of
    /// the same server. A password given (URL, `PGPASSWORD`, service) is kept; one found
    /// in the password file is looked up again for that database (a line naming it wins;
    /// without one the password found for the first database — same server, same user —
    /// is kept).
    pub fn with_dbname(&self, dbname: &str) -> ConnInfo {
        let mut c = self.clone();
        c.config.dbname(dbname);
        if c.password_from_pgpass {
            if let Some(pw) = pgpass_lookup(&c.config) {
                c.config.password(pw);
            }
        }
        c
    }

    /// The database this connects to.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    pub fn with_application_name(&self, name: &str) -> ConnInfo {
        let mut c = self.clone();
        c.config.application_name(name);
        c
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(self.connect_watched().await?.client)
    }

    /// Connects, and keeps a way to learn when the connection ends.
    pub async fn connect_watched(&self) -> anyhow::Result<Connected> {
        self.connect_tls()
            .await
            .with_context(|| format!("cannot connect to {}", self.redacted()))
    }

    /// Asks the server to cancel the statement running on the session `token` belongs
    /// to (a new connection, as libpq's `PQcancel`), within the connect timeout.
    pub async fn cancel(&self, token: &CancelToken) -> anyhow::Result<()> {
        let limit = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let sent = match self.tls.mode {
            SslMode::Disable => tokio::time::timeout(limit, token.cancel_query(NoTls)).await,
            mode => {
                let mode = if mode == SslMode::Allow {
                    SslMode::Require
                } else {
                    mode
                };
                let (tls, _) = self.tls.connector(mode)?;
                tokio::time::timeout(limit, token.cancel_query(tls)).await
            }
        };
        match sent {
            Ok(r) => Ok(r?),
            Err(_) => bail!(
                "no answer to the cancel request within {} s",
                limit.as_secs()
            ),
        }
    }

    async fn connect_tls(&self) -> anyhow::Result<Connected> {
        let unix_only = self
            .config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)));
        // as libpq: TLS is never used over a Unix socket
        let mode = if unix_only && !self.config.get_hosts().is_empty() {
            SslMode::Disable
        } else {
            self.tls.mode
        };
        let mut config = self.config.clone();
        if let Some(limit) = self.connect_timeout {
            // the TCP connect, per address; spawn_connection bounds the rest
            config.connect_timeout(limit);
        }
        let limit = self.connect_timeout;
        match mode {
            SslMode::Disable => {
                config.ssl_mode(PgSslMode::Disable);
                Ok(spawn_connection(&config, NoTls, limit).await?)
            }
            SslMode::Allow => {
                config.ssl_mode(PgSslMode::Disable);
                match spawn_connection(&config, NoTls, limit).await {
                    Ok(client) => Ok(client),
                    // e.g. pg_hba.conf allows only `hostssl`: try again with TLS
                    Err(ConnectError::Pg(plain)) if plain.as_db_error().is_some() => {
                        self.connect_over_tls(config, PgSslMode::Require, SslMode::Require)
                            .await
                    }
                    Err(plain) => Err(plain.into()),
                }
            }
            SslMode::Prefer => self.connect_over_tls(config, PgSslMode::Prefer, mode).await,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.connect_over_tls(config, PgSslMode::Require, mode)
                    .await
            }
        }
    }

    /// Connects with TLS as `mode` asks; a rejected server certificate is explained
    /// in one line rather than OpenSSL's error stack.
    async fn connect_over_tls(
        &self,
        mut config: Config,
        negotiate: PgSslMode,
        mode: SslMode,
    ) -> anyhow::Result<Connected> {
        config.ssl_mode(negotiate);
        let (tls, rejected) = self.tls.connector(mode)?;
        match spawn_connection(&config, tls, self.connect_timeout).await {
            Ok(client) => Ok(client),
            Err(e) => {
                let Some(reason) = rejected.lock().ok().and_then(|mut r| r.take()) else {
                    return Err(e.into());
                };
                let root = match &self.tls.root_cert {
                    Some(RootCert::System) => "the system's trusted roots".to_string(),
                    Some(RootCert::File(p)) => format!("sslrootcert={}", p.display()),
                    None => format!("sslrootcert={}", default_file("root.crt").display()),
                };
                bail!(
                    "the server's certificate was rejected: {reason} (sslmode={}, checked against {root})",
                    mode.as_str()
                )
            }
        }
    }
}

/// A connected client, and how to learn that its connection ended.
pub struct Connected {
    pub client: Client,
    pub ended: ConnectionEnd,
}

/// Resolves when the connection's task ends (the server closed it, the network failed,
/// or the client was dropped), with the reason.
#[derive(Clone)]
pub struct ConnectionEnd(tokio::sync::watch::Receiver<Option<String>>);

impl ConnectionEnd {
    /// Waits until the connection has ended; returns why.
    pub async fn wait(&mut self) -> String {
        match self.0.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "the connection ended".to_string(),
        }
    }
    /// Whether it has ended already.
    pub fn has_ended(&self) -> bool {
        self.0.borrow().is_some()
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    #[error("no answer within {} s (connect_timeout; set connect_timeout in the connection string or PGCONNECT_TIMEOUT to wait longer, 0 to wait forever)", .0.as_secs())]
    TimedOut(Duration),
}

/// Connects within `limit` per host (the whole start: TCP, TLS, authentication, the
/// server's first ReadyForQuery) and runs the connection on its own task; errors
/// surface on the next query through the client, and on [`Connected::ended`].
async fn spawn_connection<T>(
    config: &Config,
    tls: T,
    limit: Option<Duration>,
) -> Result<Connected, ConnectError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let connecting = config.connect(tls);
    let (client, connection) = match limit {
        None => connecting.await?,
        Some(limit) => {
            let hosts = config
                .get_hosts()
                .len()
                .max(config.get_hostaddrs().len())
                .max(1);
            let total = limit.saturating_mul(hosts as u32);
            tokio::time::timeout(total, connecting)
                .await
                .map_err(|_| ConnectError::TimedOut(limit))??
        }
    };
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let why = match connection.await {
            Ok(()) => "the connection was closed".to_string(),
            Err(e) => crate::error::describe_db_error(&e),
        };
        let _ = tx.send(Some(why));
    });
    Ok(Connected {
        client,
        ended: ConnectionEnd(rx),
    })
}

/// libpq's reading of `connect_timeout`: whole seconds; zero or negative waits forever;
/// 1 is taken as 2 (libpq's minimum).
fn parse_connect_timeout(text: &str) -> anyhow::Result<Option<Duration>> {
    let n: i64 = text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid integer value \"{text}\" for connection option \"connect_timeout\""
        )
    })?;
    Ok(match n {
        n if n <= 0 => None,
        1 => Some(Duration::from_secs(2)),
        n => Some(Duration::from_secs(n as u64)),
    })
}

/// `~/.postgresql/NAME`, libpq's default place for certificates.
fn default_file(name: &str) -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".postgresql")
        .join(name)
}

impl Tls {
    /// The OpenSSL connector for `mode` (never `Disable`), and where it notes why it
    /// rejected the server's certificate, if it does. The OpenSSL context (trusted
    /// roots, client certificate) is built once per process for each set of files and
    /// shared: building one reads the system's whole certificate bundle, which cost a
    /// fleet command most of its CPU when every connection did it.
    fn connector(&self, mode: SslMode) -> anyhow::Result<(MakeTlsConnector, Rejection)> {
        // Only the roots asked for: the connector starts out trusting the system's.
        let root = self.root_cert.clone().or_else(|| {
            let default = default_file("root.crt");
            default.is_file().then_some(RootCert::File(default))
        });
        if root.is_none() && mode.verifies() {
            bail!(
                "sslmode={} needs the root certificate that signed the server's certificate: \
                 set sslrootcert=/path/to/ca.crt (URL parameter or PGSSLROOTCERT), or \
                 sslrootcert=system for the system's trusted roots, or put it at {}",
                mode.as_str(),
                default_file("root.crt").display()
            );
        }
        let cert = self.cert.clone().or_else(|| {
            let default = default_file("postgresql.crt");
            default.is_file().then_some(default)
        });
        let cert = cert.map(|cert| {
            let key = self
                .key
                .clone()
                .unwrap_or_else(|| default_file("postgresql.key"));
            (cert, key)
        });
        let context = shared_context(root.as_ref(), cert.as_ref())?;
        // as libpq: a root certificate, when present, is checked in every TLS mode; the
        // reason of a rejection is noted per connection
        let rejected = Rejection::default();
        let slot = rejected.clone();
        let verifies = root.is_some();
        let check_name = mode == SslMode::VerifyFull;
        let mut connector = MakeTlsConnector::new(context);
        connector.set_callback(move |config, _domain| {
            config.set_verify_hostname(check_name);
            if verifies {
                let slot = slot.clone();
                config.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
                    if !ok {
                        if let Ok(mut slot) = slot.lock() {
                            slot.get_or_insert_with(|| ctx.error().to_string());
                        }
                    }
                    ok
                });
            }
            Ok(())
        });
        Ok((connector, rejected))
    }
}

/// The OpenSSL context for these roots and this client certificate (cert, key), built
/// on first use and kept for the life of the process.
fn shared_context(
    root: Option<&RootCert>,
    cert: Option<&(PathBuf, PathBuf)>,
) -> anyhow::Result<SslConnector> {
    type Contexts =
        std::collections::HashMap<(Option<RootCert>, Option<(PathBuf, PathBuf)>), SslConnector>;
    static CONTEXTS: std::sync::OnceLock<std::sync::Mutex<Contexts>> = std::sync::OnceLock::new();
    let key = (root.cloned(), cert.cloned());
    let contexts = CONTEXTS.get_or_init(Default::default);
    if let Some(context) = contexts.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(context);
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    match root {
        Some(RootCert::System) => {}
        Some(RootCert::File(path)) => {
            let pem = std::fs::read(path).with_context(|| {
                format!("could not read root certificate file {}", path.display())
            })?;
            let certs = X509::stack_from_pem(&pem).with_context(|| {
                format!("could not read root certificate file {}", path.display())
            })?;
            let mut store = X509StoreBuilder::new()?;
            for cert in certs {
                store.add_cert(cert)?;
            }
            builder.set_cert_store(store.build());
        }
        None => {}
    }
    builder.set_verify(if root.is_some() {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    if let Some((cert, key)) = cert {
        load_client_cert(&mut builder, cert, key)?;
    }
    let context = builder.build();
    if let Ok(mut contexts) = contexts.lock() {
        contexts.insert(key, context.clone());
    }
    Ok(context)
}

/// Why certificate verification failed, as OpenSSL's verifier said it.
type Rejection = std::sync::Arc<std::sync::Mutex<Option<String>>>;

fn load_client_cert(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    builder
        .set_certificate_chain_file(cert)
        .with_context(|| format!("could not load client certificate {}", cert.display()))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .with_context(|| format!("could not load client key {}", key.display()))?;
    builder.check_private_key().with_context(|| {
        format!(
            "client key {} does not match certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(())
}

/// Takes [`LOCAL_PARAMS`] out of a URL's query or a `key=value` string: the rest,
/// and the parameters taken, in order.
fn split_tls_params(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut taken = Vec::new();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let Some((base, query)) = text.split_once('?') else {
            return Ok((text.to_string(), taken));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k);
            if LOCAL_PARAMS.contains(&key.as_str()) {
                taken.push((key, percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    // key=value form: re-emitted quoted, which tokio-postgres reads back the same
    let mut rest = Vec::new();
    for (key, value) in parse_keyword_values(text)? {
        if LOCAL_PARAMS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            rest.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((rest.join(" "), taken))
}

/// libpq's `key=value` syntax: whitespace-separated, optional spaces around `=`,
/// values optionally in single quotes, backslash escapes.
fn parse_keyword_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("missing `=` after `{key}`"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value of `{key}`")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `%XX` escapes decoded (a `+` stays a `+`, as libpq reads URLs).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_error(msg: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.password() {
            Some(pw) if !pw.is_empty() => msg.replace(pw, "***"),
            _ => msg.to_string(),
        },
        Err(_) => msg.to_string(),
    }
}

/// The `key=value` lines of section `[name]` of a pg_service.conf text (`#` comments).
fn service_section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if found {
                break;
            }
            inside = section.trim() == name;
            found = inside;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                pairs.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    found.then_some(pairs)
}

/// `~/.pgpass` (or `PGPASSFILE`): `host:port:db:user:password`, `*` wildcards.
/// The first matching line wins; a Unix-socket host matches `localhost`. Public so the
/// choice can be tested.
pub fn pgpass_lookup(config: &Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(s) => s.clone(),
        Host::Unix(_) => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let db = config.get_dbname().unwrap_or("");
    let user = config.get_user().unwrap_or("");
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let m = |f: &str, v: &str| f == "*" || f == v;
        if m(&fields[0], &host) && m(&fields[1], &port) && m(&fields[2], db) && m(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_service_section() {
        let text =
            "# fleet\n[tenant_a]\nhost=db-1\nport=6000\ndbname=tenant_a\n\n[tenant_b]\nhost=db-2\n";
        let a = service_section(text, "tenant_a").unwrap();
        assert_eq!(
            a,
            vec![
                ("host".to_string(), "db-1".to_string()),
                ("port".to_string(), "6000".to_string()),
                ("dbname".to_string(), "tenant_a".to_string())
            ]
        );
        assert_eq!(service_section(text, "tenant_b").unwrap().len(), 1);
        assert!(service_section(text, "tenant_c").is_none());
    }

    #[test]
    fn redacts_password() {
        let c = ConnInfo::parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        let shown = c.redacted();
        assert_eq!(shown, "postgres://alice@db.example:6543/app");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_url_error_hides_password() {
        let e = ConnInfo::parse("postgres://alice:s3cret@db:notaport/app").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn tls_parameters_from_the_url() {
        let c = ConnInfo::parse_with_env(
            "postgres://alice:s3cret@db:6543/app?application_name=api&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20dir%2Fca.crt&sslcert=/c.crt&sslkey=/c.key",
            &no_env,
        )
        .unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            c.tls.root_cert,
            Some(RootCert::File("/etc/ca dir/ca.crt".into()))
        );
        assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/c.crt")));
        assert_eq!(c.tls.key.as_deref(), Some(Path::new("/c.key")));
        // the rest reached tokio-postgres untouched
        assert_eq!(c.config.get_application_name(), Some("api"));
        assert_eq!(c.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.redacted(), "postgres://alice@db:6543/app");
        // no TLS parameter: libpq's default
        let c = ConnInfo::parse_with_env("postgres://alice@db/app", &no_env).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.tls.root_cert, None);
    }

    #[test]
    fn tls_parameters_from_a_keyword_string() {
        let c = ConnInfo::parse_with_env(
            r"host=db port = 6543 user=alice password='it\'s a s3cret' dbname=app sslmode=verify-ca sslrootcert='/ca dir/ca.crt'",
            &no_env,
        )
        .unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(
            c.tls.root_cert,
            Some(RootCert::File("/ca dir/ca.crt".into()))
        );
        assert_eq!(c.config.get_password(), Some(&b"it's a s3cret"[..]));
        assert_eq!(c.redacted(), "postgres://alice@db:6543/app");
        let e = ConnInfo::parse_with_env("host=db password='s3cret", &no_env).unwrap_err();
        assert!(!format!("{e:#}").contains("s3cret"), "{e:#}");
    }

    #[test]
    fn tls_environment_and_precedence() {
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_string()),
            "PGSSLROOTCERT" => Some("/env/ca.crt".to_string()),
            _ => None,
        };
        let c = ConnInfo::parse_with_env("postgres://u@h/d", &env).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.tls.root_cert, Some(RootCert::File("/env/ca.crt".into())));
        // the string wins over the environment
        let c = ConnInfo::parse_with_env("postgres://u@h/d?sslmode=disable", &env).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::Disable);
        // sslrootcert=system means verify-full, and nothing weaker is accepted
        let c = ConnInfo::parse_with_env("postgres://u@h/d?sslrootcert=system", &no_env).unwrap();
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(RootCert::System));
        let e = ConnInfo::parse_with_env(
            "postgres://u@h/d?sslrootcert=system&sslmode=require",
            &no_env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
        let e = ConnInfo::parse_with_env("postgres://u:s3cret@h/d?sslmode=verify", &no_env)
            .unwrap_err();
        assert!(e.to_string().contains("invalid sslmode `verify`"), "{e}");
        assert!(!format!("{e:#}").contains("s3cret"), "{e:#}");
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(SslMode::parse(mode).unwrap().as_str(), mode);
        }
    }

    #[test]
    fn connect_timeout_as_libpq_reads_it() {
        let parse = |url: &str, env: &dyn Fn(&str) -> Option<String>| {
            ConnInfo::parse_with_env(url, env)
                .unwrap()
                .connect_timeout()
        };
        let secs = |n| Some(Duration::from_secs(n));
        // none given: finite, unlike libpq
        assert_eq!(
            parse("postgres://u@h/d", &no_env),
            Some(DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(
            parse("postgres://u@h/d?connect_timeout=7", &no_env),
            secs(7)
        );
        assert_eq!(parse("host=h user=u connect_timeout=7", &no_env), secs(7));
        // libpq: 1 means its minimum, 2; zero or negative waits forever
        assert_eq!(
            parse("postgres://u@h/d?connect_timeout=1", &no_env),
            secs(2)
        );
        assert_eq!(parse("postgres://u@h/d?connect_timeout=0", &no_env), None);
        assert_eq!(parse("postgres://u@h/d?connect_timeout=-5", &no_env), None);
        // PGCONNECT_TIMEOUT when the string says nothing
        let env = |k: &str| (k == "PGCONNECT_TIMEOUT").then(|| "4".to_string());
        assert_eq!(parse("postgres://u@h/d", &env), secs(4));
        assert_eq!(parse("postgres://u@h/d?connect_timeout=9", &env), secs(9));
        let e =
            ConnInfo::parse_with_env("postgres://u@h/d?connect_timeout=soon", &no_env).unwrap_err();
        assert!(e.to_string().contains("\"connect_timeout\""), "{e}");
        // libpq's keepalives_count reaches tokio-postgres
        let c = ConnInfo::parse_with_env("postgres://u@h/d?keepalives_count=3", &no_env).unwrap();
        assert_eq!(c.config.get_keepalives_retries(), Some(3));
        assert!(c.config.get_keepalives(), "keepalives are on, as in libpq");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2f%zz%"), "a b+c/%zz%");
    }

    #[test]
    fn pgpass_fields() {
        assert_eq!(
            split_pgpass("h:5432:db:u:pa\\:ss"),
            vec!["h", "5432", "db", "u", "pa:ss"]
        );
    }
}
