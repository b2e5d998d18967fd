//! The alert state machine (being written).
