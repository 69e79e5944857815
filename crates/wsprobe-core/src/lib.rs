//! wsprobe-core: everything below the command line. Connection options ([`options`]), the
//! client that opens connections ([`client`]) and signs them ([`aws`]), the live
//! connection ([`session`]) and reopening it ([`reconnect`]), message conventions
//! ([`message`]), the command language and its one engine ([`command`]), secrets
//! ([`secret`]), the transcript of a session ([`transcript`]) and the small value parsers
//! ([`values`]).
//!
//! No command-line crate is a dependency: the `wsprobe` binary lowers its flags and stage
//! profiles into [`options::ConnectOptions`] once, and every front-end (the prompt, scripts,
//! load) runs on these types. Core functions return typed errors and hand warnings back to
//! the caller; they print nothing.

pub mod aws;
pub mod client;
pub mod command;
pub mod message;
pub mod options;
pub mod reconnect;
pub mod report_file;
pub mod secret;
pub mod session;
pub mod text;
pub mod transcript;
pub mod values;
