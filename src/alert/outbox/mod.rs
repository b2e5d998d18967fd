//! The durable outbox and the delivery workers.
//!
//! # Guarantees
//!
//! - **Written before sent.** [`Outbox::enqueue`] stores one delivery row
//!   per receiver, all in one SQLite transaction, and returns only once it
//!   is committed; nothing is sent for a notification that is not stored.
//! - **At least once, per receiver.** A row stays `pending` until its
//!   receiver answers 2xx, and is then marked `delivered`. A crash (even
//!   `kill -9`) between sending and marking means it is sent again after
//!   restart, with the same `Idempotency-Key`, so receivers can drop the
//!   duplicate (PagerDuty does, by `dedup_key`).
//! - **Idempotent enqueue.** A row is unique per (receiver, idempotency
//!   key): enqueuing the same batch twice, e.g. when the alert engine
//!   replays after a restart, stores it once.
//! - **Transient vs permanent.** 408, 429, 5xx, network errors and the
//!   receiver's timeout are transient: retried with exponential backoff and
//!   full jitter ([`DispatchOptions::backoff`]), never sooner than a
//!   `Retry-After` says (capped at one hour), forever. Any other status is
//!   permanent: the row becomes a dead letter (logged at error, counted).
//!   A resolve is retried exactly like a trigger.
//! - **Receivers are independent.** Each receiver has its own rows and its
//!   own worker task, so a receiver that is down or hangs delays nothing
//!   for the others and never causes a re-send to them.
//! - **In order, per receiver.** A receiver's deliveries go out oldest
//!   first, and a delivery waiting for its retry holds back the younger
//!   ones of the same receiver (see [`Outbox::due`]), so a resolve never
//!   overtakes its trigger.
//! - **What survives `kill -9`:** every committed row, with its attempt
//!   count and next retry time; the alert engine's snapshot saved with
//!   [`Outbox::save_state`]. Only in-memory counters ([`DispatchStats`]) and
//!   in-flight attempts are lost, and an in-flight attempt is simply made
//!   again.
//! - **Bounded disk.** Delivered and dead rows are removed by
//!   [`Outbox::prune`]; pending rows are never pruned.
//!
//! # Errors
//!
//! A receiver that fails is not an error: its [`Attempt`] is recorded on
//! the row. [`OutboxError`] is a fault of the outbox itself (its directory,
//! SQLite, a blocking task), with the cause as its source. For now
//! [`Outbox::open`], [`Outbox::enqueue`], [`Outbox::depth`],
//! [`Outbox::commit_group`], [`Outbox::load_state`] and
//! [`Dispatcher::start`] hand it to `daemon::alerting` as text, causes
//! included; every other call returns it typed.
//!
//! # Layout
//!
//! - `store.rs`: the SQLite store ([`Outbox`]) and its row types. Its calls
//!   block on disk I/O: call them from `spawn_blocking` or a blocking
//!   thread.
//! - `dispatch.rs`: the [`Dispatcher`] and its per-receiver workers,
//!   backoff, counters; it runs every store call on tokio's blocking pool.
//!
//! `dispatch` builds on `store`, never the other way round.

mod dispatch;
mod store;

pub use super::deliver::{Attempt, Receiver, SharedReceiver};
pub use dispatch::{DispatchOptions, DispatchStats, Dispatcher, ReceiverStats, backoff, blocking};
pub use store::{
    Delivery, DeliveryState, DeliveryStatus, Outbox, OutboxError, ReceiverDepth, idempotency_key,
};
