//! The shell's commands: one line of text → a [`Command`], or an error that says what was wrong
//! in one line.

#![forbid(unsafe_code)]

use core::fmt;

use crate::manifest::LogLevel;

/// One shell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line: nothing to do.
    Empty,
    /// `help`.
    Help,
    /// `list`: every guest with its state, CPUs, memory, uptime and restarts.
    List,
    /// `stats NAME`: exits by reason, virtio counters, restarts.
    Stats(&'a str),
    /// `stop NAME`.
    Stop(&'a str),
    /// `restart NAME`: start again from the pristine images.
    Restart(&'a str),
    /// `log LEVEL`: change the log filter.
    Log(LogLevel),
}

/// A line that is not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError<'a> {
    /// The first word names no command.
    Unknown(&'a str),
    /// The command needs an argument it did not get.
    Missing {
        command: &'static str,
        what: &'static str,
    },
    /// More words than the command takes.
    Extra {
        command: &'static str,
        word: &'a str,
    },
    /// `log` with something that is not a level.
    BadLevel(&'a str),
}

impl fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(word) => write!(f, "unknown command `{word}` (try `help`)"),
            Self::Missing { command, what } => {
                write!(
                    f,
                    "`{command}` needs {what} (`{command} {}`)",
                    usage(command)
                )
            }
            Self::Extra { command, word } => {
                write!(f, "`{command}` takes no more than that; `{word}` is extra")
            }
            Self::BadLevel(word) => write!(
                f,
                "`{word}` is not a log level (error, warn, info, debug, trace)"
            ),
        }
    }
}

fn usage(command: &str) -> &'static str {
    match command {
        "log" => "LEVEL",
        _ => "NAME",
    }
}

/// One line per command, for `help`.
pub const HELP: &[&str] = &[
    "list            guests: state, CPUs, memory, uptime, restarts",
    "stats NAME      exits by reason, virtio counters, restarts of guest NAME",
    "stop NAME       stop guest NAME (restart brings it back)",
    "restart NAME    start guest NAME again from its images",
    "log LEVEL       log filter: error, warn, info, debug or trace",
    "help            this list",
];

fn level(word: &str) -> Option<LogLevel> {
    Some(match word.to_ascii_lowercase().as_str() {
        "error" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return None,
    })
}

/// Parses one command line (words separated by spaces or tabs).
pub fn parse(line: &str) -> Result<Command<'_>, CommandError<'_>> {
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Ok(Command::Empty);
    };
    let (command, needs): (&'static str, Option<&'static str>) = match first {
        "help" | "?" => ("help", None),
        "list" | "ls" => ("list", None),
        "stats" => ("stats", Some("a guest name")),
        "stop" => ("stop", Some("a guest name")),
        "restart" => ("restart", Some("a guest name")),
        "log" => ("log", Some("a level")),
        other => return Err(CommandError::Unknown(other)),
    };
    let arg = match needs {
        Some(what) => Some(
            words
                .next()
                .ok_or(CommandError::Missing { command, what })?,
        ),
        None => None,
    };
    if let Some(word) = words.next() {
        return Err(CommandError::Extra { command, word });
    }
    Ok(match (command, arg) {
        ("help", _) => Command::Help,
        ("list", _) => Command::List,
        ("stats", Some(name)) => Command::Stats(name),
        ("stop", Some(name)) => Command::Stop(name),
        ("restart", Some(name)) => Command::Restart(name),
        ("log", Some(word)) => Command::Log(level(word).ok_or(CommandError::BadLevel(word))?),
        // Every command with an argument got one above.
        _ => Command::Empty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn commands_parse() {
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse("   \t"), Ok(Command::Empty));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse(" list "), Ok(Command::List));
        assert_eq!(parse("stats heartbeat"), Ok(Command::Stats("heartbeat")));
        assert_eq!(parse("stop  web"), Ok(Command::Stop("web")));
        assert_eq!(parse("restart web"), Ok(Command::Restart("web")));
        assert_eq!(parse("log DEBUG"), Ok(Command::Log(LogLevel::Debug)));
        assert_eq!(parse("log warn"), Ok(Command::Log(LogLevel::Warn)));
    }

    #[test]
    fn mistakes_get_one_clear_line() {
        let msg = |l: &str| parse(l).unwrap_err().to_string();
        assert_eq!(msg("lsit"), "unknown command `lsit` (try `help`)");
        assert_eq!(msg("stats"), "`stats` needs a guest name (`stats NAME`)");
        assert_eq!(msg("log"), "`log` needs a level (`log LEVEL`)");
        assert_eq!(
            msg("list all"),
            "`list` takes no more than that; `all` is extra"
        );
        assert_eq!(
            msg("log loud"),
            "`loud` is not a log level (error, warn, info, debug, trace)"
        );
        assert!(!msg("stop a b").contains('\n'));
    }
}
