//! `pgphase --version` names the git revision when built from a checkout:
//! `pgphase 0.1.0 (git 1a2b3c4d5e6f)`. Without git, or outside a checkout (a crate
//! downloaded from a registry), it is the plain version.

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

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            println!("cargo:rustc-env=PGPHASE_VERSION={version} (git {rev})");
            // a new commit or checkout changes the revision
            // (only files that exist: a missing one would rerun this, and rebuild the
            // crate, on every build)
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
                let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&path);
                if full.exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
        None => println!("cargo:rustc-env=PGPHASE_VERSION={version}"),
    }
    println!("cargo:rerun-if-changed=build.rs");
}
