//! Keep-alive: a bounded set of open connections, idle ones kept per
//! origin for the next request to the same place.
//!
//! The pool knows nothing of the protocol on its connections: whoever
//! checks one out ([`Pool::take`]) says whether it is still usable, sends
//! on it, and gives it back ([`Lease::release`]) only after a complete
//! exchange that leaves it reusable; a lease dropped instead closes its
//! connection (an error, the deadline, `Connection: close`).
//!
//! The bound: at most `max` connections are open at once, idle and in use
//! together, as long as no more than `max` requests are in flight (a
//! workload's `max_concurrency`). A new connection is opened only when no
//! idle one to its origin is left; if the pool is full then, the idle
//! connection used least recently (necessarily to another origin, after a
//! redirect) is closed to make room.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Where a connection goes: requests to the same origin may share one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    /// The host as the URL writes it.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Whether this is the origin (`tls`, `host`, `port`).
    pub fn is(&self, tls: bool, host: &str, port: u16) -> bool {
        self.tls == tls && self.port == port && self.host == host
    }
}

/// Connections of type `C`, at most `max` open.
pub struct Pool<C> {
    max: usize,
    state: Mutex<State<C>>,
}

struct State<C> {
    /// Idle connections, least recently used first.
    idle: VecDeque<(Origin, C)>,
    /// Open connections: idle plus leased.
    open: usize,
    /// Connections ever opened, and requests that found one idle.
    opened: u64,
    reused: u64,
}

impl<C> Pool<C> {
    /// An empty pool that keeps at most `max` connections open (at least 1).
    pub fn new(max: usize) -> Pool<C> {
        Pool {
            max: max.max(1),
            state: Mutex::new(State {
                idle: VecDeque::new(),
                open: 0,
                opened: 0,
                reused: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<C>> {
        // The state is counters and a queue, consistent after every
        // statement: a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The idle connection used most recently whose origin `wanted`
    /// accepts and that `usable` accepts; those `usable` refuses on the way
    /// are closed.
    pub fn take(
        &self,
        wanted: impl Fn(&Origin) -> bool,
        mut usable: impl FnMut(&C) -> bool,
    ) -> Option<Lease<'_, C>> {
        let mut state = self.state();
        while let Some(i) = state.idle.iter().rposition(|(o, _)| wanted(o)) {
            let Some((origin, conn)) = state.idle.remove(i) else {
                break;
            };
            if usable(&conn) {
                state.reused += 1;
                return Some(Lease {
                    pool: Some(self),
                    origin,
                    conn: Some(conn),
                });
            }
            state.open = state.open.saturating_sub(1);
        }
        None
    }

    /// Takes a connection just opened to `origin` into the pool, closing
    /// the least recently used idle one if the pool is full.
    pub fn add(&self, origin: Origin, conn: C) -> Lease<'_, C> {
        let mut state = self.state();
        if state.open >= self.max && state.idle.pop_front().is_some() {
            state.open -= 1;
        }
        state.open += 1;
        state.opened += 1;
        Lease {
            pool: Some(self),
            origin,
            conn: Some(conn),
        }
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.state().opened
    }

    /// Requests sent on a connection an earlier one opened.
    pub fn reused(&self) -> u64 {
        self.state().reused
    }

    /// Connections open now, idle and leased.
    pub fn open(&self) -> usize {
        self.state().open
    }
}

/// A connection checked out of a pool (or one that belongs to none): it
/// closes when dropped, unless released back.
pub struct Lease<'p, C> {
    pool: Option<&'p Pool<C>>,
    origin: Origin,
    /// Always `Some` until release or drop.
    conn: Option<C>,
}

impl<'p, C> Lease<'p, C> {
    /// A connection outside any pool: used once, closed when dropped.
    pub fn alone(origin: Origin, conn: C) -> Lease<'p, C> {
        Lease {
            pool: None,
            origin,
            conn: Some(conn),
        }
    }

    pub fn conn(&mut self) -> Option<&mut C> {
        self.conn.as_mut()
    }

    /// Gives the connection back for the next request to its origin.
    pub fn release(mut self) {
        let (Some(pool), Some(conn)) = (self.pool, self.conn.take()) else {
            return;
        };
        let mut state = pool.state();
        // Taken, not cloned: the lease ends here.
        let origin = std::mem::take(&mut self.origin);
        state.idle.push_back((origin, conn));
        // Only reached with more requests in flight than the pool's size.
        if state.idle.len() > pool.max && state.idle.pop_front().is_some() {
            state.open = state.open.saturating_sub(1);
        }
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if let (Some(pool), Some(conn)) = (self.pool, self.conn.take()) {
            let mut state = pool.state();
            state.open = state.open.saturating_sub(1);
            drop(state);
            drop(conn);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn origin(host: &str) -> Origin {
        Origin {
            tls: false,
            host: host.to_owned(),
            port: 80,
        }
    }

    #[test]
    fn released_connections_are_reused_per_origin_and_the_pool_stays_bounded() {
        let pool: Pool<u32> = Pool::new(2);
        let (a, b) = (origin("a"), origin("b"));
        assert!(pool.take(|o| *o == a, |_| true).is_none());
        let first = pool.add(a.clone(), 1);
        let second = pool.add(a.clone(), 2);
        assert_eq!(pool.open(), 2);
        first.release();
        second.release();
        // The most recently used comes back first; another origin finds none.
        let mut again = pool.take(|o| *o == a, |_| true).unwrap();
        assert_eq!(again.conn().copied(), Some(2));
        assert!(pool.take(|o| *o == b, |_| true).is_none());
        // A full pool closes the idle connection to `a` to open one to `b`.
        let other = pool.add(b.clone(), 3);
        assert_eq!(pool.open(), 2);
        assert!(pool.take(|o| *o == a, |_| true).is_none());
        // A dropped lease closes its connection.
        drop(again);
        drop(other);
        assert_eq!(pool.open(), 0);
        assert_eq!((pool.opened(), pool.reused()), (3, 1));
    }

    #[test]
    fn unusable_idle_connections_are_closed_when_met() {
        let pool: Pool<u32> = Pool::new(4);
        let a = origin("a");
        for n in 1..=3 {
            let lease = pool.add(a.clone(), n);
            lease.release();
        }
        // 3 and 2 are dead; 1 is fine.
        let mut lease = pool.take(|o| o.is(false, "a", 80), |n| *n == 1).unwrap();
        assert_eq!(lease.conn().copied(), Some(1));
        assert_eq!(pool.open(), 1);
        lease.release();
        assert_eq!(pool.open(), 1);
        // Outside a pool, a lease is simply closed.
        Lease::alone(a, 9).release();
        assert_eq!(pool.open(), 1);
    }
}
