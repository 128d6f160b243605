//! Running the `pgphase` binary as a user would, for the CLI-level tests.

use serde_json::Value;
use std::process::{Command, Stdio};

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// The binary with a clean environment: no connection settings are inherited, stdin
/// is not a terminal, and paths are relative to the repository.
pub fn pgphase(args: &[&str]) -> Command {
    let mut c = Command::new(super::pgphase_bin());
    c.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env_remove("PGHOST")
        .env_remove("PGDATABASE")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGPASSWORD")
        .env_remove("PGPHASE_ACTOR")
        .stdin(Stdio::null());
    c
}

pub async fn run(mut cmd: Command) -> Run {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run pgphase");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `pgphase --database-url URL ARGS…`, as [`pgphase`] makes it.
pub fn pgphase_on(url: &str, args: &[&str]) -> Command {
    let mut full = vec!["--database-url", url];
    full.extend_from_slice(args);
    pgphase(&full)
}

/// A pgphase process running in the background, for tests that signal it or act on
/// the database while it works.
pub struct Running {
    child: std::process::Child,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgphase");
        Running { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child we started and have not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits until it exits; a process still running after `guard` (a hang) is killed
    /// and the test fails.
    pub async fn finish(mut self, guard: std::time::Duration) -> Run {
        let deadline = std::time::Instant::now() + guard;
        while self.child.try_wait().expect("wait for pgphase").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let out = self.child.wait_with_output().unwrap();
                panic!(
                    "pgphase still ran after {guard:?}, killed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let out = self
            .child
            .wait_with_output()
            .expect("collect pgphase's output");
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

/// [`run`] with a kill-guard against hangs.
pub async fn run_guarded(cmd: Command, guard: std::time::Duration) -> Run {
    Running::spawn(cmd).finish(guard).await
}
