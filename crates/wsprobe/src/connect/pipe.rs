//! Non-interactive line sources: the `-x` commands, or the lines of a stdin that is not
//! a terminal. Either way each line is run (a `/command`) or sent (anything else), in
//! order, and the end of the lines is the end of the input.

use std::io::BufRead as _;

use tokio::sync::mpsc;

use super::driver::Input;

/// The `-x` commands, in order, then the end of input.
pub(crate) fn commands(commands: Vec<String>) -> mpsc::UnboundedReceiver<Input> {
    let (sender, receiver) = mpsc::unbounded_channel();
    for command in commands {
        let _ = sender.send(Input::Line(command));
    }
    let _ = sender.send(Input::End);
    receiver
}

/// The lines of stdin, read on a thread of their own (reading blocks), then the end of
/// input. A line that is not UTF-8 is read with replacement characters; a read error
/// ends the input with a note.
pub(crate) fn stdin_lines() -> mpsc::UnboundedReceiver<Input> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("wsprobe-stdin".into())
        .spawn({
            let sender = sender.clone();
            move || read_stdin(&sender)
        });
    if let Err(error) = spawned {
        let _ = sender.send(Input::Note(format!("error: cannot read stdin: {error}")));
        let _ = sender.send(Input::End);
    }
    receiver
}

fn read_stdin(sender: &mpsc::UnboundedSender<Input>) {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer);
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line);
                if sender.send(Input::Line(line.to_owned())).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                let _ = sender.send(Input::Note(format!("error: reading stdin failed: {error}")));
                break;
            }
        }
    }
    let _ = sender.send(Input::End);
}
