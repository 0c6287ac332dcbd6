//! An upstream answer's body as `relay`, `translate` and `account_relay` read it: its chunks,
//! with a deadline on silence, so a provider that stops sending without closing cannot hold a
//! client (and a connection slot) forever.
//!
//! Two waits, because they mean different things: until the first chunk, the response timeout
//! (`--upstream-timeout`, long: a model may think for minutes before it says anything); between
//! two chunks once the answer has begun, the stream idle timeout (`--stream-idle-timeout`,
//! generous too: reasoning models pause between chunks). When either runs out the body ends
//! with [`BodyError::Silent`], which the readers turn into the client protocol's error event
//! (streams) or a 502 (whole answers), and record as the reason the answer was cut.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::time::Sleep;

/// Why an upstream body ended before its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed or the provider broke the body off.
    Transport(reqwest::Error),
    /// Nothing came for `waited`; `begun` says whether some of the body had come before.
    Silent { waited: Duration, begun: bool },
}

impl BodyError {
    /// A short reason a user can act on.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Transport(error) => crate::proxy::classify::describe(error),
            Self::Silent {
                waited,
                begun: true,
            } => format!(
                "it sent nothing for {} s in the middle of the answer (the stream idle \
                 timeout, --stream-idle-timeout)",
                waited.as_secs()
            ),
            Self::Silent {
                waited,
                begun: false,
            } => format!(
                "no answer within {} s after the headers (the response timeout, \
                 --upstream-timeout)",
                waited.as_secs()
            ),
        }
    }

    pub(crate) fn is_silence(&self) -> bool {
        matches!(self, Self::Silent { .. })
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for BodyError {}

/// An upstream body's chunks.
pub(crate) type BodyStream = BoxStream<'static, Result<Bytes, BodyError>>;

/// How long a body may stay silent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Silence {
    /// Before the first chunk.
    pub first: Duration,
    /// Between two chunks.
    pub between: Duration,
}

impl Silence {
    pub(crate) fn of(settings: &crate::config::Settings) -> Self {
        Self {
            first: settings.response_timeout,
            between: settings.stream_idle_timeout,
        }
    }
}

/// The body of `response`, ended with [`BodyError::Silent`] when it stays silent too long.
pub(crate) fn limited(response: reqwest::Response, silence: Silence) -> BodyStream {
    use futures_util::StreamExt;
    Box::pin(Watchful {
        inner: response
            .bytes_stream()
            .map(|r| r.map_err(BodyError::Transport))
            .boxed(),
        silence,
        begun: false,
        deadline: Box::pin(tokio::time::sleep(silence.first)),
        done: false,
    })
}

/// The stream behind [`limited`].
struct Watchful {
    inner: BodyStream,
    silence: Silence,
    begun: bool,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl Stream for Watchful {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                // Empty chunks are no sign of life a client would see.
                if !chunk.is_empty() {
                    this.begun = true;
                    let next = tokio::time::Instant::now() + this.silence.between;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    this.done = true;
                    // Dropping the upstream body cancels the request there.
                    this.inner = Box::pin(futures_util::stream::empty());
                    Poll::Ready(Some(Err(BodyError::Silent {
                        waited: if this.begun {
                            this.silence.between
                        } else {
                            this.silence.first
                        },
                        begun: this.begun,
                    })))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A provider that sends `chunks` with the given pauses before each, then stalls.
    async fn provider(chunks: Vec<(u64, &'static str)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 4096];
            let _ = socket.read(&mut head).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for (pause, text) in chunks {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let frame = format!("{:x}\r\n{text}\r\n", text.len());
                socket.write_all(frame.as_bytes()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_body_that_stalls_after_its_first_chunk_ends_with_silence() {
        let url = provider(vec![(0, "data: 1\n\n"), (100, "data: 2\n\n")]).await;
        let response = reqwest::get(&url).await.unwrap();
        let silence = Silence {
            first: Duration::from_secs(5),
            between: Duration::from_millis(400),
        };
        let started = std::time::Instant::now();
        let mut body = limited(response, silence);
        assert_eq!(body.next().await.unwrap().unwrap(), "data: 1\n\n");
        assert_eq!(body.next().await.unwrap().unwrap(), "data: 2\n\n");
        let error = body.next().await.unwrap().unwrap_err();
        assert!(matches!(error, BodyError::Silent { begun: true, .. }));
        assert!(error.describe().contains("--stream-idle-timeout"));
        assert!(body.next().await.is_none());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn the_first_chunk_gets_the_longer_wait() {
        let url = provider(vec![(600, "data: late\n\n")]).await;
        let response = reqwest::get(&url).await.unwrap();
        let silence = Silence {
            first: Duration::from_secs(5),
            between: Duration::from_millis(200),
        };
        let mut body = limited(response, silence);
        assert_eq!(body.next().await.unwrap().unwrap(), "data: late\n\n");
        let error = body.next().await.unwrap().unwrap_err();
        assert!(error.is_silence());
    }
}
