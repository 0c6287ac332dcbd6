//! The request path's last step: one usage record per exchange, whatever way it ends. A
//! [`Meter`] starts when an attempt is sent, travels with the answer (inside `deliver`'s
//! `Relay` or `translate`'s stream) and finishes exactly once, counting the tokens against
//! the credential's limits and handing the row to the `usage` recorder off the request path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::error::GatewayError;
use crate::routing::registry::Adapter;
use crate::routing::{Router, Target};
use crate::state::AppState;
use crate::store::usage::{Outcome, Recorder, UsageRecord};
use flexiproxy_protocol::canonical::TokenUsage;

/// Times the exchange and sends its usage record exactly once: when the exchange ends, or,
/// if it is dropped first, as `client_closed` (the client hung up) or `shutdown` (the gateway
/// cut it, see `drain`).
pub(crate) struct Meter {
    recorder: Recorder,
    /// Tells a cut at shutdown from a client hanging up.
    drain: Arc<crate::server::drain::Drain>,
    /// Where the tokens of a finished request are counted against the credential's limits.
    router: Arc<Router>,
    started: Instant,
    pub(crate) first_byte: Option<Instant>,
    pub(crate) record: UsageRecord,
    pub(crate) finished: bool,
}

impl Meter {
    pub(crate) fn new(
        state: &AppState,
        started: Instant,
        adapter: &Adapter,
        target: &Target,
        endpoint: &'static str,
        stream: bool,
    ) -> Self {
        Self {
            recorder: state.recorder.clone(),
            drain: state.drain.clone(),
            router: state.router.clone(),
            started,
            first_byte: None,
            record: UsageRecord {
                ts_ms: now_ms(),
                adapter: Some(adapter.create_time),
                provider_id: target.provider.id.clone(),
                credential: Some(target.credential.key_id.clone()),
                model: target.model.clone(),
                endpoint,
                stream,
                status: 0,
                tokens: TokenUsage::default(),
                latency_ms: 0,
                ttfb_ms: None,
                outcome: Outcome::Failed,
                error: None,
            },
            finished: false,
        }
    }

    /// Notes the first upstream byte (for time to first token).
    pub(crate) fn saw_bytes(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = Instant::now();
        // The one place every record is finished: what a provider claims is capped here, for
        // the limit windows and the ledger alike.
        self.record.tokens = self.record.tokens.clamped();
        self.record.outcome = outcome;
        self.record.latency_ms = millis(now - self.started);
        self.record.ttfb_ms = self.first_byte.map(|t| millis(t - self.started));
        if let Some(credential) = &self.record.credential {
            let tokens = self
                .record
                .tokens
                .input
                .unwrap_or(0)
                .saturating_add(self.record.tokens.output.unwrap_or(0));
            // Counted whether or not usage statistics are kept: limits depend on it.
            self.router.note_tokens(credential, tokens, now_ms());
        }
        self.recorder.record(self.record.clone());
    }

    pub(crate) fn fail(&mut self, error: &GatewayError) {
        self.record.status = error.status().as_u16();
        self.record.error = Some(error.to_string());
        self.finish(Outcome::Failed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Dropped unfinished: the client hung up, either while the gateway waited for the
        // upstream's headers (the `forward` future was dropped) or mid-body (the `Relay` was).
        // Either way the upstream request is dropped with it, which cancels it there. Or the
        // gateway cut it at shutdown: the record keeps the tokens seen until then.
        if !self.finished {
            if self.drain.is_cut() {
                self.record.error = Some(self.drain.cut_error().to_string());
                self.finish(Outcome::Shutdown);
            } else {
                self.record.error = Some("the client closed the connection".into());
                self.finish(Outcome::ClientClosed);
            }
        }
    }
}
