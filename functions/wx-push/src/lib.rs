//! The `wxPush` function: builds its handler from the `wemint` library.
