//! The mock LLM upstream: the "direct" reference and the provider behind the floor and the gateway.
//!
//! It has to be much faster than what it measures (a Python mock tops out near 7.5k req/s here and
//! would measure itself), so every answer is prepared once at start-up as `Bytes` and served
//! without parsing JSON: the only per-request work is reading the body and a byte scan for
//! `"stream": true` and `"include_usage": true`. TCP_NODELAY is set on every accepted socket
//! (without it a one-connection run shows Nagle's ~40 ms steps).
//!
//! Paths (anything before them is ignored, so `/v1/...` and `/...` both work):
//! - `POST …/chat/completions`: OpenAI chat JSON with usage, or an SSE stream when `"stream":true`:
//!   `--chunks` content chunks, the first after `--first-byte-delay-ms`, the next ones every
//!   `--interval-ms`, then a usage-only chunk when `stream_options.include_usage` is true, then
//!   `data: [DONE]`. Response headers go out at once; the delay is before the first data byte.
//! - `POST …/completions`, `POST …/embeddings`: canned legacy-completion and embedding JSON.
//! - `POST …/messages`: Anthropic Messages JSON, or its SSE event sequence when streaming.
//! - `POST …:generateContent` / `…:streamGenerateContent`: Gemini JSON / SSE.
//! - `GET …/models`: an OpenAI model list.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Sleep;

use crate::BenchError;
use crate::listener::Listener;

/// Flags of `flexiproxy-bench upstream`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Port on 127.0.0.1; 0 picks a free one (the chosen address is printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    #[command(flatten)]
    pub pacing: StreamPacing,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

// The pacing flags exist once, here: `upstream` takes them and `run` takes the same flattened
// struct and hands it to the upstream child with `to_flags`, so the two cannot drift apart.
// (No `///` on the struct: clap would read it as help text of the command it is flattened in.)
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StreamPacing {
    /// Content chunks per upstream SSE stream.
    #[arg(long, default_value_t = 20)]
    pub chunks: usize,
    /// Milliseconds between two upstream content chunks.
    #[arg(long, default_value_t = 2)]
    pub interval_ms: u64,
    /// Milliseconds between the upstream's response headers and its first content chunk.
    #[arg(long, default_value_t = 0)]
    pub first_byte_delay_ms: u64,
}

impl StreamPacing {
    /// The same settings within sane bounds (at least one chunk; no delay beyond 10 s), so a
    /// typo cannot make a run hang for hours.
    pub fn bounded(self) -> Self {
        Self {
            chunks: self.chunks.clamp(1, 10_000),
            interval_ms: self.interval_ms.min(10_000),
            first_byte_delay_ms: self.first_byte_delay_ms.min(10_000),
        }
    }

    /// The `flexiproxy-bench upstream` flags that reproduce these settings.
    pub fn to_flags(self) -> Vec<String> {
        vec![
            "--chunks".to_owned(),
            self.chunks.to_string(),
            "--interval-ms".to_owned(),
            self.interval_ms.to_string(),
            "--first-byte-delay-ms".to_owned(),
            self.first_byte_delay_ms.to_string(),
        ]
    }
}

/// Runs the upstream until the process is killed.
pub fn main(args: &UpstreamArgs) -> Result<(), BenchError> {
    crate::server_runtime(args.workers)?.block_on(serve(args))
}

async fn serve(args: &UpstreamArgs) -> Result<(), BenchError> {
    let listener = Listener::bind("upstream", args.port).await?;
    let canned = Arc::new(Canned::new(args.pacing.bounded()));
    loop {
        let socket = listener.accept().await?;
        let canned = Arc::clone(&canned);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, Arc::clone(&canned)));
            // A client hanging up mid-request is normal under load; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Every answer the upstream gives, rendered once.
#[derive(Debug)]
struct Canned {
    chat: Bytes,
    completion: Bytes,
    embedding: Bytes,
    models: Bytes,
    anthropic: Bytes,
    gemini: Bytes,
    chat_stream: Paced,
    chat_stream_with_usage: Paced,
    anthropic_stream: Paced,
    gemini_stream: Paced,
}

const USAGE: &str = r#"{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}"#;

impl Canned {
    fn new(settings: StreamPacing) -> Self {
        let chunks = settings.chunks.max(1);
        let pacing = Pacing {
            first: Duration::from_millis(settings.first_byte_delay_ms),
            interval: Duration::from_millis(settings.interval_ms),
        };
        let chat_event = |i: usize| {
            let delta = if i == 0 {
                r#"{"role":"assistant","content":"tok0 "}"#.to_owned()
            } else {
                format!(r#"{{"content":"tok{i} "}}"#)
            };
            let finish = if i + 1 == chunks { r#""stop""# } else { "null" };
            sse_data(&format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
            ))
        };
        let mut chat_events: Vec<Bytes> = (0..chunks).map(chat_event).collect();
        let done = Bytes::from_static(b"data: [DONE]\n\n");
        let mut chat_events_usage = chat_events.clone();
        chat_events_usage.push(sse_data(&format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench-model","choices":[],"usage":{USAGE}}}"#
        )));
        chat_events_usage.push(done.clone());
        chat_events.push(done);

        let mut anthropic_events = vec![sse_event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
        )];
        // The first content chunk carries the block start too, so "first byte" means first text.
        let mut first = sse_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        )
        .to_vec();
        for i in 0..chunks {
            let delta = sse_event(
                "content_block_delta",
                &format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"tok{i} "}}}}"#
                ),
            );
            if i == 0 {
                first.extend_from_slice(&delta);
                anthropic_events.push(Bytes::from(std::mem::take(&mut first)));
            } else {
                anthropic_events.push(delta);
            }
        }
        anthropic_events.push(sse_event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ));
        anthropic_events.push(sse_event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}"#,
        ));
        anthropic_events.push(sse_event("message_stop", r#"{"type":"message_stop"}"#));

        let gemini_events = (0..chunks)
            .map(|i| {
                let last = i + 1 == chunks;
                let finish = if last { r#","finishReason":"STOP""# } else { "" };
                sse_data(&format!(
                    r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"tok{i} "}}]}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":12,"candidatesTokenCount":{n},"totalTokenCount":{t}}},"modelVersion":"bench-model"}}"#,
                    n = i + 1,
                    t = 13 + i
                ))
            })
            .collect::<Vec<_>>();

        Self {
            chat: Bytes::from(format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello from the FlexiProxy bench upstream."}},"finish_reason":"stop"}}],"usage":{USAGE}}}"#
            )),
            completion: Bytes::from(format!(
                r#"{{"id":"cmpl-bench","object":"text_completion","created":1700000000,"model":"bench-model","choices":[{{"index":0,"text":"Hello from the bench.","finish_reason":"stop","logprobs":null}}],"usage":{USAGE}}}"#
            )),
            embedding: Bytes::from_static(
                br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.0456,0.0789,0.1011]}],"model":"bench-model","usage":{"prompt_tokens":4,"total_tokens":4}}"#,
            ),
            models: Bytes::from_static(
                br#"{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"bench"}]}"#,
            ),
            anthropic: Bytes::from_static(
                br#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[{"type":"text","text":"Hello from the FlexiProxy bench upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9,"cache_read_input_tokens":0}}"#,
            ),
            gemini: Bytes::from_static(
                br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello from the FlexiProxy bench upstream."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":9,"totalTokenCount":21},"modelVersion":"bench-model"}"#,
            ),
            chat_stream: Paced::new(chat_events, chunks, pacing),
            chat_stream_with_usage: Paced::new(chat_events_usage, chunks, pacing),
            anthropic_stream: Paced::new(anthropic_events, chunks + 1, pacing),
            gemini_stream: Paced::new(gemini_events, chunks, pacing),
        }
    }
}

fn sse_data(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

fn sse_event(event: &str, json: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {json}\n\n"))
}

/// Response body of the upstream: a canned JSON document or a paced SSE stream.
type UpstreamBody = Either<Full<Bytes>, PacedBody>;

async fn answer(
    req: Request<Incoming>,
    canned: Arc<Canned>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"))),
    };
    let stream = flag_is_true(&body, b"\"stream\"");
    let response = match (method, path.as_str()) {
        (Method::POST, p) if p.ends_with("/chat/completions") => {
            if !stream {
                json(StatusCode::OK, canned.chat.clone())
            } else if flag_is_true(&body, b"\"include_usage\"") {
                sse(canned.chat_stream_with_usage.start())
            } else {
                sse(canned.chat_stream.start())
            }
        }
        (Method::POST, p) if p.ends_with("/completions") => {
            json(StatusCode::OK, canned.completion.clone())
        }
        (Method::POST, p) if p.ends_with("/embeddings") => {
            json(StatusCode::OK, canned.embedding.clone())
        }
        (Method::POST, p) if p.ends_with("/messages") => {
            if stream {
                sse(canned.anthropic_stream.start())
            } else {
                json(StatusCode::OK, canned.anthropic.clone())
            }
        }
        (Method::POST, p) if p.ends_with(":streamGenerateContent") => {
            sse(canned.gemini_stream.start())
        }
        (Method::POST, p) if p.ends_with(":generateContent") => {
            json(StatusCode::OK, canned.gemini.clone())
        }
        (Method::GET, p) if p.ends_with("/models") => json(StatusCode::OK, canned.models.clone()),
        _ => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(
                br#"{"error":{"message":"bench upstream: unknown path","type":"invalid_request_error","param":null,"code":null}}"#,
            ),
        ),
    };
    Ok(response)
}

fn json(status: StatusCode, body: Bytes) -> Response<UpstreamBody> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn sse(body: PacedBody) -> Response<UpstreamBody> {
    let mut response = Response::new(Either::Right(body));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// True when `key` (quotes included) is followed by `: true` somewhere in the JSON body.
///
/// A byte scan rather than a JSON parse: the upstream must stay cheap next to what it measures,
/// and the gateway may re-serialise the body (`"stream": true` or `"stream":true`, any order).
fn flag_is_true(body: &[u8], key: &[u8]) -> bool {
    let mut rest = body;
    while let Some(at) = find(rest, key) {
        rest = &rest[at + key.len()..];
        if let Some(value) = trim_start(rest).strip_prefix(b":")
            && trim_start(value).starts_with(b"true")
        {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut offset = 0;
    while offset + needle.len() <= haystack.len() {
        // Jump to the next candidate first byte; the slice comparison only runs there.
        let candidate = haystack[offset..].iter().position(|&b| b == first)?;
        let start = offset + candidate;
        if haystack.get(start..start + needle.len()) == Some(needle) {
            return Some(start);
        }
        offset = start + 1;
    }
    None
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &bytes[skip..]
}

/// Delays of a paced stream.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    first: Duration,
    interval: Duration,
}

/// A prepared SSE event sequence; `paced` first events are spaced by the pacing, the rest
/// (usage chunk, `[DONE]`, closing events) follow the last content chunk at once, as real
/// providers do.
#[derive(Debug)]
struct Paced {
    events: Arc<[Bytes]>,
    paced: usize,
    pacing: Pacing,
}

impl Paced {
    fn new(events: Vec<Bytes>, paced: usize, pacing: Pacing) -> Self {
        Self {
            events: events.into(),
            paced,
            pacing,
        }
    }

    fn start(&self) -> PacedBody {
        PacedBody {
            events: Arc::clone(&self.events),
            paced: self.paced,
            pacing: self.pacing,
            next: 0,
            started: None,
            timer: None,
        }
    }
}

/// Body yielding one SSE event per frame at the pace of its [`Pacing`]; hyper writes (and, with
/// TCP_NODELAY, sends) each frame as soon as it is yielded.
///
/// Due times are counted from the first poll (not from the previous chunk), so timer rounding
/// does not accumulate: 20 chunks every 2 ms take ~40 ms, not 20 × (2 ms + a timer tick).
#[derive(Debug)]
pub struct PacedBody {
    events: Arc<[Bytes]>,
    paced: usize,
    pacing: Pacing,
    next: usize,
    started: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl PacedBody {
    /// When event `index` is due, relative to the first poll.
    fn due(&self, index: usize) -> Duration {
        // Content chunk i is due at first + i × interval; the closing events (index ≥ paced)
        // share the last content chunk's due time.
        let step = index.min(self.paced.saturating_sub(1));
        let step = u32::try_from(step).unwrap_or(u32::MAX);
        self.pacing.first + self.pacing.interval.saturating_mul(step)
    }
}

impl Body for PacedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let Some(event) = this.events.get(this.next).cloned() else {
            return Poll::Ready(None);
        };
        let started = *this.started.get_or_insert_with(Instant::now);
        let due = started + this.due(this.next);
        if Instant::now() < due {
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.timer = None;
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(event))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_due_on_a_fixed_schedule() {
        let pacing = Pacing {
            first: Duration::from_millis(5),
            interval: Duration::from_millis(2),
        };
        let events: Vec<Bytes> = (0..5).map(|_| Bytes::new()).collect();
        let body = Paced::new(events, 3, pacing).start();
        let due: Vec<u128> = (0..5).map(|i| body.due(i).as_millis()).collect();
        // Three paced chunks at 5, 7, 9 ms; the closing events follow the last one at once.
        assert_eq!(due, vec![5, 7, 9, 9, 9]);
    }

    #[test]
    fn pacing_flags_reach_the_upstream_unchanged() {
        use clap::{Args, FromArgMatches};
        let pacing = StreamPacing {
            chunks: 7,
            interval_ms: 3,
            first_byte_delay_ms: 11,
        };
        let command = UpstreamArgs::augment_args(clap::Command::new("upstream"));
        let matches = command
            .try_get_matches_from(std::iter::once("upstream".to_owned()).chain(pacing.to_flags()));
        let parsed = matches.and_then(|m| UpstreamArgs::from_arg_matches(&m));
        assert!(
            parsed.as_ref().is_ok_and(|args| args.pacing.chunks == 7
                && args.pacing.interval_ms == 3
                && args.pacing.first_byte_delay_ms == 11),
            "{parsed:?}"
        );
    }

    #[test]
    fn stream_flag_is_found_whatever_the_spacing() {
        assert!(flag_is_true(
            br#"{"model":"m","stream":true}"#,
            b"\"stream\""
        ));
        assert!(flag_is_true(br#"{"stream" :  true, "x":1}"#, b"\"stream\""));
        assert!(!flag_is_true(br#"{"stream":false}"#, b"\"stream\""));
        assert!(!flag_is_true(br#"{"streamed":true}"#, b"\"stream\""));
        assert!(flag_is_true(
            br#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            b"\"include_usage\""
        ));
        assert!(!flag_is_true(br#"{"messages":[]}"#, b"\"include_usage\""));
    }
}
