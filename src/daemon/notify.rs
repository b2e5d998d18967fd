//! systemd's notification protocol (`sd_notify`): `READY=1`,
//! `RELOADING=1`, `STOPPING=1` and `WATCHDOG=1` datagrams to the socket in
//! `NOTIFY_SOCKET`.
//!
//! Written here rather than taken from a crate because the socket is a
//! parameter: tests pass their own socket instead of mutating the process
//! environment. A missing socket makes every call a no-op; a failed send is
//! logged, never fatal.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<PathBuf>,
}

impl Notifier {
    pub fn new(socket: Option<PathBuf>) -> Notifier {
        Notifier { socket }
    }

    /// The socket systemd gave this process, if any.
    pub fn socket_from_env() -> Option<PathBuf> {
        std::env::var_os("NOTIFY_SOCKET").map(PathBuf::from)
    }

    /// The watchdog period systemd expects, if it is for this process.
    pub fn watchdog_from_env() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec))
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd ≥ 253 asks for, so the
    /// unit may also use `Type=notify-reload`.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// Sends one state message, e.g. `READY=1`.
    pub fn notify(&self, state: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(e) = send(path, state) {
            tracing::warn!(socket = %path.display(), error = %e, "cannot notify systemd");
        }
    }
}

fn send(path: &std::path::Path, state: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let text = path.as_os_str().to_string_lossy();
    if let Some(name) = text.strip_prefix('@') {
        // An abstract socket: '@' stands for the leading NUL byte.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = Notifier::new(Some(path));
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier::new(None);
        assert!(!n.enabled());
        n.notify("READY=1");
    }
}
