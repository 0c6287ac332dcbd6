//! Requests in flight when the gateway stops: counted, given a grace period, then cut.
//!
//! `lifecycle`'s `RunningGateway::shutdown` stops accepting connections and waits up to the
//! grace period (`--shutdown-grace`, [`crate::config::DEFAULT_SHUTDOWN_GRACE`]) for the
//! requests in flight to finish. Whatever still runs then is cut here by [`guard`], a
//! middleware on every route (`server::router`): a handler still waiting for its upstream is
//! dropped and answers 503 in its client's protocol, and a response still streaming ends (an
//! event stream with its protocol's error event, any other body broken off). Either way the
//! `meter::Meter` inside is dropped while the usage writer is still running, and records the
//! request as `shutdown` with the tokens seen so far (it asks [`Drain::is_cut`] to tell a cut
//! from a client hanging up).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::watch;

use crate::error::{ErrorShape, GatewayError, Rendered};
use flexiproxy_protocol::Protocol;

/// The requests in flight and the signal that cuts them.
#[derive(Debug)]
pub struct Drain {
    cut: watch::Sender<bool>,
    in_flight: AtomicUsize,
    grace: Duration,
}

impl Drain {
    /// For a gateway that gives requests `grace` to finish when it stops.
    pub fn new(grace: Duration) -> Self {
        Self {
            cut: watch::Sender::new(false),
            in_flight: AtomicUsize::new(0),
            grace,
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Requests whose handler or response body is still running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the requests still running have been cut.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Cuts every request still running (see the module's comment).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// What a cut request's client is told and its usage record says.
    pub fn cut_error(&self) -> GatewayError {
        GatewayError::ShuttingDown {
            grace_secs: self.grace.as_secs(),
        }
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves when the requests are cut (never, if the drain goes away first).
    fn when_cut(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut cut = self.cut.subscribe();
        async move {
            if cut.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One request counted in flight until dropped.
#[derive(Debug)]
struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The middleware: counts the request, drops its handler if the cut comes first, and hands
/// a streamed response body on in a [`CutBody`]. A body of known length is already in memory
/// and passes untouched.
pub async fn guard(State(drain): State<Arc<Drain>>, request: Request, next: Next) -> Response {
    let in_flight = drain.enter();
    let protocol = client_protocol(request.uri().path());
    let cut = drain.when_cut();
    let response = tokio::select! {
        response = next.run(request) => response,
        () = cut => {
            let shape = protocol.map_or(ErrorShape::Management, ErrorShape::Client);
            return Rendered::new(shape, drain.cut_error()).into_response();
        }
    };
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    let is_events = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let farewell = match protocol {
        Some(protocol) if is_events => Some(crate::proxy::deliver::stream_error_event(
            protocol,
            &drain.cut_error().to_string(),
            true,
        )),
        _ => None,
    };
    let cut = Box::pin(drain.when_cut());
    response.map(|inner| {
        Body::new(CutBody {
            inner: Some(inner),
            cut,
            farewell,
            _in_flight: in_flight,
        })
    })
}

/// The protocol a client speaks, from the path it called; `None` for the management API and
/// the UI.
fn client_protocol(path: &str) -> Option<Protocol> {
    if path.starts_with("/v1/messages") {
        Some(Protocol::AnthropicMessages)
    } else if path.starts_with("/v1/responses") {
        Some(Protocol::OpenAiResponses)
    } else if path.starts_with("/v1beta/")
        || path.contains(":generateContent")
        || path.contains(":streamGenerateContent")
    {
        Some(Protocol::Gemini)
    } else if path.starts_with("/v1/") {
        Some(Protocol::OpenAiChat)
    } else {
        None
    }
}

/// A streamed response body that ends when the requests are cut: the inner body (and with it
/// the request's meter) is dropped at once, and the client gets the `farewell` event, or a
/// broken-off body when there is none.
struct CutBody {
    inner: Option<Body>,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    farewell: Option<Bytes>,
    _in_flight: InFlight,
}

/// Why a cut body without a closing event broke off.
#[derive(Debug, thiserror::Error)]
#[error("the gateway shut down before the response was complete")]
struct CutByShutdown;

impl HttpBody for CutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.farewell.take().map(|event| Ok(Frame::data(event))));
        };
        if this.cut.as_mut().poll(cx).is_ready() {
            this.inner = None;
            return Poll::Ready(Some(match this.farewell.take() {
                Some(event) => Ok(Frame::data(event)),
                None => Err(axum::Error::new(CutByShutdown)),
            }));
        }
        Pin::new(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.farewell.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, HttpBody::size_hint)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn clients_are_told_in_their_own_protocol() {
        assert_eq!(
            client_protocol("/v1/messages"),
            Some(Protocol::AnthropicMessages)
        );
        assert_eq!(
            client_protocol("/v1/responses"),
            Some(Protocol::OpenAiResponses)
        );
        assert_eq!(
            client_protocol("/v1/chat/completions"),
            Some(Protocol::OpenAiChat)
        );
        assert_eq!(
            client_protocol("/v1beta/models/g:streamGenerateContent"),
            Some(Protocol::Gemini)
        );
        assert_eq!(
            client_protocol("/v1/models/g:generateContent"),
            Some(Protocol::Gemini)
        );
        assert_eq!(client_protocol("/api/usage/recent"), None);
        assert_eq!(client_protocol("/"), None);
    }

    #[tokio::test]
    async fn a_cut_ends_a_stream_with_its_farewell_and_drops_the_inner_body() {
        struct Dropped(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let witness = Dropped(dropped.clone());
        // A stream that never ends by itself, holding the witness as a Relay holds its Meter.
        let endless = futures_util::stream::unfold(witness, |w| async move {
            std::future::pending::<()>().await;
            Some((Ok::<_, std::io::Error>(Bytes::new()), w))
        });
        let drain = Arc::new(Drain::new(Duration::from_secs(1)));
        let mut body = CutBody {
            inner: Some(Body::from_stream(endless)),
            cut: Box::pin(drain.when_cut()),
            farewell: Some(Bytes::from_static(b"event: error\n\n")),
            _in_flight: drain.enter(),
        };
        assert_eq!(drain.in_flight(), 1);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(!dropped.load(Ordering::SeqCst));
        drain.cut();
        assert!(drain.is_cut());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("expected the farewell");
        };
        assert_eq!(frame.into_data().unwrap(), "event: error\n\n");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the inner body went at the cut"
        );
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(drain.in_flight(), 0);
    }
}
