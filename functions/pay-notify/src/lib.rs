//! The `payNotify` function: builds its handler from the `wemint` library.
