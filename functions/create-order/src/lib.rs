//! The `createOrder` function: builds its handler from the `wemint` library.
