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

/// Tab completion at the prompt: `/command` names that work at the prompt (not the
/// script-only `connect`, `test` or connect options), then arguments where they can be
/// known: `/echo` policies, `/pretty on|off`, `/help` topics, the words of `/expect`,
/// route names of earlier `/send`s, and `${…}` variables (earlier `/capture`s and the
/// environment). A line without a leading `/` is text: nothing is completed in it.
#[derive(Debug)]
pub(crate) struct CommandCompleter {
    names: Vec<&'static str>,
    /// Routes of the `/send` lines accepted so far, oldest first.
    routes: Vec<String>,
    /// Names of the `/capture` lines accepted so far.
    captures: Vec<String>,
}

impl CommandCompleter {
    /// Completes the commands usable at the prompt, with their aliases (without slash).
    pub(crate) fn new() -> Self {
        use wsprobe_core::command::{COMMANDS, Scope};
        let names = COMMANDS
            .iter()
            .filter(|command| command.scope != Scope::Script && command.name != "connect")
            .flat_map(|command| {
                std::iter::once(command.name).chain(command.aliases.iter().copied())
            })
            .collect();
        Self {
            names,
            routes: Vec::new(),
            captures: Vec::new(),
        }
    }

    /// Remembers the route of a `/send` line and the name of a `/capture` line.
    pub(crate) fn learn(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (learned, word) = match words.next() {
            Some("/send") => (&mut self.routes, words.next()),
            Some("/capture") => match words.next() {
                Some("next") => (&mut self.captures, words.next()),
                other => (&mut self.captures, other),
            },
            _ => return,
        };
        if let Some(word) = word.filter(|w| !w.starts_with("${"))
            && !learned.iter().any(|known| known == word)
        {
            learned.push(word.to_owned());
        }
    }

    /// Where the completed word starts, and the candidates (with a trailing space, so a
    /// single candidate is ready for what follows).
    pub(crate) fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        let typed = line.get(..pos).unwrap_or(line);
        let Some(command) = typed.strip_prefix('/') else {
            return (0, Vec::new());
        };
        if command.starts_with('/') {
            return (0, Vec::new());
        }
        let start = typed.rfind(char::is_whitespace).map_or(0, |at| at + 1);
        let word = &typed[start..];
        // `${NAME`: a variable, anywhere in a command's arguments.
        if let Some(at) = word.rfind("${")
            && !word[at..].contains('}')
        {
            let prefix = &word[at + 2..];
            let mut names: Vec<String> = self.captures.clone();
            let mut environment: Vec<String> = std::env::vars_os()
                .filter_map(|(name, _)| name.into_string().ok())
                .collect();
            environment.sort();
            names.extend(environment);
            let pairs = names
                .into_iter()
                .filter(|name| name.starts_with(prefix))
                .map(|name| Pair {
                    display: format!("${{{name}}}"),
                    replacement: format!("${{{name}}}"),
                })
                .collect();
            return (start + at, pairs);
        }
        let before: Vec<&str> = typed[..start].split_whitespace().collect();
        let choices: Vec<String> = match before.as_slice() {
            [] => {
                return (
                    0,
                    self.names
                        .iter()
                        .filter(|name| name.starts_with(&word[1..]))
                        .map(|name| Pair {
                            display: format!("/{name}"),
                            replacement: format!("/{name} "),
                        })
                        .collect(),
                );
            }
            ["/echo"] => words(&["body", "full", "off"]),
            ["/pretty"] => words(&["on", "off"]),
            ["/help"] => self.names.iter().map(|name| (*name).to_owned()).collect(),
            ["/send"] => self.routes.clone(),
            ["/expect"] => words(wsprobe_core::command::EXPECT_WORDS)
                .into_iter()
                .filter(|w| w != "connect-refused")
                .collect(),
            ["/expect", "next" | "response"] => words(wsprobe_core::command::MATCHER_NAMES),
            _ => Vec::new(),
        };
        let pairs = choices
            .into_iter()
            .filter(|choice| choice.starts_with(word))
            .map(|choice| Pair {
                display: choice.clone(),
                replacement: format!("{choice} "),
            })
            .collect();
        (start, pairs)
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|word| (*word).to_owned()).collect()
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
        editor.set_helper(Some(CommandCompleter::new()));
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
    let line_was_empty = Arc::new(AtomicBool::new(true));
    editor.bind_sequence(
        rustyline::KeyEvent::ctrl('C'),
        rustyline::EventHandler::Conditional(Box::new(InterruptWatch(line_was_empty.clone()))),
    );
    let mut history_warned = false;
    while !stop.load(Ordering::SeqCst) {
        match editor.readline(PROMPT) {
            Ok(pasted) => {
                // A bracketed paste of several lines arrives as one buffer with newlines:
                // each line runs on its own, as if typed one after another.
                for line in pasted.split('\n').filter(|line| !line.trim().is_empty()) {
                    let line = line.to_owned();
                    if let Some(completer) = editor.helper_mut() {
                        completer.learn(&line);
                    }
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
                    if lines.send(Input::Line(line)).is_err() {
                        return;
                    }
                }
            }
            Err(ReadlineError::Interrupted) => {
                let empty = line_was_empty.load(Ordering::SeqCst);
                if lines.send(Input::Interrupted { empty }).is_err() {
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

/// Ctrl-C interrupts as it always does, and notes first whether the line was empty: at an
/// empty prompt the driver says how to quit.
struct InterruptWatch(Arc<AtomicBool>);

impl rustyline::ConditionalEventHandler for InterruptWatch {
    fn handle(
        &self,
        _event: &rustyline::Event,
        _n: rustyline::RepeatCount,
        _positive: bool,
        context: &rustyline::EventContext<'_>,
    ) -> Option<rustyline::Cmd> {
        self.0.store(context.line().is_empty(), Ordering::SeqCst);
        Some(rustyline::Cmd::Interrupt)
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

    fn replacements(completer: &CommandCompleter, line: &str) -> Vec<String> {
        let (_, pairs) = completer.candidates(line, line.len());
        pairs.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn completes_only_the_commands_that_work_at_the_prompt() {
        let completer = CommandCompleter::new();
        assert_eq!(replacements(&completer, "/se"), vec!["/send "]);
        assert_eq!(replacements(&completer, "/s"), vec!["/send ", "/sleep "]);
        let all = replacements(&completer, "/");
        assert_eq!(all.first().map(String::as_str), Some("/send "));
        for absent in ["/connect ", "/test ", "/auth ", "/header "] {
            assert!(!all.iter().any(|c| c == absent), "{absent}: {all:?}");
        }
        for present in ["/pong ", "/quit ", "/exit ", "/wait ", "/pretty "] {
            assert!(all.iter().any(|c| c == present), "{present}: {all:?}");
        }
    }

    #[test]
    fn completes_arguments() {
        let mut completer = CommandCompleter::new();
        assert_eq!(replacements(&completer, "/echo f"), vec!["full "]);
        assert_eq!(replacements(&completer, "/pretty o"), vec!["on ", "off "]);
        assert_eq!(
            replacements(&completer, "/expect js"),
            vec!["json ", "json-subset "]
        );
        assert_eq!(replacements(&completer, "/expect next e"), vec!["echo "]);
        assert!(
            replacements(&completer, "/expect c")
                .iter()
                .all(|c| c != "connect-refused ")
        );
        assert_eq!(replacements(&completer, "/help pi"), vec!["ping "]);
        assert!(replacements(&completer, "/send ").is_empty());
        completer.learn(r#"/send sendmessage {"data":1}"#);
        completer.learn("/capture next conn = json $.connectionId");
        assert_eq!(replacements(&completer, "/send se"), vec!["sendmessage "]);
        let (start, pairs) = completer.candidates("/post ${co", 10);
        assert_eq!(start, 6);
        assert_eq!(pairs[0].replacement, "${conn}");
    }

    #[test]
    fn completes_nothing_in_text() {
        let completer = CommandCompleter::new();
        assert!(replacements(&completer, "hello").is_empty());
        assert!(replacements(&completer, "//se").is_empty());
        assert!(replacements(&completer, "hi ${HO").is_empty());
        assert!(replacements(&completer, "").is_empty());
    }
}
