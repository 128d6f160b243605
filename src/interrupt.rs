//! Why a running command must stop before its work is done: Ctrl-C or SIGTERM, or the
//! loss of the plan's lock.
//!
//! A [`Stop`] is a one-shot flag with a reason that tasks can wait on. The plan lock's
//! watcher triggers the command's own `Stop`; signals trigger the process-wide one
//! ([`signals`]), which the CLI arms with [`listen_for_signals`]. The command runner
//! races its work against both: the statement running on the server is cancelled, the
//! interruption recorded, and the command that resumes printed.
//!
//! Outside the stretches where a command runs steps ([`arm`]), a signal ends the
//! process at once with the usual exit code, as it would without a handler (nothing is
//! running on the server then that the server does not roll back itself), and so does a
//! second signal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// A signal that stops a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, a CI runner cancelling a job, a pod being stopped).
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
    /// The shell's convention: 128 + the signal number (130, 143).
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
        }
    }
}

/// Why a command stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Signal(Signal),
    /// The plan's advisory lock is no longer held by this command (its connection
    /// ended, did not answer, or its session no longer holds the lock).
    LostLock(String),
}

/// A one-shot stop flag: the first reason wins.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<Option<StopReason>>>);

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop(Arc::new(watch::channel(None).0))
    }
    /// Sets the reason, unless one is set already.
    pub fn trigger(&self, reason: StopReason) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
    pub fn reason(&self) -> Option<StopReason> {
        self.0.borrow().clone()
    }
    /// Waits until the flag is set.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.0.subscribe();
        let reason = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone(),
            // the sender lives in self: cannot be dropped while we wait
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

/// The process-wide stop that signals trigger (never triggered unless
/// [`listen_for_signals`] was called).
pub fn signals() -> &'static Stop {
    static SIGNALS: OnceLock<Stop> = OnceLock::new();
    SIGNALS.get_or_init(Stop::new)
}

static ARMED: AtomicUsize = AtomicUsize::new(0);

/// While alive, a signal stops the command gracefully instead of ending the process.
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Marks a stretch where the runner handles signals itself.
pub fn arm() -> Armed {
    ARMED.fetch_add(1, Ordering::SeqCst);
    Armed(())
}

/// Handles SIGINT and SIGTERM from now on: inside an [`arm`]ed stretch the first one
/// triggers [`signals`]; otherwise, or the second time, the process exits at once with
/// 130 or 143. Call once, from within the runtime.
pub fn listen_for_signals() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = int.recv() => Signal::Interrupt,
                _ = term.recv() => Signal::Terminate,
            };
            if ARMED.load(Ordering::SeqCst) == 0 || signals().reason().is_some() {
                eprintln!("pgphase: interrupted by {}", sig.name());
                std::process::exit(sig.exit_code());
            }
            eprintln!(
                "pgphase: {} received: cancelling the running statement (again to exit at once)",
                sig.name()
            );
            signals().trigger(StopReason::Signal(sig));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins() {
        let s = Stop::new();
        assert_eq!(s.reason(), None);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.stopped().await })
        };
        s.trigger(StopReason::Signal(Signal::Terminate));
        s.trigger(StopReason::LostLock("x".into()));
        assert_eq!(waiter.await.unwrap(), StopReason::Signal(Signal::Terminate));
        assert_eq!(s.stopped().await, StopReason::Signal(Signal::Terminate));
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
    }
}
