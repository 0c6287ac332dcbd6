//! The load generator: our own hyper HTTP/1.1 client, one keep-alive connection per simulated
//! client (TCP_NODELAY), closed loop (each connection sends its next request when the previous
//! answer has fully arrived), recording every request's latency in nanoseconds.
//!
//! Non-streaming requests record the time until the whole body is in. Streaming requests record
//! time to first token (first non-empty body frame), total time, the largest gap between two
//! frames and how many SSE events arrived in how many frames: a relay that buffers shows up as a
//! time to first token close to the total time, or as many events per frame.
//!
//! Used by [`crate::run`] for the timed rounds and the fixed-count CPU runs, and by
//! [`crate::management`] for one-off requests ([`exchange`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// Longest a one-off request ([`exchange`]) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that keeps failing stops after this many errors, so a broken target ends the
/// round quickly instead of spinning.
const MAX_ERRORS_PER_CONNECTION: u64 = 200;

/// One server the load is sent to: direct (the upstream), floor or gateway.
#[derive(Debug, Clone)]
pub struct Target {
    /// Label in the report: `direct`, `floor` or `gateway`.
    pub name: &'static str,
    /// Where it listens (always 127.0.0.1).
    pub addr: SocketAddr,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: Uri,
    /// Headers sent with every request besides `Host` and `Content-Type`: the gateway's
    /// adapter key (`Authorization: Bearer …`, or `x-api-key` and `anthropic-version` for an
    /// Anthropic client); none for direct and floor.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    host: HeaderValue,
}

impl Target {
    /// A target at `addr`; the `Host` header is derived from it (the gateway checks it).
    pub fn new(
        name: &'static str,
        addr: SocketAddr,
        path: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, BenchError> {
        let path = path
            .parse::<Uri>()
            .map_err(|err| BenchError::Unexpected(format!("bad request path {path}: {err}")))?;
        let host = HeaderValue::from_str(&addr.to_string())
            .map_err(|err| BenchError::Unexpected(format!("bad Host header for {addr}: {err}")))?;
        Ok(Self {
            name,
            addr,
            path,
            headers,
            host,
        })
    }

    /// The same server and credentials, another path (for the management API and checks).
    pub fn at(&self, path: &str) -> Result<Self, BenchError> {
        Self::new(self.name, self.addr, path, self.headers.clone())
    }

    pub(crate) fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, BenchError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &self.headers {
            builder = builder.header(name, value.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|err| BenchError::Unexpected(format!("building a request: {err}")))
    }
}

/// When a load run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long (requests in flight then still complete and count).
    After(Duration),
    /// After this many requests in total, over all connections.
    Count(u64),
}

/// What to send, how, and for how long.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Request body, sent as is every time.
    pub body: Bytes,
    /// Whether the body asks for a stream (selects the per-stream timings).
    pub stream: bool,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// When to stop.
    pub stop: Stop,
}

/// Timings of one streamed response.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// Request sent → first non-empty body frame.
    pub ttft: Duration,
    /// Request sent → end of stream.
    pub total: Duration,
    /// Largest gap between two body frames.
    pub max_gap: Duration,
    /// Body frames received.
    pub frames: u32,
    /// SSE `data:` lines received.
    pub events: u32,
}

/// Everything one load run recorded.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of every successful non-streaming request, in nanoseconds (unsorted).
    pub latencies_ns: Vec<u64>,
    /// Timings of every successful stream.
    pub streams: Vec<StreamTiming>,
    /// Requests that failed (transport error or non-200 status).
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    /// Successful requests (or streams) per second of wall time.
    pub fn per_second(&self) -> f64 {
        let done = self.latencies_ns.len() + self.streams.len();
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { done as f64 / secs } else { 0.0 }
    }

    fn absorb(&mut self, other: Self) {
        self.latencies_ns.extend(other.latencies_ns);
        self.streams.extend(other.streams);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

/// Opens one keep-alive HTTP/1.1 connection with TCP_NODELAY.
pub(crate) async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, BenchError> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(BenchError::io(format!(
            "connecting to {} at {}",
            target.name, target.addr
        )))?;
    stream
        .set_nodelay(true)
        .map_err(BenchError::io("setting TCP_NODELAY"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(BenchError::http(target.name))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Shared stop condition of the connections of one run.
#[derive(Debug, Clone)]
enum StopRule {
    Deadline(Instant),
    Remaining(Arc<AtomicI64>),
}

impl StopRule {
    fn should_stop(&self) -> bool {
        match self {
            Self::Deadline(deadline) => Instant::now() >= *deadline,
            Self::Remaining(left) => left.fetch_sub(1, Ordering::Relaxed) <= 0,
        }
    }
}

/// Runs `work` against `target` and returns what it recorded. Connections are opened before
/// the clock starts; the whole run is bounded by `limit` (then it fails with a timeout).
pub async fn drive(
    target: &Target,
    work: &Workload,
    limit: Duration,
) -> Result<Outcome, BenchError> {
    let mut senders = Vec::with_capacity(work.connections);
    for _ in 0..work.connections.max(1) {
        senders.push(connect(target).await?);
    }
    let started = Instant::now();
    let rule = match work.stop {
        Stop::After(duration) => StopRule::Deadline(started + duration),
        Stop::Count(count) => StopRule::Remaining(Arc::new(AtomicI64::new(
            i64::try_from(count).unwrap_or(i64::MAX),
        ))),
    };
    let mut tasks = Vec::with_capacity(senders.len());
    for sender in senders {
        let target = target.clone();
        let work = work.clone();
        let rule = rule.clone();
        tasks.push(tokio::spawn(async move {
            connection_loop(sender, &target, &work, &rule).await
        }));
    }
    let aborts: Vec<_> = tasks
        .iter()
        .map(tokio::task::JoinHandle::abort_handle)
        .collect();
    let joined = tokio::time::timeout(limit, async move {
        let mut total = Outcome::default();
        for task in tasks {
            match task.await {
                Ok(outcome) => total.absorb(outcome),
                Err(err) => total.fail(format!("load task ended abnormally: {err}")),
            }
        }
        total
    })
    .await;
    match joined {
        Ok(mut total) => {
            total.elapsed = started.elapsed();
            Ok(total)
        }
        Err(_) => {
            for abort in aborts {
                abort.abort();
            }
            Err(BenchError::Timeout(format!(
                "load run against {} did not finish within {limit:?}",
                target.name
            )))
        }
    }
}

async fn connection_loop(
    mut sender: SendRequest<Full<Bytes>>,
    target: &Target,
    work: &Workload,
    rule: &StopRule,
) -> Outcome {
    let mut out = Outcome {
        latencies_ns: Vec::with_capacity(if work.stream { 0 } else { 1 << 14 }),
        ..Outcome::default()
    };
    while !rule.should_stop() && out.errors < MAX_ERRORS_PER_CONNECTION {
        if sender.ready().await.is_err() {
            // The server closed the connection (e.g. `Connection: close` on an error): reopen.
            match connect(target).await {
                Ok(fresh) => sender = fresh,
                Err(err) => {
                    out.fail(err.to_string());
                    break;
                }
            }
        }
        let request = match target.request(work.body.clone()) {
            Ok(request) => request,
            Err(err) => {
                out.fail(err.to_string());
                break;
            }
        };
        let started = Instant::now();
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => {
                out.fail(format!("{}: {err}", target.name));
                continue;
            }
        };
        let status = response.status();
        let mut body = response.into_body();
        if status != StatusCode::OK {
            let text = match body.collect().await {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(err) => err.to_string(),
            };
            out.fail(format!("{}: HTTP {status}: {}", target.name, clip(&text)));
            continue;
        }
        if work.stream {
            let mut first: Option<Instant> = None;
            let mut last = started;
            let mut max_gap = Duration::ZERO;
            let mut frames = 0u32;
            let mut events = 0u32;
            let mut carry = Vec::new();
            let mut failed = None;
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(err) => {
                        failed = Some(err.to_string());
                        break;
                    }
                };
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                let now = Instant::now();
                if first.is_none() {
                    first = Some(now);
                } else {
                    max_gap = max_gap.max(now - last);
                }
                last = now;
                frames += 1;
                events += count_events(&mut carry, data);
            }
            match (failed, first) {
                (Some(err), _) => out.fail(format!("{}: stream broke: {err}", target.name)),
                (None, None) => out.fail(format!("{}: empty stream", target.name)),
                (None, Some(first)) => out.streams.push(StreamTiming {
                    ttft: first - started,
                    total: started.elapsed(),
                    max_gap,
                    frames,
                    events,
                }),
            }
        } else {
            let mut failed = None;
            while let Some(frame) = body.frame().await {
                if let Err(err) = frame {
                    failed = Some(err.to_string());
                    break;
                }
            }
            match failed {
                Some(err) => out.fail(format!("{}: body broke: {err}", target.name)),
                None => out
                    .latencies_ns
                    .push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)),
            }
        }
    }
    out
}

/// Counts SSE `data:` lines in `data`, keeping an incomplete line in `carry` across frames.
fn count_events(carry: &mut Vec<u8>, data: &[u8]) -> u32 {
    carry.extend_from_slice(data);
    let mut count = 0;
    let mut consumed = 0;
    while let Some(end) = carry[consumed..].iter().position(|&b| b == b'\n') {
        if carry[consumed..consumed + end].starts_with(b"data:") {
            count += 1;
        }
        consumed += end + 1;
    }
    carry.drain(..consumed);
    count
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// One request on a fresh connection, bounded in time; returns the status and the whole body.
/// Used for set-up (management API) and the correctness checks before the load.
pub async fn exchange(
    target: &Target,
    method: Method,
    body: Option<Bytes>,
    extra_headers: &[(&'static str, HeaderValue)],
) -> Result<(StatusCode, Bytes), BenchError> {
    let work = async {
        let mut sender = connect(target).await?;
        let mut request = target.request(body.unwrap_or_default())?;
        *request.method_mut() = method;
        for (name, value) in extra_headers {
            request.headers_mut().insert(*name, value.clone());
        }
        sender
            .ready()
            .await
            .map_err(BenchError::http(target.name))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(BenchError::http(target.name))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(BenchError::http(target.name))?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .map_err(|_| {
            BenchError::Timeout(format!(
                "{} {} did not answer within {EXCHANGE_TIMEOUT:?}",
                target.name, target.path
            ))
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_frame_boundaries() {
        let mut carry = Vec::new();
        assert_eq!(count_events(&mut carry, b"data: {\"a\":1}\n\nda"), 1);
        assert_eq!(
            count_events(&mut carry, b"ta: {}\n\nevent: x\ndata: [DONE]\n\n"),
            2
        );
        assert!(carry.is_empty());
    }
}
