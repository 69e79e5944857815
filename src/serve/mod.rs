//! `wsprobe serve`: the reference backend, an API Gateway WebSocket stage running the
//! sample echo app.

use crate::cli::ServeArgs;
use crate::{Context, Error, Outcome};

pub async fn run(_args: ServeArgs, _context: Context) -> Result<Outcome, Error> {
    todo!("serve")
}
