//! The `login` function: builds its handler from the `wemint` library.
