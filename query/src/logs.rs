//! Log search: the syntax operators type (`syntax`), its translation to a
//! DataFusion filter (`compile`), and running searches (`search`).

#[cfg(feature = "sql")]
pub mod compile;
#[cfg(feature = "sql")]
pub mod search;
pub mod syntax;
#[cfg(feature = "sql")]
pub mod words;
