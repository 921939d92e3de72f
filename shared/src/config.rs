//! Typed settings read from the environment once at start; secrets redacted in `Debug`.
