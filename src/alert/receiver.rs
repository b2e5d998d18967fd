//! Receivers and routes as checked at load, and what every receiver file
//! shares with the registry ([`super::receivers::RECEIVERS`]): the entry
//! ([`ReceiverEntry`]) through which a file checks its
//! `[alerting.receivers.NAME]` tables and builds the delivering
//! [`SharedReceiver`], and the [`ReceiverInput`] it is given.
//!
//! This file knows no receiver type; each receiver file depends on it,
//! never the reverse, and the registry lists the files.

use super::deliver::SharedReceiver;
use crate::config::check::Checker;
use crate::config::raw::RawReceiver;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[alerting]`, checked: every receiver a route names exists.
#[derive(Debug, Clone, Default)]
pub struct AlertingConfig {
    pub group_wait: Duration,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub routes: Vec<super::route::Route>,
    pub default_receivers: Vec<String>,
}

/// A checked receiver: its `type` and the receiver its file built, ready
/// to deliver. Its settings may hold secrets (URLs, header values, keys,
/// passwords); each receiver's `Debug` leaves them out.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The `type` it was configured with (`webhook` when unset).
    pub type_name: &'static str,
    pub receiver: SharedReceiver,
}

/// One line of the registry: the `type` values a receiver file handles,
/// the keys of `[alerting.receivers.NAME]` those types read, and the
/// builder that checks such a table (every error located, at
/// `alerting.receivers.NAME.KEY`) into the receiver that delivers.
pub struct ReceiverEntry {
    pub types: &'static [&'static str],
    /// Every key these types read besides `type` (which the assembly
    /// reads). A key written for a type whose entry does not list it is
    /// handed to the builder as [`Misplaced`], which reports it.
    pub keys: &'static [&'static str],
    pub build: fn(&mut Checker<'_>, &ReceiverInput<'_>, RawReceiver) -> Option<SharedReceiver>,
}

/// What a receiver file's builder gets besides the table itself.
pub struct ReceiverInput<'a> {
    /// The receiver's name: unique, names outbox rows and logs.
    pub name: &'a str,
    /// Its table's key path, `alerting.receivers.NAME`.
    pub path: &'a str,
    /// Its `type`, one of the entry's types.
    pub type_name: &'static str,
    /// Keys written in the table that this entry does not read, each with
    /// the types that do; the builder reports each (wording is its own).
    pub misplaced: &'a [Misplaced],
}

/// A key written for a receiver type that does not read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    pub key: &'static str,
    /// The types whose entries read it, in registry order.
    pub owners: Vec<&'static str>,
}

impl ReceiverInput<'_> {
    /// Reports every misplaced key at its value with `message(key,
    /// owners)`; `true` when there was none.
    pub fn report_misplaced(
        &self,
        c: &mut Checker<'_>,
        message: impl Fn(&str, &[&str]) -> String,
    ) -> bool {
        for m in self.misplaced {
            c.err(
                &format!("{}.{}", self.path, m.key),
                message(m.key, &m.owners),
            );
        }
        self.misplaced.is_empty()
    }
}
