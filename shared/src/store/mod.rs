//! The document store: one Mongo-shaped `Store` trait, SQLite (embedded default) and MongoDB backends.
