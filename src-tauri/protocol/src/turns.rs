//! Conversation turns for the wires that want the two roles to alternate (Anthropic Messages,
//! Gemini): a tool message is the user's, consecutive messages of one role share a turn (the
//! results of parallel calls must share one user turn), a message left without parts is skipped
//! (both refuse empty content), and tool results lead the user's turns. Each protocol's request
//! encoder names the roles and encodes the parts; this module only arranges them.

use crate::canonical::{Message, Role};

/// The names a wire gives the two roles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles {
    /// The user's, which tool results are sent as.
    pub(crate) user: &'static str,
    /// The model's (`assistant`, Gemini's `model`).
    pub(crate) model: &'static str,
}

/// One turn: its role's wire name and its parts, encoded for the wire.
#[derive(Debug)]
pub(crate) struct Turn<P> {
    pub(crate) role: &'static str,
    pub(crate) parts: Vec<P>,
}

/// `messages` as alternating turns named by `roles`; `encode` encodes one message's parts,
/// `is_result` says which encoded parts are tool results.
pub(crate) fn alternating<'m, P>(
    messages: &'m [Message],
    roles: Roles,
    mut encode: impl FnMut(&'m Message) -> Vec<P>,
    is_result: impl Fn(&P) -> bool,
) -> Vec<Turn<P>> {
    let mut turns: Vec<Turn<P>> = Vec::with_capacity(messages.len());
    for message in messages {
        let role = match message.role {
            Role::Assistant => roles.model,
            Role::User | Role::Tool => roles.user,
        };
        let mut parts = encode(message);
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.parts.append(&mut parts),
            _ => turns.push(Turn { role, parts }),
        }
    }
    for turn in &mut turns {
        if turn.role == roles.user {
            // A stable sort keeps everything else in order.
            turn.parts.sort_by_key(|part| !is_result(part));
        }
    }
    turns
}
