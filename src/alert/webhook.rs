//! Webhook payloads and presets (being written).
