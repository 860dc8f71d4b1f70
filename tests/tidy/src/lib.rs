//! See `tests/layers.rs`.
