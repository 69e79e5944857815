//! Shared test helpers: starting the server on port 0, running the binary.
