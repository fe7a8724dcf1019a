//! A service's child process, tied to this process by a pipe on its standard input.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process started with a pipe on its standard input, which the child watches: it
/// stops when the pipe closes. The pipe closes on drop, or when this process ends in any way
/// (even `SIGKILL`), so the child never outlives it.
///
/// On drop the pipe is closed first and the child gets a grace period to stop by itself
/// (PostgreSQL's wrapper shuts the server down and removes its directory); after that it is
/// killed.
#[derive(Debug)]
pub struct Watched {
    child: Child,
    grace: Duration,
}

impl Watched {
    /// Spawns `cmd` with a piped standard input and standard output and error discarded.
    ///
    /// # Errors
    ///
    /// When the program cannot be started.
    pub fn spawn(cmd: &mut Command, grace: Duration) -> std::io::Result<Self> {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self { child, grace })
    }

    /// The child's exit status, if it has already exited (for error messages).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The child's process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < self.grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_stops_when_the_pipe_closes() {
        // `cat` exits at the end of its input: the pipe closing is what stops it.
        let mut cmd = Command::new("cat");
        let mut watched = Watched::spawn(&mut cmd, Duration::from_secs(10)).unwrap();
        assert!(
            watched.try_wait().is_none(),
            "cat exited before its input closed"
        );
        let started = Instant::now();
        drop(watched);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cat was killed, not stopped"
        );
    }
}
