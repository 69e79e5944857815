//! The README and docs/: the README stays a first-contact page (at most 300 lines), every
//! relative link of every Markdown file resolves (anchors included), and every fenced
//! block of README.md and docs/*.md is run, checked against its source, or marked as not
//! runnable with a reason — the rules are in docs/README.md, "How the examples are
//! checked", and this file enforces them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use expectrl::{ControlCode, Expect as _};
use regex::Regex;
use wsprobe_core::command::parse_script;

use crate::support::{self, ServeProcess, TIMEOUT};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The pages whose examples are checked: README.md and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Every `*.md` of the repository but those under target/ and dot-directories.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                markdown_files(&path, found);
            }
        } else if name.ends_with(".md") {
            found.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_readme_is_a_first_contact_page_of_at_most_300_lines() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; the reference belongs in docs/"
    );
    for needed in [
        "cargo install --path crates/wsprobe",
        "## Coming from wscat",
        "## Exit codes",
        "## At the prompt",
        "docs/README.md",
    ] {
        assert!(readme.contains(needed), "README.md lacks {needed:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Links

/// The anchors GitHub gives the headings of `markdown`: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped, `-1`, `-2` … after repeats.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in prose_lines(markdown).into_iter().map(|(_, line)| line) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The lines of `markdown` outside fenced blocks, with their 1-based numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// The relative links of `markdown` (inline `[text](target)` and `[label]: target`),
/// outside code, with their line numbers.
fn relative_links(markdown: &str) -> Vec<(usize, String)> {
    let code_span = Regex::new(r"`[^`]*`").unwrap();
    let inline = Regex::new(r"\]\(([^()\s]+)(?:\s+\x22[^\x22]*\x22)?\)").unwrap();
    let reference = Regex::new(r"^\s*\[[^\]]+\]:\s+(\S+)").unwrap();
    let mut links = Vec::new();
    for (number, line) in prose_lines(markdown) {
        let line = code_span.replace_all(line, "");
        let targets = inline
            .captures_iter(&line)
            .chain(reference.captures_iter(&line))
            .map(|c| c[1].to_owned());
        for target in targets {
            let external =
                target.starts_with('<') || target.starts_with("mailto:") || target.contains("://");
            if !external {
                links.push((number, target));
            }
        }
    }
    links
}

/// The broken relative links of the Markdown files under `dir`, as `file:line: target (why)`.
fn broken_links(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    markdown_files(dir, &mut files);
    let mut anchors_of: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut broken = Vec::new();
    for file in &files {
        let text = read(file);
        for (line, target) in relative_links(&text) {
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a parent").join(path)
            };
            let at = format!("{}:{line}: {target}", file.display());
            if !resolved.exists() {
                broken.push(format!("{at} (no such file)"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let resolved = resolved.canonicalize().expect("an existing file");
            let anchors = anchors_of
                .entry(resolved.clone())
                .or_insert_with(|| self::anchors(&read(&resolved)));
            if !anchors.contains(anchor) {
                broken.push(format!("{at} (no heading with that anchor)"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_of_every_markdown_file_resolves() {
    let mut files = Vec::new();
    markdown_files(&root(), &mut files);
    assert!(
        files.len() >= 12,
        "only {} Markdown files found",
        files.len()
    );
    let broken = broken_links(&root());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_file_and_a_missing_anchor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(
        dir.path().join("docs/page.md"),
        "# A page\n\n## Exit codes\n\n## Exit codes\n\n### `serve --iam-key`: checks [U]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "[ok](docs/page.md#exit-codes) [ok](docs/page.md#exit-codes-1) \
         [ok](docs/page.md#serve---iam-key-checks-u) [ok](#top) [ext](https://example.com/x.md)\n\
         `[code](nowhere.md)`\n\n# Top\n\n[gone](docs/gone.md) [bad](docs/page.md#exit-code)\n\n\
         ```text\n[fenced](nowhere.md)\n```\n\n[label]: docs/missing.md\n",
    )
    .unwrap();
    let prefix = format!("{}/", dir.path().display());
    let broken: Vec<String> = broken_links(dir.path())
        .iter()
        .map(|b| b.replace(&prefix, ""))
        .collect();
    assert_eq!(
        broken,
        [
            "README.md:6: docs/gone.md (no such file)",
            "README.md:6: docs/page.md#exit-code (no heading with that anchor)",
            "README.md:12: docs/missing.md (no such file)",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Fenced blocks

/// A fenced block of a page.
struct Block {
    page: PathBuf,
    /// The line of its opening fence.
    line: usize,
    lang: String,
    kind: Kind,
    body: String,
}

/// What the test does with a block, from its info string.
#[derive(Debug, PartialEq)]
enum Kind {
    /// `wsp`: run against `wsprobe serve`.
    Script,
    /// `wsp file=NAME`, `toml file=NAME`: written for the page's later shell examples.
    File(String),
    /// `sh`: run as one bash script.
    Shell,
    /// `console`: commands and their output.
    Session,
    /// `python from=PATH`, `rust from=PATH`: lines of that file.
    From(String),
    /// `sh run-by=PATH`: commands that PATH runs.
    RunBy(String),
    /// `… not-run: REASON`.
    NotRun(String),
    /// `text`, `json`, `jsonc`, `ebnf`, `toml`: output, schemas, grammar, configuration.
    NotAnExample,
}

impl Block {
    fn at(&self) -> String {
        format!("{}:{} ({})", relative(&self.page), self.line, self.lang)
    }
}

/// The fenced blocks of `page`, or why one of them has an info string outside the rules.
fn blocks(page: &Path) -> (Vec<Block>, Vec<String>) {
    let text = read(page);
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.trim_start().starts_with("```"))
            .collect();
        let (lang, rest) = info.split_once(' ').unwrap_or((info, ""));
        let rest = rest.trim();
        let kind = match (lang, rest) {
            (_, rest) if rest.starts_with("not-run:") => {
                let reason = rest["not-run:".len()..].trim();
                if reason.is_empty() {
                    Err("not-run: without a reason".to_owned())
                } else {
                    Ok(Kind::NotRun(reason.to_owned()))
                }
            }
            ("wsp", "") => Ok(Kind::Script),
            ("sh", "") => Ok(Kind::Shell),
            ("console", "") => Ok(Kind::Session),
            ("wsp" | "toml", rest) if rest.starts_with("file=") => {
                Ok(Kind::File(rest["file=".len()..].to_owned()))
            }
            ("python" | "rust", rest) if rest.starts_with("from=") => {
                Ok(Kind::From(rest["from=".len()..].to_owned()))
            }
            ("sh", rest) if rest.starts_with("run-by=") => {
                Ok(Kind::RunBy(rest["run-by=".len()..].to_owned()))
            }
            ("text" | "json" | "jsonc" | "ebnf" | "toml", "") => Ok(Kind::NotAnExample),
            _ => Err(format!("an info string outside the rules: {info:?}")),
        };
        match kind {
            Ok(kind) => blocks.push(Block {
                page: page.to_owned(),
                line: index + 1,
                lang: lang.to_owned(),
                kind,
                body: body.join("\n") + "\n",
            }),
            Err(why) => errors.push(format!("{}:{}: {why}", relative(page), index + 1)),
        }
    }
    (blocks, errors)
}

/// Every block of every page fits the rules; the checks that need no server run here:
/// scripts parse, `from=` blocks are in their files, `run-by=` commands are run there, and
/// no session hides in a `text` block.
#[test]
fn every_fenced_block_is_run_checked_or_marked_with_a_reason() {
    let root = root();
    let mut problems = Vec::new();
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for page in pages() {
        let (blocks, errors) = blocks(&page);
        problems.extend(errors);
        for block in &blocks {
            let name = match &block.kind {
                Kind::Script => "wsp",
                Kind::File(_) => "file",
                Kind::Shell => "sh",
                Kind::Session => "console",
                Kind::From(_) => "from",
                Kind::RunBy(_) => "run-by",
                Kind::NotRun(_) => "not-run",
                Kind::NotAnExample => "not an example",
            };
            *counts.entry(name).or_default() += 1;
            if block.lang == "wsp" {
                // A fragment gets a `connect` first, so that its sends have a connection.
                let source = match block.kind {
                    Kind::NotRun(_) => format!("connect\n{}", block.body),
                    _ => block.body.clone(),
                };
                if let Err(errors) = parse_script(&source, "docs.wsp") {
                    problems.push(format!("{}: {}", block.at(), errors.render(false)));
                }
            }
            match &block.kind {
                Kind::From(path) => {
                    let file = read(&root.join(path));
                    if !contains_lines(&file, &block.body) {
                        problems.push(format!("{}: its lines are not in {path}", block.at()));
                    }
                }
                Kind::RunBy(path) => {
                    let script = read(&root.join(path));
                    for command in block.body.lines().filter(|l| !l.trim().is_empty()) {
                        if !runs(&script, command) {
                            problems
                                .push(format!("{}: {path} does not run `{command}`", block.at()));
                        }
                    }
                }
                Kind::NotAnExample if block.lang == "text" => {
                    if let Some(line) = block
                        .body
                        .lines()
                        .find(|l| l.starts_with("$ ") || l.starts_with("> /"))
                    {
                        problems.push(format!(
                            "{}: a session in a text block ({line:?}): make it a console block",
                            block.at()
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The pages hold examples of every kind: a rule that matched nothing would hide a bug.
    for kind in ["wsp", "file", "sh", "console", "from", "run-by", "not-run"] {
        assert!(
            counts.get(kind).is_some_and(|&n| n > 0),
            "no {kind} block: {counts:?}"
        );
    }
}

/// Whether the lines of `block` are lines of `file`, in order and together, ignoring
/// indentation and trailing spaces.
fn contains_lines(file: &str, block: &str) -> bool {
    let file: Vec<&str> = file.lines().map(str::trim).collect();
    let block: Vec<&str> = block.lines().map(str::trim).collect();
    !block.is_empty() && file.windows(block.len()).any(|window| window == block)
}

/// Whether a line of `script` runs `command`: its words, perhaps with more arguments.
fn runs(script: &str, command: &str) -> bool {
    let wanted: Vec<&str> = command.split_whitespace().collect();
    script.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.starts_with(&wanted)
    })
}

#[test]
fn the_block_checks_catch_what_they_are_for() {
    assert!(contains_lines(
        "fn a() {\n    let x = 1;\n    x\n}\n",
        "let x = 1;\nx\n"
    ));
    assert!(!contains_lines(
        "let x = 1;\nlet y = 2;\nx\n",
        "let x = 1;\nx\n"
    ));
    assert!(runs("set -e\ncargo test --locked\n", "cargo test"));
    assert!(!runs("set -e\n# cargo test\n", "cargo test"));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    std::fs::write(
        &page,
        "```sh\nls\n```\n```sh not-run:\nx\n```\n```bash\nx\n```\n```\nx\n```\n\
         ```console not-run: needs a stage\n$ x\n```\n```toml file=a.toml\n```\n",
    )
    .unwrap();
    let (blocks, errors) = blocks(&page);
    assert_eq!(
        errors
            .iter()
            .map(|e| e.rsplit_once("md:").unwrap().1)
            .collect::<Vec<_>>(),
        [
            "4: not-run: without a reason",
            "7: an info string outside the rules: \"bash\"",
            "10: an info string outside the rules: \"\"",
        ]
    );
    let kinds: Vec<&Kind> = blocks.iter().map(|b| &b.kind).collect();
    assert_eq!(
        kinds,
        [
            &Kind::Shell,
            &Kind::NotRun("needs a stage".into()),
            &Kind::File("a.toml".into())
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Running the examples

const TOKEN: &str = "docs-example-token";
const API_KEY: &str = "docs-example-key";

/// Every `wsp` block passes against `wsprobe serve` with the settings of
/// scripts/ci-examples.sh, the token and key given as the scripts' defaults.
#[test]
fn the_script_examples_pass_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for page in pages() {
        for block in blocks(&page).0 {
            if block.kind == Kind::Script {
                let stem = relative(&block.page).replace(['/', '.'], "-");
                let file = dir.path().join(format!("{stem}-{}.wsp", block.line));
                std::fs::write(&file, &block.body).unwrap();
                files.push(file);
            }
        }
    }
    assert!(files.len() >= 7, "only {} wsp examples", files.len());
    let server = ServeProcess::start(&[
        "--token",
        TOKEN,
        "--api-key",
        API_KEY,
        "--route",
        "sendmessage=broadcast",
        "--route",
        "whoami=whoami",
    ]);
    let output = Command::new(env!("CARGO_BIN_EXE_wsprobe"))
        .arg("run")
        .args(&files)
        .args([
            "--url",
            &server.ws_url,
            "--auth",
            &format!("Bearer {TOKEN}"),
        ])
        .args(["--api-key", API_KEY, "--no-color"])
        .args(["--var", &format!("TOKEN={TOKEN}"), "--var"])
        .arg(format!("API_KEY={API_KEY}"))
        .env_remove("WSPROBE_AUTH")
        .env_remove("WSPROBE_API_KEY")
        .output()
        .expect("running wsprobe run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Every `sh` and `console` block of every page runs as docs/README.md says, each page in
/// its own directory (where its `file=` blocks are written).
#[test]
fn the_shell_examples_run() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for page in pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<(String, String)> = Vec::new();
        for block in blocks(&page).0 {
            let result = match &block.kind {
                Kind::File(name) => {
                    files.push((name.clone(), block.body.clone()));
                    continue;
                }
                Kind::Shell | Kind::Session => run_block(&block, dir.path(), &files),
                _ => continue,
            };
            ran += 1;
            if let Err(why) = result {
                failures.push(format!("{}:\n{why}", block.at()));
            }
        }
    }
    assert!(ran >= 12, "only {ran} shell examples ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A command of a `console` block (or a whole `sh` block), with the output shown under it.
struct Step {
    command: String,
    output: Vec<String>,
    exit_code: i32,
}

/// The steps of a block: its `wsprobe serve` line apart (at most one, before any other
/// command: the test starts it first), the rest in order.
fn steps(block: &Block) -> Result<(Option<Step>, Vec<Step>), String> {
    let misplaced = || Err("one `wsprobe serve` at most, before any other command".to_owned());
    let mut serve = None;
    let mut steps: Vec<Step> = Vec::new();
    let is_serve = |command: &str| command.trim_start().starts_with("wsprobe serve");
    if block.kind == Kind::Shell {
        let mut script = String::new();
        let mut lines = block.body.lines();
        while let Some(line) = lines.next() {
            let mut command = line.to_owned();
            while command.ends_with('\\') {
                command.push('\n');
                command.push_str(lines.next().unwrap_or_default());
            }
            if is_serve(&command) {
                let before = script.lines().map(str::trim);
                if serve.is_some() || before.clone().any(|l| !l.is_empty() && !l.starts_with('#')) {
                    return misplaced();
                }
                serve = Some(Step {
                    command,
                    output: Vec::new(),
                    exit_code: 0,
                });
            } else {
                script.push_str(&command);
                script.push('\n');
            }
        }
        steps.push(Step {
            command: script,
            output: Vec::new(),
            exit_code: 0,
        });
        return Ok((serve, steps));
    }
    let mut lines = block.body.lines();
    while let Some(line) = lines.next() {
        if let Some(command) = line.strip_prefix("$ ") {
            let mut command = command.to_owned();
            while command.ends_with('\\') {
                command.push('\n');
                command.push_str(lines.next().unwrap_or_default());
            }
            if command == "echo $?" {
                let code = lines.next().and_then(|l| l.trim().parse().ok());
                let last = steps.last_mut().expect("`echo $?` after a command");
                last.exit_code = code.expect("`echo $?` followed by a number");
                continue;
            }
            let step = Step {
                command,
                output: Vec::new(),
                exit_code: 0,
            };
            if is_serve(&step.command) {
                if serve.is_some() || !steps.is_empty() {
                    return misplaced();
                }
                serve = Some(step);
            } else {
                steps.push(step);
            }
        } else if let Some(step) = steps.last_mut() {
            step.output.push(line.to_owned());
        } else if let Some(step) = serve.as_mut() {
            step.output.push(line.to_owned());
        }
    }
    Ok((serve, steps))
}

/// The regex an expected output line stands for: numbers and 16-character ids match any,
/// `…` any text.
fn pattern(expected: &str) -> String {
    let token = Regex::new(r"[A-Za-z0-9_-]{15}(?:=|%3D)|\d+(?:\.\d+)?|…").unwrap();
    let mut pattern = String::new();
    let mut last = 0;
    for found in token.find_iter(expected) {
        pattern.push_str(&regex::escape(&expected[last..found.start()]));
        pattern.push_str(match found.as_str() {
            "…" => ".*",
            s if s.ends_with('=') => "[A-Za-z0-9_-]{15}=",
            s if s.ends_with("%3D") => "[A-Za-z0-9_-]{15}%3D",
            _ => r"\d+(?:\.\d+)?",
        });
        last = found.end();
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern
}

/// Whether `expected` lines occur in `actual`, in order, each matching a whole line.
fn missing_line(expected: &[String], actual: &str) -> Option<String> {
    let mut lines = actual.lines();
    for wanted in expected.iter().filter(|l| !l.trim().is_empty()) {
        let re = Regex::new(&format!("^{}$", pattern(wanted.trim_end()))).unwrap();
        if !lines.any(|line| re.is_match(line.trim_end())) {
            return Some(wanted.clone());
        }
    }
    None
}

/// A `wsprobe serve` an example started, with what it printed. Killed on drop.
struct ExampleServer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    address: String,
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment every example runs in: the binary under test first on `PATH`, home
/// and data directories in `dir`, no colour, none of wsprobe's variables from outside.
fn example_command(program: &str, dir: &Path) -> Command {
    let bin = Path::new(env!("CARGO_BIN_EXE_wsprobe")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join(".data"))
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    for (name, _) in std::env::vars() {
        if name.starts_with("WSPROBE_") || name.ends_with("_proxy") || name.ends_with("_PROXY") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts the `wsprobe serve` line of an example on a free port, and waits for its URL.
fn start_serve(step: &Step, dir: &Path) -> Result<ExampleServer, String> {
    let listen = Regex::new(r"--listen\s+\S+").unwrap();
    let args = listen.replace_all(step.command.trim().trim_end_matches('&'), "");
    let args = args
        .trim()
        .strip_prefix("wsprobe serve")
        .unwrap_or_default();
    let mut child = example_command("bash", dir)
        .arg("-c")
        .arg(format!("exec wsprobe serve --listen 127.0.0.1:0 {args}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", step.command))?;
    let lines = support::line_channel(child.stdout.take().expect("piped stdout"));
    let mut server = ExampleServer {
        child,
        lines,
        address: String::new(),
    };
    let url = server
        .lines
        .recv_timeout(TIMEOUT)
        .map_err(|_| format!("`{}` printed no URL", step.command))?;
    let address = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next());
    server.address = address.ok_or(format!("not a URL: {url}"))?.to_owned();
    Ok(server)
}

/// Runs one `sh` or `console` block in `dir`, after writing the page's `file=` blocks.
fn run_block(block: &Block, dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    let (serve, steps) = steps(block)?;
    let server = serve
        .as_ref()
        .map(|step| start_serve(step, dir))
        .transpose()?;
    let address = server.as_ref().map(|s| s.address.clone());
    let local = |text: &str| match &address {
        Some(address) => text.replace("127.0.0.1:8080", address),
        None => text.to_owned(),
    };
    for (name, body) in files {
        std::fs::write(dir.join(name), local(body)).unwrap();
    }
    let interactive = block.kind == Kind::Session
        && steps.first().is_some_and(|s| {
            s.command.starts_with("wsprobe connect")
                && !s.command.contains(" -x")
                && !s.command.contains('|')
        });
    if interactive {
        if steps.len() != 1 {
            return Err("a session at the prompt must be the block's one command".into());
        }
        type_session(&steps[0], dir, &local)?;
    } else if block.kind == Kind::Shell {
        let output = example_command("bash", dir)
            .args(["-e", "-c", &local(&steps[0].command)])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "exit {:?}\n{}{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    } else {
        run_session(&steps, dir, &local)?;
    }
    if let (Some(serve), Some(server)) = (serve, server) {
        // The log lines of what the other commands did; the URL line was read already.
        let mut printed = format!("ws://{}/dev\n", server.address);
        let deadline = Instant::now() + TIMEOUT;
        while missing_line(&serve.output, &printed).is_some() && Instant::now() < deadline {
            if let Ok(line) = server.lines.recv_timeout(Duration::from_millis(100)) {
                printed.push_str(&line);
                printed.push('\n');
            }
        }
        if let Some(line) = missing_line(&serve.output, &printed) {
            return Err(format!(
                "`{}` did not print {line:?}:\n{printed}",
                serve.command
            ));
        }
        drop(server);
    }
    Ok(())
}

/// Runs the commands of a `console` block in one bash session (so `export` carries over),
/// each one's output and exit code kept apart, then checks them.
fn run_session(steps: &[Step], dir: &Path, local: &dyn Fn(&str) -> String) -> Result<(), String> {
    let mut script = String::new();
    for (index, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "{{ {}\n}} > .out.{index} 2>&1 < /dev/null; echo $? > .rc.{index}\n",
            local(&step.command)
        ));
    }
    let status = example_command("bash", dir)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the session's bash exited with {status}"));
    }
    for (index, step) in steps.iter().enumerate() {
        let output = read(&dir.join(format!(".out.{index}")));
        let code: i32 = read(&dir.join(format!(".rc.{index}")))
            .trim()
            .parse()
            .unwrap();
        if code != step.exit_code {
            return Err(format!(
                "`{}` exited with {code}, not {}:\n{output}",
                step.command, step.exit_code
            ));
        }
        let expected: Vec<String> = step.output.iter().map(|l| local(l)).collect();
        if let Some(line) = missing_line(&expected, &output) {
            return Err(format!(
                "`{}` did not print {line:?}:\n{output}",
                step.command
            ));
        }
    }
    Ok(())
}

/// Types a session at the prompt into `wsprobe connect` at a pseudo-terminal: a `> ` line
/// after any other line is typed; the other lines between two typed ones are waited for,
/// in any order (an `@connections` answer and the push it made race); then Ctrl-D at the
/// prompt (unless the session ended), and the exit code must be 0.
fn type_session(step: &Step, dir: &Path, local: &dyn Fn(&str) -> String) -> Result<(), String> {
    let mut command = example_command("bash", dir);
    command
        .arg("-c")
        .arg(format!("exec {}", local(&step.command)));
    let mut session = expectrl::Session::spawn(command).map_err(|e| e.to_string())?;
    // Each group: the line typed before it (none for the first), the lines awaited.
    let mut groups: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new())];
    let mut previous_is_prompt_line = false;
    for line in step.output.iter().map(|l| local(l)) {
        if line.starts_with("> ") && !previous_is_prompt_line {
            groups.push((Some(line[2..].to_owned()), Vec::new()));
        } else {
            groups.last_mut().unwrap().1.push(line.clone());
        }
        previous_is_prompt_line = line.starts_with("> ");
    }
    let mut printed = String::new();
    for (typed, awaited) in groups {
        if let Some(typed) = typed {
            session.send_line(&typed).map_err(|e| e.to_string())?;
        }
        let patterns: Vec<Regex> = awaited
            .iter()
            .map(|l| Regex::new(&pattern(l)).unwrap())
            .collect();
        let start = printed.len();
        let deadline = Instant::now() + TIMEOUT;
        while let Some(missing) = patterns.iter().position(|p| !p.is_match(&printed[start..])) {
            if Instant::now() > deadline {
                return Err(format!("waiting for {:?}:\n{printed}", awaited[missing]));
            }
            read_some(&mut session, &mut printed);
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut asked_to_quit = false;
    loop {
        use expectrl::process::unix::WaitStatus;
        match session.get_process().status() {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => return Err(format!("exit code {code}:\n{printed}")),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Err(format!("killed by {signal:?}")),
            _ => {}
        }
        // Ctrl-D once the prompt is drawn after the last output: typed between two
        // prompts it would reach a terminal in line mode and be lost.
        if !asked_to_quit && printed.ends_with("> \r\u{1b}[2C\u{1b}[?2026l") {
            let _ = session.send(ControlCode::EndOfTransmission);
            asked_to_quit = true;
        }
        if Instant::now() > deadline {
            return Err(format!("wsprobe connect did not exit:\n{printed}"));
        }
        read_some(&mut session, &mut printed);
    }
}

/// Appends what the terminal shows next (if anything within 20 ms) to `printed`.
fn read_some(session: &mut expectrl::session::OsSession, printed: &mut String) {
    let mut buffer = [0u8; 4096];
    match session.try_read(&mut buffer) {
        Ok(n) if n > 0 => printed.push_str(&String::from_utf8_lossy(&buffer[..n])),
        _ => std::thread::sleep(Duration::from_millis(20)),
    }
}

/// The library example of docs/serve.md ("As a library"), as it is written there.
#[rustfmt::skip]
#[tokio::test]
async fn the_library_example_of_the_serve_docs_runs() -> Result<(), Box<dyn std::error::Error>> {
use wsprobe_serve::{RouteBehaviour, ServeConfig, spawn};   // crates/wsprobe-serve

let config = ServeConfig { default_route: Some(RouteBehaviour::Echo), ..ServeConfig::default() };
let server = spawn(config, "127.0.0.1:0".parse()?).await?;
let mut events = server.events();      // ServeEvent::Connected, Message, Disconnected, …
let (ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;   // ws://127.0.0.1:PORT/dev
server.shutdown().await;               // every connection closed with 1001
    let connected = events.recv().await?;
    assert!(matches!(connected, wsprobe_serve::ServeEvent::Connected { .. }), "{connected:?}");
    drop(ws);
    Ok(())
}
