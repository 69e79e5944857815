//! The command table: every keyword, where it may be used, its usage line and an example.
//! The REPL's `/help` and tab completion read it; the parser uses it for "did you mean".

/// Where a command may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In scripts and at the prompt.
    Both,
    /// Only in script files (`test`, connect options).
    Script,
    /// Only at the `wsprobe connect` prompt (`help`, `pretty`, `quit`).
    Repl,
}

/// One entry of the command table.
#[derive(Clone, Copy, Debug)]
pub struct CommandHelp {
    /// The keyword.
    pub name: &'static str,
    /// Other spellings of the keyword.
    pub aliases: &'static [&'static str],
    /// Where it may be used.
    pub scope: Scope,
    /// The syntax, e.g. `send ROUTE [PAYLOAD]`.
    pub usage: &'static str,
    /// What it does, in one or two lines.
    pub summary: &'static str,
    /// An example line.
    pub example: &'static str,
}

/// Every command and connect option.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "connect",
        aliases: &[],
        scope: Scope::Both,
        usage: "connect [NAME] [URL]",
        summary: "Open a connection (URL defaults to --url). Indented lines below it set options. \
                  Scripts only: the prompt keeps its one connection.",
        example: "connect alice ${WS_URL}",
    },
    CommandHelp {
        name: "auth",
        aliases: &[],
        scope: Scope::Script,
        usage: "  auth VALUE",
        summary: "Connect option: the Authorization header (rest of the line; redacted in output).",
        example: "  auth Bearer ${TOKEN}",
    },
    CommandHelp {
        name: "api-key",
        aliases: &[],
        scope: Scope::Script,
        usage: "  api-key VALUE",
        summary: "Connect option: the X-API-Key header (rest of the line; redacted in output).",
        example: "  api-key ${API_KEY}",
    },
    CommandHelp {
        name: "header",
        aliases: &[],
        scope: Scope::Script,
        usage: "  header NAME: VALUE",
        summary: "Connect option: an extra handshake header.",
        example: "  header X-Trace: abc",
    },
    CommandHelp {
        name: "subprotocol",
        aliases: &[],
        scope: Scope::Script,
        usage: "  subprotocol NAME",
        summary: "Connect option: a Sec-WebSocket-Protocol to offer (repeatable).",
        example: "  subprotocol chat",
    },
    CommandHelp {
        name: "origin",
        aliases: &[],
        scope: Scope::Script,
        usage: "  origin URL",
        summary: "Connect option: the Origin header.",
        example: "  origin https://example.com",
    },
    CommandHelp {
        name: "reconnect",
        aliases: &[],
        scope: Scope::Script,
        usage: "  reconnect [always] [max N]",
        summary: "Connect option: reopen the connection when the server ends it with 1001 or 1006 \
                  (always: any close), re-running the handshake; at most N failed attempts in a row.",
        example: "  reconnect max 5",
    },
    CommandHelp {
        name: "send",
        aliases: &[],
        scope: Scope::Both,
        usage: "send ROUTE [PAYLOAD]",
        summary: "Send a route-tagged JSON message; a JSON object payload is merged into it.",
        example: "send send \"Hello World!\"",
    },
    CommandHelp {
        name: "text",
        aliases: &[],
        scope: Scope::Both,
        usage: "text TEXT",
        summary: "Send a text frame: the rest of the line, verbatim.",
        example: "text hello",
    },
    CommandHelp {
        name: "binary",
        aliases: &[],
        scope: Scope::Both,
        usage: "binary HEX | binary base64:DATA",
        summary: "Send a binary frame.",
        example: "binary 48656c6c6f",
    },
    CommandHelp {
        name: "ping",
        aliases: &[],
        scope: Scope::Both,
        usage: "ping [DATA]",
        summary: "Send a ping frame (then `expect pong`).",
        example: "ping hello",
    },
    CommandHelp {
        name: "pong",
        aliases: &[],
        scope: Scope::Both,
        usage: "pong [DATA]",
        summary: "Send an unsolicited pong frame (a heartbeat), as wscat's /pong.",
        example: "pong",
    },
    CommandHelp {
        name: "close",
        aliases: &[],
        scope: Scope::Both,
        usage: "close [CODE [REASON]]",
        summary: "Close the connection (code 1000 by default).",
        example: "close 1000 bye",
    },
    CommandHelp {
        name: "expect",
        aliases: &[],
        scope: Scope::Both,
        usage: "expect [next] MATCHER [within DURATION]",
        summary: "Wait for a message that matches: echo, any, json VALUE, json PATH OP VALUE, \
                  json-subset VALUE, text [contains|matches] VALUE, binary DATA, pong, closed [CODE]; \
                  or expect nothing, status CODE, response MATCHER, connect-refused [STATUS].",
        example: "expect json $.message == \"Forbidden\" within 2s",
    },
    CommandHelp {
        name: "capture",
        aliases: &[],
        scope: Scope::Both,
        usage: "capture [next] NAME = json PATH | regex REGEX [within DURATION]",
        summary: "Wait for a message that has the value and store it as ${NAME} for the lines after \
                  it (a capture wins over the environment).",
        example: "capture conn = json $.connectionId",
    },
    CommandHelp {
        name: "sleep",
        aliases: &["wait"],
        scope: Scope::Both,
        usage: "sleep DURATION",
        summary: "Pause (messages keep arriving meanwhile).",
        example: "sleep 500ms",
    },
    CommandHelp {
        name: "keepalive",
        aliases: &[],
        scope: Scope::Both,
        usage: "keepalive [DURATION [TEXT] | off]",
        summary: "Send a ping (or the text frame TEXT) after every DURATION without sending; \
                  answers are counted, not delivered. Alone: show the counts.",
        example: "keepalive 5m {\"action\":\"ping\"}",
    },
    CommandHelp {
        name: "post",
        aliases: &[],
        scope: Scope::Both,
        usage: "post CONNECTION_ID [PAYLOAD]",
        summary: "Send a message to a connection through the @connections API \
                  (`expect status` and `expect response` check the answer).",
        example: "post ${conn} {\"push\": 1}",
    },
    CommandHelp {
        name: "get",
        aliases: &[],
        scope: Scope::Both,
        usage: "get CONNECTION_ID",
        summary: "Read a connection's details through the @connections API.",
        example: "get ${conn}",
    },
    CommandHelp {
        name: "delete",
        aliases: &[],
        scope: Scope::Both,
        usage: "delete CONNECTION_ID",
        summary: "Disconnect a connection through the @connections API.",
        example: "delete ${conn}",
    },
    CommandHelp {
        name: "echo",
        aliases: &[],
        scope: Scope::Both,
        usage: "echo body|full|off",
        summary: "What the echo of a route-tagged send looks like from now on.",
        example: "echo full",
    },
    CommandHelp {
        name: "test",
        aliases: &[],
        scope: Scope::Script,
        usage: "test NAME",
        summary: "Start a test case: the commands up to the next `test` line.",
        example: "test \"echo round trip\"",
    },
    CommandHelp {
        name: "pretty",
        aliases: &[],
        scope: Scope::Repl,
        usage: "pretty on|off",
        summary: "Pretty-print JSON messages.",
        example: "pretty on",
    },
    CommandHelp {
        name: "help",
        aliases: &[],
        scope: Scope::Repl,
        usage: "help [COMMAND]",
        summary: "List the commands, or explain one.",
        example: "help expect",
    },
    CommandHelp {
        name: "quit",
        aliases: &["exit"],
        scope: Scope::Repl,
        usage: "quit",
        summary: "Close the connection and leave.",
        example: "quit",
    },
];

/// The matchers `expect` and `expect response` accept, for suggestions and completion.
pub const MATCHER_NAMES: &[&str] = &[
    "echo",
    "any",
    "json",
    "json-subset",
    "text",
    "binary",
    "pong",
    "closed",
];

/// Everything that may follow `expect`.
pub const EXPECT_WORDS: &[&str] = &[
    "next",
    "echo",
    "any",
    "json",
    "json-subset",
    "text",
    "binary",
    "pong",
    "closed",
    "nothing",
    "status",
    "response",
    "connect-refused",
];

/// The command keywords usable at the prompt (with their aliases), for tab completion.
pub fn command_names() -> &'static [&'static str] {
    &[
        "connect", "send", "text", "binary", "ping", "pong", "close", "expect", "capture", "sleep",
        "wait", "post", "get", "delete", "echo", "pretty", "help", "quit", "exit",
    ]
}

/// Every keyword that may start a line anywhere (commands, aliases, options, `test`).
pub(crate) fn all_keywords() -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .flat_map(|command| std::iter::once(command.name).chain(command.aliases.iter().copied()))
}

/// The table entry for a keyword or alias.
pub fn lookup(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS
        .iter()
        .find(|command| command.name == name || command.aliases.contains(&name))
}

/// The REPL's `/help`: every command of the prompt, one line each.
pub fn help_text() -> &'static str {
    "\
Type a line to send it as a text frame; `//x` sends `/x`. Commands:
  /send ROUTE [PAYLOAD]        route-tagged JSON message, e.g. /send send \"Hello World!\"
  /text TEXT                   text frame, the rest of the line verbatim
  /binary HEX|base64:DATA      binary frame
  /ping [DATA]                 ping frame
  /close [CODE [REASON]]       close the connection
  /expect [next] MATCHER [within DUR]
                               wait for a message: echo, any, json VALUE, json PATH OP VALUE,
                               json-subset VALUE, text [contains|matches] VALUE, binary DATA,
                               pong [DATA], closed [CODE]; or /expect nothing
  /capture [next] NAME = json PATH|regex REGEX [within DUR]
                               wait for a message with the value; later lines use ${NAME}
                               (captures first, then the environment)
  /wait DUR (or /sleep DUR)    pause, showing what arrives
  /post ID [PAYLOAD], /get ID, /delete ID
                               the stage's @connections API; the answer shows as `← 200 OK`;
                               then /expect status CODE, /expect response MATCHER
  /echo body|full|off          what the echo of /send looks like
  /pretty on|off               pretty-print JSON messages
  /help [COMMAND]              this list, or one command in detail
  /quit                        close and leave (also Ctrl-D)
Push a message to yourself (the bundled backend has the whoami route):
  /send whoami    /capture me = json $.connectionId    /post ${me} hello
Scripts only (`wsprobe run`): /connect and @NAME (the prompt has one connection), test
blocks, connect options (auth, api-key, header, subprotocol, origin), expect connect-refused.
"
}

/// Help for one command (or alias, or connect option): usage, summary and an example.
pub fn help_for(name: &str) -> Option<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let command = lookup(name)?;
    let mut text = format!("{}\n  {}\n", command.usage, command.summary);
    if !command.aliases.is_empty() {
        text.push_str(&format!("  also spelled: {}\n", command.aliases.join(", ")));
    }
    match command.scope {
        Scope::Script => text.push_str("  (in script files only)\n"),
        Scope::Repl => text.push_str("  (at the prompt only)\n"),
        Scope::Both => {}
    }
    text.push_str(&format!("  example: {}\n", command.example));
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_command_has_help() {
        for name in command_names() {
            let entry = lookup(name).unwrap_or_else(|| panic!("no help for {name}"));
            assert_ne!(entry.scope, Scope::Script, "{name}");
            assert!(help_for(name).unwrap().contains(entry.usage));
        }
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(lookup("wait").map(|c| c.name), Some("sleep"));
        assert_eq!(lookup("exit").map(|c| c.name), Some("quit"));
        assert!(help_for("/wait").unwrap().contains("also spelled: wait"));
        assert!(help_for("nope").is_none());
    }
}
