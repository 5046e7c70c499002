//! Logging. JSON lines in Lambda (CloudWatch parses them; the template sets
//! `AWS_LAMBDA_LOG_FORMAT: JSON`), plain text locally.
//!
//! Privacy rule for every log call in eurochat: log kinds, counts, codes, site
//! ids and durations; never message text, IPs, emails, names, tokens, or visitor
//! and session ids (they would outlive an erasure in the log group). The domain
//! types' `Debug` impls redact personal fields as a second line of defence, and
//! [`CapturedLogs`] lets tests prove a whole flow logs nothing personal.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// Dependencies whose output can include request or response payloads or
/// header values: the Lambda runtime (at TRACE it logs every raw event, with
/// names, emails, tokens, IPs and message text), the AWS SDK (DynamoDB items),
/// HTTP and WebSocket stacks (frames, headers, request lines). They log at
/// `warn` at most, whatever level eurochat itself logs at.
///
/// Each entry is a target *prefix* (a directive applies to every target that
/// starts with it), so `aws_` covers `aws_smithy_runtime`, `aws_sdk_dynamodb`,
/// `aws_config`, `aws_sigv4`, `aws_runtime`, and `lambda_runtime` covers
/// `lambda_runtime_api_client`. None of eurochat's own targets (`chat_core`,
/// the function crates, `local_gateway`, `eurochat::security`) starts with one.
const PAYLOAD_LOGGING_CRATES: [&str; 11] = [
    "aws_",
    "lambda_runtime",
    "hyper",
    "h2",
    "http",
    "tower",
    "axum",
    "tungstenite",
    "tokio_tungstenite",
    "rustls",
    "reqwest",
];

/// Targets silenced entirely: the Lambda runtime layer that receives the raw
/// event logs it at TRACE, and at ERROR, when the event does not deserialize,
/// serde's message, which quotes the offending value. The invocation error still
/// reaches the Runtime API (and so Lambda's metrics and the caller).
const SILENCED_TARGETS: [&str; 1] = ["lambda_runtime::layers::api_response"];

/// Whether a filter directive (`target=level`, a bare level, a bare target, or
/// one with a span filter) could raise the level of a capped dependency. Such a
/// directive is dropped: a more specific target (`aws_smithy_runtime=trace`)
/// would otherwise win over the cap's shorter prefix (`aws_=warn`), and a span
/// filter (`[request]=trace`) would enable events of any target inside it.
fn could_uncap(directive: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let d = directive.trim();
    if d.contains('[') {
        return true;
    }
    let target = match d.split_once('=') {
        Some((target, _)) => target.trim(),
        None if LEVELS.iter().any(|l| d.eq_ignore_ascii_case(l)) => return false,
        None => d,
    };
    PAYLOAD_LOGGING_CRATES.iter().any(|c| target.starts_with(c))
}

/// One directive of a `RUST_LOG`-style string without a span filter (those are
/// dropped by [`could_uncap`]): `(None, level)` for a bare level, `(Some(target),
/// level)` for `target=level` or a bare target (every level). The grammar is
/// `EnvFilter`'s: a directive starts with a letter, digit, `-`, `:` or `_`; an
/// empty level means every level; anything else that is not a level is invalid.
fn parse_directive(directive: &str) -> Option<(Option<&str>, LevelFilter)> {
    let d = directive.trim();
    let first = d.chars().next()?;
    if !(first.is_alphanumeric() || ['-', ':', '_'].contains(&first)) {
        return None;
    }
    match d.split_once('=') {
        Some((target, "")) => Some((Some(target), LevelFilter::TRACE)),
        Some((target, level)) => level.parse().ok().map(|level| (Some(target), level)),
        None => Some(match d.parse() {
            Ok(level) => (None, level),
            Err(_) => (Some(d), LevelFilter::TRACE),
        }),
    }
}

/// A filter at `level` (a `RUST_LOG`-style string such as `trace` or
/// `info,chat_core=debug`) for eurochat, with the payload-logging dependencies
/// capped at `warn` whatever `level` says about them.
///
/// A target directive applies to every target that starts with it, and the
/// longest matching one wins (`tracing_subscriber`'s [`Targets`], without
/// `EnvFilter`'s regular expressions). A string with an invalid directive falls
/// back to `info` as a whole.
pub fn filter_at(level: &str) -> Targets {
    let allowed: Option<Vec<_>> = level
        .split(',')
        .filter(|d| !d.trim().is_empty() && !could_uncap(d))
        .map(parse_directive)
        .collect();
    let base = match allowed {
        Some(directives) if !directives.is_empty() => {
            directives
                .into_iter()
                .fold(Targets::new(), |filter, directive| match directive {
                    (Some(target), level) => filter.with_target(target, level),
                    (None, level) => filter.with_default(level),
                })
        }
        _ => Targets::new().with_default(LevelFilter::INFO),
    };
    let capped = PAYLOAD_LOGGING_CRATES.iter().map(|c| (*c, LevelFilter::WARN));
    let silenced = SILENCED_TARGETS.iter().map(|t| (*t, LevelFilter::OFF));
    capped
        .chain(silenced)
        .fold(base, |filter, (target, level)| filter.with_target(target, level))
}

fn filter() -> Targets {
    // RUST_LOG wins locally; Lambda's advanced logging controls set AWS_LAMBDA_LOG_LEVEL.
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    filter_at(&level)
}

/// The JSON subscriber every function uses, writing to `writer`, at the level
/// from the environment.
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    json_subscriber_with(writer, filter())
}

/// The JSON subscriber with an explicit filter (tests use [`filter_at`]`("trace")`).
pub fn json_subscriber_with<W>(writer: W, filter: Targets) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        // Every level reaches the filter, which alone decides.
        .with_max_level(LevelFilter::TRACE)
        .with_writer(writer)
        .finish()
        .with(filter)
}

/// Installs the global subscriber: JSON under Lambda, compact text elsewhere.
/// Calling it twice is harmless (the second call does nothing).
pub fn init() {
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let result = if in_lambda {
        tracing::subscriber::set_global_default(json_subscriber(std::io::stdout))
    } else {
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .compact()
                .with_max_level(LevelFilter::TRACE)
                .with_writer(std::io::stderr)
                .finish()
                .with(filter()),
        )
    };
    // Already installed (tests, the local gateway): keep the existing one.
    drop(result);
}

/// An in-memory log sink for tests: install [`json_subscriber`] with it, run a
/// flow, then search [`CapturedLogs::text`] for anything personal.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// The writer handed out by [`CapturedLogs`].
pub struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CaptureWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_logging_crates_are_capped_even_at_trace() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at("trace")), || {
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "request body would be here");
            tracing::warn!(target: "aws_smithy_runtime::client::orchestrator", "a warning passes");
            tracing::trace!(target: "chat_core::storage", "our own trace passes");
        });
        let text = logs.text();
        assert!(!text.contains("request body"), "{text}");
        assert!(
            text.contains("a warning passes") && text.contains("our own trace passes"),
            "{text}"
        );
    }

    #[test]
    fn the_lambda_runtime_and_http_stacks_are_capped_even_when_asked_for_trace() {
        for level in ["trace", "trace,lambda_runtime=trace,tungstenite=trace,axum=trace"] {
            let logs = CapturedLogs::new();
            tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at(level)), || {
                tracing::trace!(target: "lambda_runtime::layers::api_response", body = "raw event", "raw JSON event received from Lambda");
                tracing::error!(target: "lambda_runtime::layers::api_response", "invalid type: string \"quoted value\"");
                tracing::debug!(target: "lambda_runtime_api_client", "client detail");
                tracing::trace!(target: "tungstenite::protocol", "Received message frame text");
                tracing::trace!(target: "axum::rejection", "rejection body");
                tracing::debug!(target: "aws_runtime::user_agent", "sdk detail");
                tracing::trace!(target: "tower::buffer", "tower detail");
                tracing::warn!(target: "lambda_runtime::runtime", "runtime warning passes");
                tracing::trace!(target: "chat_core::storage", "own trace passes");
            });
            let text = logs.text();
            for hidden in [
                "raw event",
                "quoted value",
                "client detail",
                "frame text",
                "rejection body",
                "sdk detail",
                "tower detail",
            ] {
                assert!(!text.contains(hidden), "{level}: {hidden} leaked: {text}");
            }
            assert!(
                text.contains("runtime warning passes") && text.contains("own trace passes"),
                "{level}: {text}"
            );
        }
    }

    #[test]
    fn a_more_specific_directive_cannot_lift_the_cap() {
        for level in [
            "trace,aws_smithy_runtime=trace",
            "trace,lambda_runtime::layers=trace",
            "trace,lambda_runtime::layers::api_response::x=trace",
            "trace,tungstenite::protocol=trace",
            "trace,hyper_util=trace",
            "trace,[request]=trace",
            "aws_smithy_runtime",
        ] {
            let logs = CapturedLogs::new();
            tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at(level)), || {
                tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::http", "DYNAMO-ITEM-BODY");
                tracing::trace!(target: "lambda_runtime::layers::trace", "RAW-EVENT");
                tracing::trace!(target: "tungstenite::protocol", "FRAME-TEXT");
                tracing::trace!(target: "hyper_util::client", "HYPER-DETAIL");
                tracing::warn!(target: "chat_core::storage", "OWN-WARNING");
            });
            let text = logs.text();
            for hidden in ["DYNAMO-ITEM-BODY", "RAW-EVENT", "FRAME-TEXT", "HYPER-DETAIL"] {
                assert!(!text.contains(hidden), "RUST_LOG={level}: {hidden} passed the cap");
            }
            assert!(
                text.contains("OWN-WARNING"),
                "RUST_LOG={level}: eurochat's own logs still pass"
            );
        }
    }

    #[test]
    fn directives_keep_their_meaning_for_eurochat_targets() {
        let own = |level: &str| {
            let logs = CapturedLogs::new();
            tracing::subscriber::with_default(json_subscriber_with(logs.clone(), filter_at(level)), || {
                tracing::trace!(target: "chat_core::storage", "CORE-TRACE");
                tracing::debug!(target: "chat_core::storage", "CORE-DEBUG");
                tracing::info!(target: "message", "FN-INFO");
                tracing::warn!(target: "eurochat::security", "SECURITY-WARN");
            });
            let text = logs.text();
            ["CORE-TRACE", "CORE-DEBUG", "FN-INFO", "SECURITY-WARN"]
                .into_iter()
                .filter(|m| text.contains(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(own("trace"), ["CORE-TRACE", "CORE-DEBUG", "FN-INFO", "SECURITY-WARN"]);
        assert_eq!(own("info"), ["FN-INFO", "SECURITY-WARN"]);
        assert_eq!(own("WARN"), ["SECURITY-WARN"]);
        // A target directive alone: every other target is off.
        assert_eq!(own("chat_core=debug"), ["CORE-DEBUG"]);
        assert_eq!(own("warn,chat_core=debug"), ["CORE-DEBUG", "SECURITY-WARN"]);
        // A bare target, or an empty level: every level of that target.
        assert_eq!(own("chat_core"), ["CORE-TRACE", "CORE-DEBUG"]);
        assert_eq!(
            own("info,chat_core="),
            ["CORE-TRACE", "CORE-DEBUG", "FN-INFO", "SECURITY-WARN"]
        );
        // The longest matching target wins; `off` silences.
        assert_eq!(
            own("trace,chat_core=off,chat_core::storage=debug"),
            ["CORE-DEBUG", "FN-INFO", "SECURITY-WARN"]
        );
        assert_eq!(own("trace,eurochat=off"), ["CORE-TRACE", "CORE-DEBUG", "FN-INFO"]);
        // Nothing, or anything invalid, means `info`.
        for level in ["", " , ", "trace,chat_core=loud", "=trace", "trace,.x=debug", "a=b=c"] {
            assert_eq!(own(level), ["FN-INFO", "SECURITY-WARN"], "{level:?}");
        }
    }

    #[test]
    fn json_lines_are_captured() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(json_subscriber(logs.clone()), || {
            tracing::info!(site = "acme", count = 3, "sent");
        });
        let line = logs.text();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!((v["message"].as_str(), v["count"].as_u64()), (Some("sent"), Some(3)));
    }
}
