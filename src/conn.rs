//! Connection settings as psql users expect them, and connecting without ever printing
//! a password.

use anyhow::{bail, Context};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// Where to connect, with a printable description that never contains the password.
#[derive(Clone)]
pub struct ConnInfo {
    config: Config,
}

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
        Ok(Some(ConnInfo::finish(config)))
    }

    /// Parses a `postgres://` URL or a `key=value` connection string.
    pub fn parse(url: &str) -> anyhow::Result<ConnInfo> {
        let config: Config = match url.parse() {
            Ok(c) => c,
            // tokio-postgres' message can echo the input; say what is wrong without it
            Err(e) => bail!(
                "cannot parse the database URL ({}); expected postgres://user[:password]@host[:port]/dbname",
                redact_error(&e.to_string(), url)
            ),
        };
        Ok(ConnInfo::finish(config))
    }

    fn finish(mut config: Config) -> ConnInfo {
        if config.get_application_name().is_none() {
            config.application_name("pgphase");
        }
        if config.get_password().is_none() {
            if let Some(pw) = pgpass_lookup(&config) {
                config.password(pw);
            }
        }
        ConnInfo { config }
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

    pub fn with_application_name(&self, name: &str) -> ConnInfo {
        let mut c = self.clone();
        c.config.application_name(name);
        c
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .with_context(|| format!("cannot connect to {}", self.redacted()))?;
        tokio::spawn(async move {
            // errors surface on the next query through the client
            let _ = connection.await;
        });
        Ok(client)
    }
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

    #[test]
    fn pgpass_fields() {
        assert_eq!(
            split_pgpass("h:5432:db:u:pa\\:ss"),
            vec!["h", "5432", "db", "u", "pa:ss"]
        );
    }
}
