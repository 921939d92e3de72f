//! Unit tests of the order service over an in-memory store with fake providers.
