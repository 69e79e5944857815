//! The command language shared by the REPL and scripts: parse a line into a command.
