//! Accepting client connections within bounds, so sockets that send nothing, half a request,
//! or stay open forever cannot starve the gateway of file descriptors or of slots for real
//! requests. `server::serve` hands this loop the router; `lifecycle` sizes the limits.
//!
//! Each accepted socket takes a slot of a fixed-size cap first; when every slot is taken the
//! loop stops accepting and new connections wait in the kernel's backlog (they are not closed:
//! a short burst then only waits, and the timeouts below free slots within seconds). Each
//! connection is served by hyper (HTTP/1.1 and HTTP/2, as `axum::serve` did) under a watchdog
//! that counts requests in flight, including the time their bodies are still being written:
//! - with nothing in flight, a connection must complete a request head within the header
//!   timeout, counted from when it opened (first request) or from its first byte after the
//!   previous answer: a socket that sends nothing, or trickles a partial head, is dropped;
//! - with nothing in flight and no new bytes, it is closed after the idle timeout;
//! - a request in flight is never cut by either (long streams are bounded by the upstream's
//!   own timeouts in `proxy`).
//!
//! With TLS, the handshake comes first and must end within the header timeout too.
//!
//! The same watchdog covers HTTP/2 (hyper has no idle timeout there) and the protocol sniffing
//! before either (hyper-util's version detection waits for bytes without a deadline).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerLimits;

/// How long a connection being closed by the watchdog (or by shutdown, once idle) may take to
/// say goodbye (an HTTP/2 GOAWAY) before its socket is dropped.
const GOODBYE: Duration = Duration::from_secs(2);
/// At most one "every slot is taken" warning per this long.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The limits the loop runs with, the cap resolved to a number.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn new(settings: &ListenerLimits, default_cap: usize) -> Self {
        Self {
            header_timeout: settings.header_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections: settings.max_connections.unwrap_or(default_cap).max(1),
        }
    }
}

/// Accepts and serves connections until `stop` fires (or its sender is dropped); then stops
/// accepting, asks every connection to finish its requests in flight and close, and returns
/// once all have. Dropping this future drops every connection with it.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    let service = TowerToHyperService::new(router);
    let mut connections = JoinSet::new();
    let mut warned_full: Option<Instant> = None;
    let mut stop = std::pin::pin!(stop);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned_full = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection slot is taken; new connections wait until one frees \
                         (raise --max-connections if this is real load)"
                    );
                }
                tokio::select! {
                    _ = &mut stop => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                if !is_connection_error(&error) {
                    // Out of file descriptors or memory: give the system a moment instead of
                    // spinning on the same error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let connection = Connection {
            builder: builder.clone(),
            service: service.clone(),
            limits,
            closing: closing_rx.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                // The handshake gets the header timeout of its own.
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
        // Finished connections leave the set here, so it holds only live ones.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// Errors of one incoming connection (it went away before it was accepted), after which the
/// next accept works at once.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// What serving one connection needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: TowerToHyperService<Router>,
    limits: Limits,
    closing: watch::Receiver<bool>,
}

impl Connection {
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let tracker = Arc::new(Tracker::new());
        let io = TokioIo::new(Watched {
            inner: io,
            tracker: tracker.clone(),
        });
        let service = Counted {
            inner: self.service,
            tracker: tracker.clone(),
        };
        let conn = self.builder.serve_connection_with_upgrades(io, service);
        let mut conn = std::pin::pin!(conn);
        // Set once the connection was asked to close: by then it may only finish.
        let mut goodbye_by: Option<tokio::time::Instant> = None;
        let mut shutting_down = *self.closing.borrow();
        if shutting_down {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let now = tokio::time::Instant::now();
            let next_check = match tracker.verdict(&self.limits, Instant::now()) {
                Verdict::Keep(wait) => now + wait,
                // Half a request head (or none yet): there is nobody to say goodbye to.
                Verdict::Close if tracker.mid_head() => return,
                Verdict::Close => match goodbye_by {
                    Some(by) => by,
                    None => {
                        conn.as_mut().graceful_shutdown();
                        goodbye_by = Some(now + GOODBYE);
                        continue;
                    }
                },
            };
            let next_check = goodbye_by.map_or(next_check, |by| by.min(next_check));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "client connection ended with an error");
                    }
                    return;
                }
                changed = self.closing.changed(), if !shutting_down => {
                    shutting_down = true;
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = tracker.changed.notified() => {}
                () = tokio::time::sleep_until(next_check) => {
                    if goodbye_by.is_some_and(|by| tokio::time::Instant::now() >= by) {
                        // A goodbye nobody answered: drop the socket.
                        return;
                    }
                }
            }
        }
    }
}

/// What the watchdog decided about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Fine for now; look again after this long.
    Keep(Duration),
    /// Nothing in flight and a timeout ran out.
    Close,
}

/// The life of one connection as the watchdog sees it. Times are milliseconds since it
/// opened; `head_started` is 0 for "no bytes since the last answer", else the time plus one.
#[derive(Debug)]
struct Tracker {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    quiet_since: AtomicU64,
    head_started: AtomicU64,
    /// Wakes the watchdog when a request starts or ends, so its next deadline is recomputed.
    changed: Notify,
}

impl Tracker {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            quiet_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes came in: with nothing in flight, a request head has begun.
    fn saw_bytes(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            let now = self.millis(Instant::now()).saturating_add(1);
            let _ =
                self.head_started
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.quiet_since
                .store(self.millis(Instant::now()), Ordering::Relaxed);
            self.head_started.store(0, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// Nothing in flight, and either no request head completed yet or a new one begun.
    fn mid_head(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && (self.requests.load(Ordering::Relaxed) == 0
                || self.head_started.load(Ordering::Relaxed) != 0)
    }

    fn verdict(&self, limits: &Limits, now: Instant) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Keep(limits.header_timeout.min(limits.idle_timeout));
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head_started = self.head_started.load(Ordering::Relaxed);
        let deadline = if self.requests.load(Ordering::Relaxed) == 0 {
            ms(limits.header_timeout)
        } else if head_started != 0 {
            (head_started - 1).saturating_add(ms(limits.header_timeout))
        } else {
            self.quiet_since
                .load(Ordering::Relaxed)
                .saturating_add(ms(limits.idle_timeout))
        };
        let now = self.millis(now);
        if now >= deadline {
            Verdict::Close
        } else {
            Verdict::Keep(Duration::from_millis(deadline - now))
        }
    }
}

/// The socket, telling the tracker when bytes come in.
struct Watched<I> {
    inner: I,
    tracker: Arc<Tracker>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.saw_bytes();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router, counting each request in flight until its answer's body is done (or dropped).
#[derive(Clone)]
struct Counted {
    inner: TowerToHyperService<Router>,
    tracker: Arc<Tracker>,
}

type Answer = Response<InFlight>;

impl Service<Request<Incoming>> for Counted {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = Guard::start(self.tracker.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| InFlight {
                body,
                _guard: guard,
            }))
        })
    }
}

/// Counts one request in flight for as long as it lives.
struct Guard(Arc<Tracker>);

impl Guard {
    fn start(tracker: Arc<Tracker>) -> Self {
        tracker.request_started();
        Self(tracker)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// An answer's body, keeping its request counted until hyper has written it all.
struct InFlight {
    body: Body,
    _guard: Guard,
}

impl hyper::body::Body for InFlight {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[test]
    fn a_socket_that_sends_nothing_gets_the_header_timeout_from_its_opening() {
        let tracker = Tracker::new();
        let at = |s: u64| tracker.opened + Duration::from_secs(s);
        assert_eq!(
            tracker.verdict(&limits(), at(4)),
            Verdict::Keep(Duration::from_secs(6))
        );
        // A trickled partial head gains nothing: the first request counts from the opening.
        tracker.saw_bytes();
        assert_eq!(tracker.verdict(&limits(), at(10)), Verdict::Close);
    }

    #[test]
    fn requests_in_flight_are_never_timed_out_and_idle_follows_the_last_answer() {
        let tracker = Arc::new(Tracker::new());
        let at = |s: u64| tracker.opened + Duration::from_secs(s);
        let guard = Guard::start(tracker.clone());
        assert!(matches!(
            tracker.verdict(&limits(), at(1000)),
            Verdict::Keep(_)
        ));
        drop(guard);
        // The answer ended "now" (just after opening): idle counts from there.
        assert!(matches!(
            tracker.verdict(&limits(), at(59)),
            Verdict::Keep(_)
        ));
        assert_eq!(tracker.verdict(&limits(), at(61)), Verdict::Close);
    }

    #[test]
    fn a_partial_head_after_an_answer_gets_the_header_timeout() {
        let tracker = Arc::new(Tracker::new());
        let at = |s: u64| tracker.opened + Duration::from_secs(s);
        drop(Guard::start(tracker.clone()));
        tracker.saw_bytes();
        assert!(matches!(
            tracker.verdict(&limits(), at(9)),
            Verdict::Keep(_)
        ));
        assert_eq!(tracker.verdict(&limits(), at(11)), Verdict::Close);
        // Bytes while a request is in flight are its body, not a new head.
        let guard = Guard::start(tracker.clone());
        tracker.saw_bytes();
        assert_eq!(tracker.head_started.load(Ordering::Relaxed), 0);
        drop(guard);
    }

    /// The real loop on loopback: a cap of 2, both slots taken by silent sockets; a third
    /// client waits (it is not refused) and is served as soon as the header timeout frees a
    /// slot; the silent ones are closed by then.
    #[tokio::test]
    async fn beyond_the_cap_a_client_waits_for_a_slot_the_header_timeout_frees() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let limits = Limits {
            header_timeout: Duration::from_millis(800),
            idle_timeout: Duration::from_secs(60),
            max_connections: 2,
        };
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(run(listener, router, limits, None, stopped));
        let mut silent = Vec::new();
        for _ in 0..2 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        let waited = started.elapsed();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert!(answer.ends_with(b"hi"));
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
            "served after {waited:?}"
        );
        for mut socket in silent {
            let mut byte = [0u8; 1];
            assert_eq!(socket.read(&mut byte).await.unwrap_or(0), 0);
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
