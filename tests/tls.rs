//! TLS as libpq users expect it: every `sslmode`, `sslrootcert`, client certificates,
//! against a throwaway server with `ssl=on` and a certificate authority made here.
//!
//! The server's certificate names `localhost` and `127.0.0.1`; `hostaddr=127.0.0.1`
//! with another `host` connects to the same server under a name the certificate does
//! not hold. pg_hba.conf: `tls_only` may log in only over TLS, `pw_user` needs a
//! password, `cert_user` a client certificate; everyone else is trusted.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use pgphase::conn::{ConnInfo, SslMode};
use pgphase::pgserver::{PgServer, ServerOptions};

const PASSWORD: &str = "pw-Zx81-secret";

struct Fixture {
    server: PgServer,
    /// Holds ca.crt, other-ca.crt, client.crt, client.key.
    dir: tempfile::TempDir,
}

impl Fixture {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A URL for `user` at `host` (resolved to 127.0.0.1), with `query` appended.
    fn url(&self, user: &str, host: &str, query: &str) -> String {
        format!(
            "postgres://{user}@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
            self.server.port()
        )
    }
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = issue("pgphase test CA", None, &[], true);
        let (server_cert, server_key) = issue(
            "localhost",
            Some((&ca, &ca_key)),
            &["localhost", "127.0.0.1"],
            false,
        );
        let (other_ca, _) = issue("some other CA", None, &[], true);
        let (client_cert, client_key) = issue("cert_user", Some((&ca, &ca_key)), &[], false);
        std::fs::write(dir.path().join("ca.crt"), ca.to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("other-ca.crt"), other_ca.to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("client.crt"), client_cert.to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.path().join("client.key"),
            client_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();

        let hba = "local all all trust
hostnossl all tls_only 127.0.0.1/32 reject
host all pw_user 127.0.0.1/32 scram-sha-256
hostssl all cert_user 127.0.0.1/32 cert
host all cert_user 127.0.0.1/32 reject
host all all 127.0.0.1/32 trust
";
        let opts = ServerOptions {
            extra_conf: [
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
                ("ssl_ca_file", "ca.crt"),
                ("password_encryption", "scram-sha-256"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
            data_files: vec![
                ("server.crt".into(), server_cert.to_pem().unwrap()),
                (
                    "server.key".into(),
                    server_key.private_key_to_pem_pkcs8().unwrap(),
                ),
                ("ca.crt".into(), ca.to_pem().unwrap()),
                ("pg_hba.conf".into(), hba.as_bytes().to_vec()),
            ],
            ..ServerOptions::default()
        };
        let server = PgServer::start(&opts).unwrap_or_else(|e| panic!("{e:#}"));
        // the tests' own runtimes are running: make the roles from a thread of its own
        let url = server.url("postgres");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(create_roles(&url))
        })
        .join()
        .unwrap();
        Fixture { server, dir }
    })
}

async fn create_roles(url: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE ROLE tls_only LOGIN; CREATE ROLE cert_user LOGIN;
                     CREATE ROLE pw_user LOGIN PASSWORD '{PASSWORD}';"
        ))
        .await
        .unwrap();
}

/// A P-256 key and a certificate for `cn`, signed by `issuer` (self-signed when `None`).
fn issue(
    cn: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    names: &[&str],
    ca: bool,
) -> (X509, PKey<Private>) {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        let bc = BasicConstraints::new().critical().ca().build().unwrap();
        b.append_extension(bc).unwrap();
        let ku = KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap();
        b.append_extension(ku).unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        let eku = ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()
            .unwrap();
        b.append_extension(eku).unwrap();
        if !names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in names {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(n);
                } else {
                    san.dns(n);
                }
            }
            let ext = san
                .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
                .unwrap();
            b.append_extension(ext).unwrap();
        }
    }
    let signer = issuer.map_or(&key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// Connects through pgphase's `ConnInfo`; whether the session uses TLS, and as whom.
async fn connect(url: &str) -> anyhow::Result<(bool, String)> {
    let client = ConnInfo::parse(url)?.connect().await?;
    let row = client
        .query_one(
            "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

fn q(path: &Path) -> String {
    path.display().to_string()
}

async fn expect_tls(url: &str) -> String {
    match connect(url).await {
        Ok((true, user)) => user,
        Ok((false, _)) => panic!("{url}: connected without TLS"),
        Err(e) => panic!("{url}: {e:#}"),
    }
}

async fn expect_error(url: &str) -> String {
    match connect(url).await {
        Ok(r) => panic!("{url}: connected ({r:?}), expected a refusal"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn disable_prefer_allow_and_require() {
    let f = fixture();
    let (ssl, _) = connect(&f.url("postgres", "localhost", "sslmode=disable"))
        .await
        .unwrap();
    assert!(!ssl, "sslmode=disable used TLS");
    // libpq's default is prefer: TLS when the server offers it
    let url = f.url("postgres", "localhost", "");
    assert_eq!(ConnInfo::parse(&url).unwrap().ssl_mode(), SslMode::Prefer);
    expect_tls(&url).await;
    expect_tls(&f.url("postgres", "localhost", "sslmode=prefer")).await;
    // require encrypts but checks no certificate without a root certificate
    expect_tls(&f.url("postgres", "wrong.invalid", "sslmode=require")).await;
    // allow: plain first…
    let (ssl, _) = connect(&f.url("postgres", "localhost", "sslmode=allow"))
        .await
        .unwrap();
    assert!(!ssl, "sslmode=allow should try plain first");
    // …and TLS when the server refuses plain
    expect_tls(&f.url("tls_only", "localhost", "sslmode=allow")).await;
    let e = expect_error(&f.url("tls_only", "localhost", "sslmode=disable")).await;
    assert!(e.contains("tls_only"), "{e}");
}

#[tokio::test]
async fn a_root_certificate_is_checked_in_every_tls_mode() {
    let f = fixture();
    let ca = q(&f.file("ca.crt"));
    let other = q(&f.file("other-ca.crt"));
    // the right CA and the right name
    expect_tls(&f.url(
        "postgres",
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    expect_tls(&f.url(
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    // verify-ca checks the chain, not the name
    expect_tls(&f.url(
        "postgres",
        "wrong.invalid",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await;
    // verify-full refuses a name the certificate does not hold
    let e = expect_error(&f.url(
        "postgres",
        "wrong.invalid",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(
        e.ends_with(&format!(
            "the server's certificate was rejected: hostname mismatch (sslmode=verify-full, \
             checked against sslrootcert={ca})"
        )),
        "{e}"
    );
    // another CA: refused in every mode that uses TLS (a root certificate given is
    // checked, as libpq does), saying why and against what
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let e = expect_error(&f.url(
            "postgres",
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .await;
        // the server sends its CA along (OpenSSL builds the chain from ssl_ca_file)
        let port = f.server.port();
        assert_eq!(
            e,
            format!(
                "cannot connect to postgres://postgres@localhost:{port}/postgres: the server's \
                 certificate was rejected: self-signed certificate in certificate chain \
                 (sslmode={mode}, checked against sslrootcert={other})"
            )
        );
    }
}

#[tokio::test]
async fn verification_without_a_root_certificate_says_what_to_set() {
    let f = fixture();
    if dirs_root_crt().is_file() {
        return; // this machine has a default root certificate; nothing to show
    }
    for mode in ["verify-ca", "verify-full"] {
        let e = expect_error(&f.url("postgres", "localhost", &format!("sslmode={mode}"))).await;
        assert!(e.contains(&format!("sslmode={mode} needs")), "{e}");
        assert!(e.contains("sslrootcert="), "{e}");
    }
    let e = expect_error(&f.url(
        "postgres",
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
    ))
    .await;
    assert!(
        e.contains("could not read root certificate file /nonexistent/ca.crt"),
        "{e}"
    );
}

fn dirs_root_crt() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".postgresql/root.crt")
}

#[tokio::test]
async fn client_certificates() {
    let f = fixture();
    let ca = q(&f.file("ca.crt"));
    let user = expect_tls(&f.url(
        "cert_user",
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
            q(&f.file("client.crt")),
            q(&f.file("client.key"))
        ),
    ))
    .await;
    assert_eq!(user, "cert_user");
    let e = expect_error(&f.url(
        "cert_user",
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(e.contains("cert_user"), "{e}");
}

#[tokio::test]
async fn passwords_over_tls_and_never_in_errors() {
    let f = fixture();
    let ca = q(&f.file("ca.crt"));
    let with_pw = |pw: &str, host: &str, query: &str| {
        format!(
            "postgres://pw_user:{pw}@{host}:{}/postgres?hostaddr=127.0.0.1&{query}",
            f.server.port()
        )
    };
    let user = expect_tls(&with_pw(
        PASSWORD,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert_eq!(user, "pw_user");
    let wrong = "wrong-Qq93-secret";
    let cases = [
        // wrong password
        with_pw(wrong, "localhost", "sslmode=require"),
        // right password, certificate refused before it is sent
        with_pw(
            PASSWORD,
            "wrong.invalid",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        with_pw(
            PASSWORD,
            "localhost",
            &format!("sslmode=verify-ca&sslrootcert={}", q(&f.file("other-ca.crt"))),
        ),
        // bad parameters
        with_pw(PASSWORD, "localhost", "sslmode=verify"),
        with_pw(PASSWORD, "localhost", "sslmode=require&sslrootcert=/nonexistent"),
        format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=pw_user password={PASSWORD} sslmode=verify-full sslrootcert={}",
            f.server.port(),
            q(&f.file("other-ca.crt"))
        ),
    ];
    for url in cases {
        let e = expect_error(&url).await;
        assert!(
            !e.contains(PASSWORD) && !e.contains(wrong),
            "the password leaked: {e}"
        );
        assert!(
            e.contains("postgres://pw_user@localhost:")
                || e.contains("postgres://pw_user@wrong.invalid:")
                || e.contains("invalid sslmode"),
            "{e}"
        );
    }
}
