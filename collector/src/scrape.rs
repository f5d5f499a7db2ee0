//! Scraping targets. So far: the exposition parser.

pub mod parse;
