//! Where log lines go and how they look: the `tracing` subscriber, set up once in `main`.
//!
//! - `madvd agent` logs for machines: one JSON object per stderr line (`--log-format json`,
//!   the default when stderr is not a terminal), errors included ([`error`]). Run by systemd
//!   (stderr is the journal: `JOURNAL_STREAM` names it), each line also carries the syslog
//!   `PRIORITY` and `SYSLOG_IDENTIFIER` journald uses, and no timestamp (the journal stamps
//!   every line itself).
//! - Every other command logs text for people, coloured only when stderr is a terminal.
//!
//! The level filter: `MADVD_LOG`, else `RUST_LOG`, else by `-v`.

use std::io::IsTerminal;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line: timestamp, level, message, fields, target.
    Json,
    /// Plain text (coloured on a terminal).
    Text,
}

/// The identifier journald files the agent's lines under.
const SYSLOG_IDENTIFIER: &str = "madvd";

/// The agent's format: the flag's, else JSON unless stderr is a terminal.
pub fn agent_format(flag: Option<LogFormat>) -> LogFormat {
    flag.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Text
    } else {
        LogFormat::Json
    })
}

/// True when stderr is the journal: `JOURNAL_STREAM` (`DEV:INODE`, set by systemd) names
/// the very file stderr is (a child of the service may inherit the variable with its stderr
/// redirected elsewhere).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // dev_t and ino_t are u64 here but narrower on some targets.
    #[allow(clippy::unnecessary_cast)]
    nix::sys::stat::fstat(std::io::stderr())
        .is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino)
}

/// Syslog priority of a level (sd-daemon(3): `SD_ERR` 3 ... `SD_DEBUG` 7).
fn priority(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The JSON formatter's line with journald's `PRIORITY` and `SYSLOG_IDENTIFIER` in front.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"PRIORITY\":\"{}\",\"SYSLOG_IDENTIFIER\":\"{SYSLOG_IDENTIFIER}\",{rest}",
                priority(event.metadata().level())
            ),
            None => writer.write_str(&line),
        }
    }
}

fn filter(verbose: u8) -> EnvFilter {
    let default = match verbose {
        0 => "warn,madvd=info",
        1 => "info,madvd=debug",
        _ => "debug,madvd=trace",
    };
    std::env::var("MADVD_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}

/// Install the subscriber: `format` for the agent (see [`agent_format`]), text otherwise.
pub fn init(verbose: u8, format: LogFormat) {
    let base = tracing_subscriber::fmt()
        .with_env_filter(filter(verbose))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => base
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .without_time()
            .with_target(false)
            .try_init(),
        LogFormat::Json => {
            let json = base.json().flatten_event(true).with_current_span(false);
            if stderr_is_journal() {
                let f = tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .without_time();
                json.event_format(Journald(f)).try_init()
            } else {
                json.try_init()
            }
        }
    };
}

/// Which format a command line that clap refused would have logged in: the agent's when
/// `agent` is among the words (its `--log-format` if readable), text otherwise. Lets even a
/// usage error of the agent come out as JSON.
pub fn format_of_raw_args(args: &[String]) -> LogFormat {
    if !args.iter().skip(1).any(|a| a == "agent") {
        return LogFormat::Text;
    }
    let mut flag = None;
    for (i, a) in args.iter().enumerate() {
        let v = match a.strip_prefix("--log-format") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        flag = match v {
            Some("json") => Some(LogFormat::Json),
            Some("text") => Some(LogFormat::Text),
            _ => flag,
        };
    }
    agent_format(flag)
}

/// Report the error that ends the program: a JSON line through the subscriber in JSON mode,
/// else `madvd: error: ...` as ever.
pub fn error(format: LogFormat, msg: &str) {
    match format {
        LogFormat::Json => tracing::error!(target: "madvd", "{msg}"),
        LogFormat::Text => eprintln!("madvd: error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn raw_args_pick_the_agent_format() {
        assert_eq!(
            format_of_raw_args(&args("madvd run --bogus")),
            LogFormat::Text
        );
        let json = args("madvd agent --log-format json --bogus");
        assert_eq!(format_of_raw_args(&json), LogFormat::Json);
        let text = args("madvd -v agent --log-format=text --bogus");
        assert_eq!(format_of_raw_args(&text), LogFormat::Text);
    }

    #[test]
    fn priorities_are_syslog_levels() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::TRACE), 7);
    }
}
