//! What a client's stream holds back for its closing events: the usage reported so far and the
//! finish reason. Anthropic's `message_delta` and Responses' terminal `response.*` event carry
//! both and are written only when the stream ends, so usage that arrives after the finish
//! reason (OpenAI's last usage chunk) still reaches the client. Those two protocols'
//! `StreamEncoder`s (`<protocol>/stream_encode.rs`) each keep one.

use crate::canonical::{FinishReason, TokenUsage, merge_usage};

/// The usage and finish reason a client stream's closing events will carry.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    usage: TokenUsage,
    finish: Option<FinishReason>,
}

impl Closing {
    /// A usage report: the fields it knows replace those reported before.
    pub(crate) fn add_usage(&mut self, update: &TokenUsage) {
        merge_usage(&mut self.usage, update);
    }

    /// The finish reason; a later one replaces it.
    pub(crate) fn set_finish(&mut self, reason: &FinishReason) {
        self.finish = Some(reason.clone());
    }

    /// The usage so far (no counts before any report).
    pub(crate) fn usage(&self) -> &TokenUsage {
        &self.usage
    }

    /// The finish reason, if one came.
    pub(crate) fn finish(&self) -> Option<&FinishReason> {
        self.finish.as_ref()
    }
}
