//! OTLP trace export (being written).
