//! Log lines for the systemd journal, used by [`super::init_logging`] when stderr is the journal.
//!
//! systemd connects a service's stderr to journald and says so in `JOURNAL_STREAM`
//! (`<device>:<inode>` of that stream). There the journal stamps each line itself and shows
//! colours as garbage, so lines carry neither; instead each starts with its syslog priority
//! (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace), the sd-daemon convention
//! journald reads to record the priority (`journalctl -p warning` then works). A message that
//! spans lines gets the prefix on every line, or the journal would file the rest as info.

use std::fmt::{self, Write as _};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The variable systemd sets for a service whose stdout or stderr goes to the journal.
pub const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";

/// Whether this process's stderr is the stream `JOURNAL_STREAM` names. The variable alone is not
/// enough: it is inherited by children whose stderr was redirected elsewhere, so the stream's
/// device and inode are compared with stderr's own.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os(JOURNAL_STREAM_ENV) else {
        return false;
    };
    let Some(value) = value.to_str() else {
        return false;
    };
    stderr_identity().is_some_and(|(dev, ino)| names_stream(value, dev, ino))
}

/// Whether a `JOURNAL_STREAM` value (`<device>:<inode>`, both decimal) names this device and inode.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// Device and inode of what stderr is connected to.
#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    // A duplicate of the descriptor, so that closing it after the fstat leaves stderr open.
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

/// The syslog priority of a level, as journald reads it from a `<N>` prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `message` with `<N>` (the priority of `level`) at the start of each of its lines.
pub fn prefixed(level: Level, message: &str) -> String {
    let priority = priority(level);
    let mut out = String::with_capacity(message.len() + 4);
    for line in message.trim_end_matches('\n').split('\n') {
        let _ = writeln!(out, "<{priority}>{line}");
    }
    out
}

/// The event format for the journal: the usual target, spans and fields, without time, level
/// name or colours, each line prefixed with the priority.
#[derive(Debug)]
pub struct JournalFormat {
    inner: Format<Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        Self {
            inner: Format::default()
                .without_time()
                .with_level(false)
                .with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The whole event first, so that every line of it can be prefixed.
        let mut text = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut text), event)?;
        writer.write_str(&prefixed(
            *event.metadata().level(),
            &without_colours(&text),
        ))
    }
}

/// `text` without ANSI colour sequences (`ESC [ … m`). Span fields are formatted once, when the
/// span opens, with the colours of the subscriber's own setting; this keeps them out of the
/// journal even if that setting was left on.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // Skip `[`, the parameters and the final letter.
        for c in chars.by_ref() {
            if c.is_ascii_alphabetic() {
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn journal_lines(emit: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_writer(captured.clone())
            // Even if colours were asked for, the journal format writes none.
            .with_ansi(true)
            .event_format(JournalFormat::default())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        captured.text().lines().map(str::to_owned).collect()
    }

    #[test]
    fn each_level_gets_its_syslog_priority_and_nothing_the_journal_adds_itself() {
        let lines = journal_lines(|| {
            tracing::error!("cannot bind");
            tracing::warn!(port = 8317, "port busy");
            tracing::info!(base_url = "http://127.0.0.1:8317", "gateway started");
            tracing::debug!("detail");
            tracing::trace!("more detail");
        });
        let target = module_path!();
        assert_eq!(
            lines,
            [
                format!("<3>{target}: cannot bind"),
                format!("<4>{target}: port busy port=8317"),
                format!("<6>{target}: gateway started base_url=\"http://127.0.0.1:8317\""),
                format!("<7>{target}: detail"),
                format!("<7>{target}: more detail"),
            ]
        );
    }

    #[test]
    fn a_message_over_several_lines_is_prefixed_on_every_line() {
        let lines = journal_lines(|| tracing::warn!("first line\nsecond line"));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("<4>")), "{lines:?}");
        assert!(lines[1].ends_with("second line"), "{lines:?}");
        assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
    }

    #[test]
    fn spans_are_kept() {
        let lines = journal_lines(|| {
            let span = tracing::info_span!("request", id = 7);
            let _entered = span.enter();
            tracing::info!("relayed");
        });
        assert_eq!(
            lines,
            [format!("<6>request{{id=7}}: {}: relayed", module_path!())]
        );
    }

    #[test]
    fn colours_are_removed() {
        assert_eq!(
            without_colours("a{\x1b[3mid\x1b[0m\x1b[2m=\x1b[0m7} b"),
            "a{id=7} b"
        );
        assert_eq!(without_colours("plain"), "plain");
    }

    #[test]
    fn prefixes_plain_messages() {
        assert_eq!(
            prefixed(Level::ERROR, "flexiproxy: no\n"),
            "<3>flexiproxy: no\n"
        );
        assert_eq!(prefixed(Level::INFO, "a\nb"), "<6>a\n<6>b\n");
    }

    #[test]
    fn journal_stream_must_name_stderr_exactly() {
        assert!(names_stream("64769:123456", 64769, 123456));
        assert!(names_stream("64769:123456\n", 64769, 123456));
        assert!(!names_stream("64769:123457", 64769, 123456));
        assert!(!names_stream("64770:123456", 64769, 123456));
        assert!(!names_stream("64769", 64769, 123456));
        assert!(!names_stream("", 64769, 123456));
        assert!(!names_stream("a:b", 64769, 123456));
    }

    #[cfg(unix)]
    #[test]
    fn stderr_has_an_identity_the_variable_can_name() {
        let (dev, ino) = stderr_identity().unwrap();
        assert!(names_stream(&format!("{dev}:{ino}"), dev, ino));
    }
}
