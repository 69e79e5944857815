//! The interactive front-end: a rustyline editor on its own thread, with a history file
//! and tab completion of `/command` names; incoming messages are printed above the line
//! being typed through rustyline's external printer.
//!
//! rustyline's `readline` blocks, so it runs on a dedicated thread that sends each line
//! (or Ctrl-C, or Ctrl-D) to the async side over a channel. Printing goes through another
//! small thread that owns the external printer, because printing may block until the
//! editor has redrawn, and the async side must never wait on the terminal.
//!
//! A blocked `readline` cannot be cancelled. When the session ends while it is waiting
//! (the server closed, the handshake failed), [`Prompt::finish`] puts the terminal back
//! in the mode it had before the editor started, so the process can exit cleanly with
//! the editor thread still parked.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
use rustyline::validate::Validator;
use rustyline::{Editor, ExternalPrinter as _};
use tokio::sync::mpsc;

use super::driver::Input;

/// The prompt shown before the line being typed.
const PROMPT: &str = "> ";

/// The escape sequence that ends the terminal's bracketed paste mode.
const BRACKETED_PASTE_OFF: &str = "\x1b[?2004l";

/// How often the printer thread looks whether the prompt has finished.
const PRINTER_POLL: Duration = Duration::from_millis(20);

/// At most this many queued texts are printed with one redraw of the prompt.
const PRINT_BATCH: usize = 256;

/// How many lines the history file keeps.
const HISTORY_SIZE: usize = 1000;

/// The default history file: `wsprobe/history` in the user's data directory.
pub(crate) fn default_history_file() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("wsprobe").join("history"))
}

/// Completes `/command` names: only in the first word of a line that starts with one
/// slash (`//text` is a text line).
#[derive(Debug)]
pub(crate) struct CommandCompleter {
    names: &'static [&'static str],
}

impl CommandCompleter {
    /// Completes the given command names (without their slash).
    pub(crate) fn new(names: &'static [&'static str]) -> Self {
        Self { names }
    }

    /// Where the completed word starts, and the candidates (with a trailing space, so a
    /// single candidate is ready for its arguments).
    pub(crate) fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let typed = &line[..pos.min(line.len())];
        let Some(word) = typed.strip_prefix('/') else {
            return (0, Vec::new());
        };
        if word.starts_with('/') || word.contains(char::is_whitespace) {
            return (0, Vec::new());
        }
        let pairs = self
            .names
            .iter()
            .filter(|name| name.starts_with(word))
            .map(|name| Pair {
                display: format!("/{name}"),
                replacement: format!("/{name} "),
            })
            .collect();
        (0, pairs)
    }
}

impl Completer for CommandCompleter {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _context: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for CommandCompleter {
    type Hint = String;
}

impl Highlighter for CommandCompleter {}

impl Validator for CommandCompleter {}

impl rustyline::Helper for CommandCompleter {}

/// Sends text to the terminal above the line being typed. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Printer {
    sender: std::sync::mpsc::Sender<String>,
}

impl Printer {
    /// Prints `text` (one or more lines) above the prompt.
    pub(crate) fn print(&self, text: String) {
        // The printer thread only stops after every Printer is gone.
        let _ = self.sender.send(text);
    }
}

/// The running editor (lines come out of the channel [`Prompt::start`] returns, text
/// goes in through its [`Printer`]).
pub(crate) struct Prompt {
    printer_thread: Option<JoinHandle<()>>,
    terminal: TerminalMode,
    /// Set when the session is over: the editor thread must not start another `readline`.
    stop: Arc<AtomicBool>,
    /// Whether the editor thread is still inside (or about to enter) `readline`.
    reading: Arc<AtomicBool>,
}

impl Prompt {
    /// Starts the editor thread. `history_file` is loaded if it exists (a failure is a
    /// warning) and every accepted line is appended to it at once. Returns the prompt,
    /// the channel of what the user types, and the printer for what arrives.
    pub(crate) fn start(
        history_file: Option<PathBuf>,
        command_names: &'static [&'static str],
    ) -> Result<(Prompt, mpsc::UnboundedReceiver<Input>, Printer), crate::Error> {
        let terminal = TerminalMode::capture();
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .history_ignore_dups(true)
            .and_then(|b| b.max_history_size(HISTORY_SIZE))
            .map(|b| b.build())
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("cannot set up the prompt: {e}")))?;
        let mut editor: Editor<CommandCompleter, DefaultHistory> = Editor::with_config(config)
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("cannot start the prompt: {e}")))?;
        editor.set_helper(Some(CommandCompleter::new(command_names)));
        editor.set_history_ignore_space(true);
        let history_file = history_file.and_then(|path| prepare_history(&mut editor, path));
        let mut external = editor.create_external_printer().map_err(|e| {
            crate::Error::Other(anyhow::anyhow!(
                "cannot print above the prompt on this terminal: {e}"
            ))
        })?;

        let stop = Arc::new(AtomicBool::new(false));
        let (text_sender, text_receiver) = std::sync::mpsc::channel::<String>();
        let printer_stop = stop.clone();
        let printer_thread = std::thread::Builder::new()
            .name("wsprobe-printer".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                loop {
                    // Queued text is always printed before the stop flag is looked at.
                    match text_receiver.recv_timeout(PRINTER_POLL) {
                        Ok(mut text) => {
                            // Under a flood, one redraw for everything queued, not one each.
                            for _ in 0..PRINT_BATCH {
                                match text_receiver.try_recv() {
                                    Ok(more) => {
                                        text.push('\n');
                                        text.push_str(&more);
                                    }
                                    Err(_) => break,
                                }
                            }
                            // Every text ends its own line. Between two `readline`s (the
                            // editor not in raw mode) rustyline writes the text as is, so
                            // without this newline the next prompt would be drawn over it.
                            text.push('\n');
                            if external.print(text.clone()).is_err() {
                                let mut stdout = std::io::stdout().lock();
                                let _ = write!(stdout, "{text}");
                                let _ = stdout.flush();
                            }
                        }
                        Err(RecvTimeoutError::Timeout) if printer_stop.load(Ordering::SeqCst) => {
                            return;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("cannot start a thread: {e}")))?;

        let (line_sender, lines) = mpsc::unbounded_channel();
        let reading = Arc::new(AtomicBool::new(true));
        let (thread_stop, thread_reading) = (stop.clone(), reading.clone());
        std::thread::Builder::new()
            .name("wsprobe-prompt".into())
            .spawn(move || {
                read_lines(editor, history_file, line_sender, &thread_stop);
                thread_reading.store(false, Ordering::SeqCst);
            })
            .map_err(|e| crate::Error::Other(anyhow::anyhow!("cannot start a thread: {e}")))?;

        let prompt = Prompt {
            printer_thread: Some(printer_thread),
            terminal,
            stop,
            reading,
        };
        let printer = Printer {
            sender: text_sender,
        };
        Ok((prompt, lines, printer))
    }

    /// Ends the prompt, once the session (and with it every [`Printer`]) is gone: waits
    /// until everything printed has been handed to the editor, then, if the editor is
    /// still waiting for a line, puts the terminal back in its original mode and ends the
    /// half-typed line, so the process can exit.
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.printer_thread.take() {
            let _ = thread.join();
        }
        if self.reading.load(Ordering::SeqCst) {
            // The editor draws what it was handed from its own thread; give it a moment
            // to do so before the terminal leaves raw mode under it.
            std::thread::sleep(Duration::from_millis(30));
            self.terminal.restore();
            let mut stdout = std::io::stdout().lock();
            // The editor turned bracketed paste on for its line; turn it off as it would.
            let _ = write!(stdout, "{BRACKETED_PASTE_OFF}");
            let _ = writeln!(stdout);
            let _ = stdout.flush();
        }
    }
}

/// Creates the history file's directory and loads the file. Returns the path to append
/// to, or `None` (with a warning) when the history cannot be used.
fn prepare_history(
    editor: &mut Editor<CommandCompleter, DefaultHistory>,
    path: PathBuf,
) -> Option<PathBuf> {
    let warn = |what: String| {
        let _ = writeln!(
            std::io::stderr(),
            "warning: {what}; this session's history will not be saved"
        );
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        warn(format!("cannot create {}: {e}", dir.display()));
        return None;
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        warn(format!(
            "cannot open the history file {}: {e}",
            path.display()
        ));
        return None;
    }
    if let Err(e) = editor.load_history(&path) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: cannot read the history file {}: {e}",
            path.display()
        );
    }
    Some(path)
}

/// The editor thread: read lines until Ctrl-D, an error, or the end of the session.
fn read_lines(
    mut editor: Editor<CommandCompleter, DefaultHistory>,
    history_file: Option<PathBuf>,
    lines: mpsc::UnboundedSender<Input>,
    stop: &AtomicBool,
) {
    let mut history_warned = false;
    while !stop.load(Ordering::SeqCst) {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(path) = &history_file
                        && let Err(e) = save_history(editor.history_mut(), path)
                        && !history_warned
                    {
                        history_warned = true;
                        let warning = format!(
                            "warning: cannot write the history file {}: {e}",
                            path.display()
                        );
                        let _ = lines.send(Input::Note(warning));
                    }
                }
                if lines.send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(ReadlineError::Interrupted) => {
                if lines.send(Input::Interrupted).is_err() {
                    return;
                }
            }
            Err(ReadlineError::Eof) => {
                let _ = lines.send(Input::End);
                return;
            }
            Err(error) => {
                let _ = lines.send(Input::Note(format!("error: the prompt failed: {error}")));
                let _ = lines.send(Input::End);
                return;
            }
        }
    }
}

fn save_history(history: &mut DefaultHistory, path: &Path) -> rustyline::Result<()> {
    history.append(path)
}

/// The terminal's mode before the editor put it in raw mode, to put back on exit.
struct TerminalMode {
    #[cfg(unix)]
    original: Option<nix::sys::termios::Termios>,
}

impl TerminalMode {
    fn capture() -> Self {
        Self {
            #[cfg(unix)]
            original: nix::sys::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }

    fn restore(&self) {
        #[cfg(unix)]
        if let Some(original) = &self.original {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSADRAIN,
                original,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["send", "sleep", "text", "quit"];

    fn replacements(line: &str) -> Vec<String> {
        let completer = CommandCompleter::new(NAMES);
        let (start, pairs) = completer.candidates(line, line.len());
        assert_eq!(start, 0);
        pairs.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn completes_command_names() {
        assert_eq!(replacements("/se"), vec!["/send "]);
        assert_eq!(replacements("/s"), vec!["/send ", "/sleep "]);
        assert_eq!(
            replacements("/"),
            vec!["/send ", "/sleep ", "/text ", "/quit "]
        );
    }

    #[test]
    fn completes_nothing_elsewhere() {
        assert!(replacements("hello").is_empty());
        assert!(replacements("//se").is_empty());
        assert!(replacements("/send se").is_empty());
        assert!(replacements("").is_empty());
    }
}
