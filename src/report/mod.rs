//! Reporters: render outcomes for people and machines. They only read
//! [`Outcome`]s; they never run anything. `baseline` holds the quality
//! gate's file and comparisons, which both renderings show.

pub mod baseline;
pub mod human;
pub mod json;

use crate::outcome::Outcome;

/// Counts for a summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of(outcomes: &[Outcome]) -> Summary {
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        Summary {
            total: outcomes.len(),
            passed,
            failed: outcomes.len() - passed,
        }
    }
}
