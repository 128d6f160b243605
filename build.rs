//! `pgphase --version` of a binary built from a git checkout names the revision:
//! `pgphase 0.1.0 (git 1a2b3c4d5e6f)`. Outside a checkout (a source tarball, a crate
//! from a registry), `PGPHASE_GIT_REVISION` set at build time gives it; without either,
//! it is the plain version.
//!
//! Not in the `test-release` profile (what the test suite builds): the revision is
//! watched, and a changed build script output rebuilds every target of the crate — after
//! each commit, all ~40 test binaries, for a version string no test reads.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The profile's folder: OUT_DIR is `<target>/<profile>/build/<pkg>-<hash>/out`.
fn profile() -> Option<String> {
    let out = std::env::var("OUT_DIR").ok()?;
    let dir = Path::new(&out).ancestors().nth(3)?;
    Some(dir.file_name()?.to_string_lossy().into_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PGPHASE_GIT_REVISION");
    let version = env!("CARGO_PKG_VERSION");
    let rev = if profile().as_deref() == Some("test-release") {
        None
    } else {
        let from_env = std::env::var("PGPHASE_GIT_REVISION")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        from_env.or_else(|| {
            let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
            watch_head();
            Some(rev)
        })
    };
    match rev {
        Some(rev) => println!("cargo:rustc-env=PGPHASE_VERSION={version} (git {rev})"),
        None => println!("cargo:rustc-env=PGPHASE_VERSION={version}"),
    }
}

/// Rerun when a commit or a checkout changes the revision. Only files that exist: a
/// missing one would rerun this on every build.
fn watch_head() {
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
    }
    if let (Some(common), Some(head)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        watch.push(format!("{common}/{head}"));
        watch.push(format!("{common}/packed-refs"));
    }
    for path in watch {
        if Path::new(env!("CARGO_MANIFEST_DIR")).join(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
