//! `pgphase --version` of a binary built with `--profile dist` from a git checkout
//! names the revision: `pgphase 0.1.0 (git 1a2b3c4d5e6f)`; without git, outside a
//! checkout, or with another profile, it is the plain version.
//!
//! Only `dist`: the revision must be watched (a commit changes it), and a changed build
//! script output rebuilds the whole crate — on every commit, for every `--release` test
//! build, if it were done there.

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
    let version = env!("CARGO_PKG_VERSION");
    let rev = if profile().as_deref() == Some("dist") {
        git(&["rev-parse", "--short=12", "HEAD"])
    } else {
        None
    };
    let Some(rev) = rev else {
        println!("cargo:rustc-env=PGPHASE_VERSION={version}");
        return;
    };
    println!("cargo:rustc-env=PGPHASE_VERSION={version} (git {rev})");
    // a commit or checkout changes the revision (only files that exist: a missing one
    // would rerun this on every build)
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
