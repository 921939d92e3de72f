//! Service tests on an in-memory SQLite store with a fixed clock.
