//! The store: so far the write-ahead log that sits in front of everything.

pub mod wal;
