//! The `ugcUpload` function: builds its handler from the `wemint` library.
