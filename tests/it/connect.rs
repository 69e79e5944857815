//! Integration tests: connect.
