//! Integration tests: command.
