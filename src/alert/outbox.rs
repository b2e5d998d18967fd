//! The durable outbox (being written).
