//! `wsprobe run`: files of commands, test blocks, and reports.

use crate::cli::RunArgs;
use crate::{Context, Error, Outcome};

pub async fn run(_args: RunArgs, _context: Context) -> Result<Outcome, Error> {
    todo!("run")
}
