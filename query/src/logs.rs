//! Log search: the syntax operators type (`syntax`), compiled to DataFusion
//! filters over the `logs` table.

pub mod syntax;
