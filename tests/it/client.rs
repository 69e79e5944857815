//! Integration tests: client.
