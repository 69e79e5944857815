//! Integration tests: one binary, a module per area. Every test talks real WebSocket over
//! loopback to the real server (in-process on port 0) or runs the real `wsprobe` binary.

mod aws;
mod client;
mod command;
mod conformance;
mod connect;
mod docs;
mod help;
mod load;
mod run;
mod serve;
mod serve_lambda;
mod serve_sample_app;
mod sessions;
mod stage;
mod support;
mod transcript;
