//! The accept loop of the sandbox's hand-written listeners (`tcp`, `raw`):
//! at most as many connections as `permits` allows (further clients wait
//! in the backlog), each a task of the loop's own set that lives at most
//! `lifetime` and ends when `stop` turns true, as the loop does.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Serves `listener` with `connection` until `stop`; `what` names the port
/// in the log line of a failed accept.
pub(super) async fn serve<F, Fut>(
    listener: TcpListener,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    lifetime: Duration,
    what: &'static str,
    connection: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(e) => {
                // Out of file descriptors and the like: back off a little.
                tracing::debug!(%e, "sandbox {what} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handled = connection(socket);
        let mut stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = tokio::time::timeout(lifetime, handled) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
    connections.shutdown().await;
}
