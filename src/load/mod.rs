//! `wsprobe load`: load-ping a stage.

use crate::cli::LoadArgs;
use crate::{Context, Error, Outcome};

pub async fn run(_args: LoadArgs, _context: Context) -> Result<Outcome, Error> {
    todo!("load")
}
