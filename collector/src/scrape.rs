//! Scraping targets: the exposition parser and one scrape of one target.

pub mod parse;
pub mod target;
pub mod tls;
