//! Located diagnostics for config and probe files.
//!
//! Every error in a TOML config or probe file is reported with its file,
//! line and column, the key path it concerns, what was expected and what was
//! found, and for unknown keys or values the nearest valid one. [`SourceDoc`]
//! parses a file once and remembers where every key path was written;
//! [`deserialize_collecting`] runs serde over the document repeatedly,
//! removing each offending entry from a working copy, so that all errors of
//! a file are reported in one pass instead of only the first.
//!
//! The files: `diagnostic.rs` holds [`Diagnostic`], [`Diagnostics`] and
//! [`SourceLocation`]; `doc.rs` the parsed [`SourceDoc`] and its key
//! positions, and [`read_source`] (a file as text, bad UTF-8 located); `path.rs` key paths and the working copy they address;
//! `message.rs` the rewriting of serde's messages and [`nearest`]-key
//! suggestions; `collect.rs` [`deserialize_collecting`] and
//! [`deserialize_part`]. Each uses only the ones listed before it (`doc`
//! uses `path` and `message` too), never this file.

mod collect;
mod diagnostic;
mod doc;
mod message;
mod path;

pub use collect::{Part, deserialize_collecting, deserialize_part};
pub use diagnostic::{Diagnostic, Diagnostics, SourceLocation};
pub use doc::{SourceDoc, read_source};
pub use message::nearest;
