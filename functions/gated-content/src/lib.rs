//! The `gatedContent` function: builds its handler from the `wemint` library.
