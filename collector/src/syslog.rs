//! Syslog ingestion: framing of TCP/TLS streams (`framing`), message parsing
//! (`parse`), the UDP/TCP/TLS listeners (`listen`) and their counters (`stats`).

mod fast3164;
pub mod framing;
pub mod listen;
pub mod parse;
pub mod stats;
