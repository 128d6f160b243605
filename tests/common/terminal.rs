//! The `pgphase` binary in a real terminal: a tmux session of its own (own server
//! socket, fixed size), its screen read with `capture-pane`, keys sent with
//! `send-keys`, its exit code written to a file. The tmux server is killed on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A generous guard against a hang; never a timing expectation.
const KILL_GUARD: Duration = Duration::from_secs(120);

pub struct Terminal {
    socket: String,
    dir: tempfile::TempDir,
}

fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new("tmux")
        .args(["-L", socket, "-f", "/dev/null"])
        .args(args)
        .output()
        .expect("tmux is installed (the terminal tests drive the binary in it)");
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Single-quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Terminal {
    /// Runs `pgphase ARGS…` with `env` in a `width`×`height` terminal (TERM
    /// xterm-256color, NO_COLOR unset), from the repository.
    pub fn spawn(width: u16, height: u16, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let socket = format!(
            "pgphase-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        // the shell outlives a Ctrl-C sent to the program, to write its exit code
        let mut cmd = format!(
            "trap : INT; cd {} && env",
            sh_quote(env!("CARGO_MANIFEST_DIR"))
        );
        for (k, v) in env {
            cmd.push_str(&format!(" {k}={}", sh_quote(v)));
        }
        cmd.push_str(&format!(
            " {}",
            sh_quote(super::pgphase_bin().to_str().unwrap())
        ));
        for a in args {
            cmd.push_str(&format!(" {}", sh_quote(a)));
        }
        // the exit code, then the shell waits so the last screen can still be read
        cmd.push_str(&format!(
            "; echo $? > {}; exec sleep 600",
            sh_quote(status.to_str().unwrap())
        ));
        let (w, h) = (width.to_string(), height.to_string());
        tmux(
            &socket,
            &[
                "new-session",
                "-d",
                "-x",
                &w,
                "-y",
                &h,
                "-e",
                "TERM=xterm-256color",
                "sh",
                "-c",
                &cmd,
            ],
        );
        Terminal { socket, dir }
    }

    /// The screen as text, one line per row.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&self.socket, &["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Polls the screen until `pred` holds; panics with the screen after the kill guard.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + KILL_GUARD;
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never showed {what}:\n{s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the screen until it shows `text`.
    pub async fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(text, |s| s.contains(text)).await
    }

    /// Sends keys as tmux names them (`j`, `Enter`, `Escape`, `PageDown`, `C-c`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        tmux(&self.socket, &args);
    }

    fn status_file(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    /// The exit code once the program has ended (None while it runs).
    pub fn exit_code(&self) -> Option<i32> {
        std::fs::read_to_string(self.status_file())
            .ok()
            .filter(|s| s.ends_with('\n'))
            .map(|s| s.trim().parse().expect("an exit code"))
    }

    /// Waits for the program to end; its exit code.
    pub async fn wait_exit(&self) -> i32 {
        let deadline = Instant::now() + KILL_GUARD;
        loop {
            if let Some(code) = self.exit_code() {
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "never exited:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
