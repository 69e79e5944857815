//! `wsprobe connect`: the interactive front-end over the command language.

use crate::cli::ConnectArgs;
use crate::{Context, Error, Outcome};

pub async fn run(_args: ConnectArgs, _context: Context) -> Result<Outcome, Error> {
    todo!("connect")
}
