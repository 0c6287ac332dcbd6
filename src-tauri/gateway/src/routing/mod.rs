//! Which provider, model and credential serve a request, and what happens when one fails.
//!
//! `proxy::plan` asks [`plan`] for the candidates of a request (from the adapter and the
//! model the client named: a pinned provider and model, a route, a `provider/model` prefix, or
//! the providers that serve a model), then asks the [`Router`] for one target at a time. The
//! router applies the strategy (`policy::Strategy`) within the best priority tier that has an
//! available credential, counts the attempt in the credential's windows (`ledger`), and after a
//! failure rests the credential ([`Router::fail`]) so the next pick moves on. When nothing is
//! available it says until when, which becomes the client's true `retry-after`.

pub mod discovery;
pub mod provider_check;
pub mod registry;

pub mod ledger;
pub mod policy;
#[cfg(test)]
mod test_upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use ledger::{Availability, Hold, Ledger, Windows};
pub use policy::{Candidate, Limits, RoutingSettings, Strategy};

use crate::error::GatewayError;
use crate::routing::registry::{Adapter, Credential, Provider, ProviderKey, Snapshot};

/// One way to serve a request: a provider, the model name it knows, and a credential.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub model: String,
    pub credential: Arc<Credential>,
    /// (candidate priority, credential priority): lower is tried first.
    tier: (u32, u32),
}

/// Names a pool of candidates for the strategy's memory (round-robin position, last pick).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pool {
    /// An adapter pinned to a provider and model.
    Adapter(i64),
    /// An adapter pinned to a provider, with the client's model.
    AdapterModel(i64, String),
    Route(String),
    /// A `provider/model` name or a model served by several providers.
    Model(String),
}

impl Pool {
    /// Whether the client's model name makes the pool (so a client can make up any number).
    fn is_client_named(&self) -> bool {
        matches!(self, Self::AdapterModel(..) | Self::Model(_))
    }
}

/// The candidates of one request, in tier order, and how to spread requests over them.
#[derive(Debug)]
pub struct Plan {
    pub pool: Pool,
    pub strategy: Strategy,
    pub targets: Vec<Target>,
}

/// The candidates for a request to `adapter`. `requested` reads the model the client named
/// (if any); it is called only for an adapter without a model of its own, since reading it
/// scans the request body again.
pub fn plan(
    snapshot: &Snapshot,
    adapter: &Adapter,
    requested: impl FnOnce() -> Result<Option<String>, GatewayError>,
) -> Result<Plan, GatewayError> {
    let requested = || -> Result<String, GatewayError> {
        requested()?
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| no_model(adapter))
    };
    let mut route_strategy = None;
    let (pool, candidates) = match (&adapter.provider_id, &adapter.model_id) {
        (Some(provider), Some(model)) => (
            Pool::Adapter(adapter.create_time),
            vec![Candidate {
                provider: provider.clone(),
                model: model.clone(),
                priority: 0,
            }],
        ),
        (Some(provider), None) => {
            let model = requested()?;
            (
                Pool::AdapterModel(adapter.create_time, model.clone()),
                vec![Candidate {
                    provider: provider.clone(),
                    model,
                    priority: 0,
                }],
            )
        }
        (None, Some(model)) => resolve_model(snapshot, model, &mut route_strategy)?,
        (None, None) => resolve_model(snapshot, &requested()?, &mut route_strategy)?,
    };

    let mut targets = Vec::new();
    let mut missing = None;
    let mut disabled = None;
    for candidate in &candidates {
        let Some(provider) = snapshot.provider(&candidate.provider) else {
            missing.get_or_insert_with(|| candidate.provider.clone());
            continue;
        };
        for credential in &provider.credentials {
            if !credential.enabled {
                disabled.get_or_insert_with(|| provider.id.clone());
                continue;
            }
            targets.push(Target {
                provider: provider.clone(),
                model: candidate.model.clone(),
                credential: credential.clone(),
                tier: (candidate.priority, credential.priority),
            });
        }
    }
    if targets.is_empty() {
        if let Some(provider) = missing {
            return Err(GatewayError::ProviderMissing { provider });
        }
        let provider = disabled.unwrap_or_default();
        return Err(GatewayError::ProviderKey {
            reason: "every credential of this provider is disabled; enable one in FlexiProxy"
                .into(),
            provider,
        });
    }
    targets.sort_by_key(|t| t.tier);
    let strategy = route_strategy
        .or(adapter.strategy)
        .unwrap_or(snapshot.routing.default_strategy);
    Ok(Plan {
        pool,
        strategy,
        targets,
    })
}

fn no_model(adapter: &Adapter) -> GatewayError {
    GatewayError::Invalid(format!(
        "the request names no model, and adapter {} routes by the model the client sends; \
         set `model`",
        adapter.create_time
    ))
}

/// A model name as a routed adapter understands it: a route, `provider/model`, or a model some
/// providers serve.
fn resolve_model(
    snapshot: &Snapshot,
    name: &str,
    route_strategy: &mut Option<Strategy>,
) -> Result<(Pool, Vec<Candidate>), GatewayError> {
    if let Some(route) = snapshot.route(name) {
        *route_strategy = route.strategy;
        // An auto route's order of preference is already in its candidates' priorities
        // (the config file and the API give each its list position unless it says otherwise).
        return Ok((Pool::Route(name.to_owned()), route.candidates.clone()));
    }
    if let Some((prefix, model)) = name.split_once('/')
        && !model.is_empty()
        && snapshot.provider(prefix).is_some()
    {
        return Ok((
            Pool::Model(name.to_owned()),
            vec![Candidate {
                provider: prefix.to_owned(),
                model: model.to_owned(),
                priority: 0,
            }],
        ));
    }
    let serving = snapshot.serving(name);
    if serving.is_empty() {
        return Err(GatewayError::ModelNotFound {
            model: name.to_owned(),
            known: snapshot.model_names().len(),
        });
    }
    let candidates = serving
        .iter()
        .map(|provider| Candidate {
            provider: provider.clone(),
            model: name.to_owned(),
            priority: 0,
        })
        .collect();
    Ok((Pool::Model(name.to_owned()), candidates))
}

/// What the router decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Use `plan.targets[index]`; the attempt has been counted.
    Use(usize),
    /// Nothing is available before `until_ms`; `reason` says why (for the 429 message).
    Wait { until_ms: i64, reason: String },
    /// Every candidate has been tried or cannot be used at all.
    Exhausted,
}

/// Why an attempt failed, as far as the credential's rest is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 429; with the provider's `retry-after` in milliseconds when it sent one.
    RateLimited {
        retry_after_ms: Option<i64>,
    },
    /// 401 or 403.
    Auth(u16),
    /// 5xx.
    Server(u16),
    Timeout,
    Connection,
    /// The answer broke off before its first byte.
    BrokeOff,
    /// The provider answered with a redirect: its base URL is wrong, which no rest of the
    /// credential fixes.
    Redirected,
}

impl Failure {
    fn describe(self) -> String {
        match self {
            Self::RateLimited {
                retry_after_ms: Some(ms),
            } => format!(
                "rate limited (HTTP 429, retry-after {} s)",
                (ms + 999) / 1000
            ),
            Self::RateLimited {
                retry_after_ms: None,
            } => "rate limited (HTTP 429)".into(),
            Self::Auth(status) => format!("the provider refused the key (HTTP {status})"),
            Self::Server(status) => format!("provider error (HTTP {status})"),
            Self::Timeout => "timed out".into(),
            Self::Connection => "connection failed".into(),
            Self::BrokeOff => "the answer broke off before its first byte".into(),
            Self::Redirected => "the provider answered with a redirect".into(),
        }
    }
}

/// Reads a `retry-after` value (seconds, or an HTTP date) as milliseconds from `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).ceil() as i64);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let at = when.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some((i64::try_from(at).ok()? - now_ms).max(0))
}

#[derive(Debug, Default)]
struct State {
    ledger: Ledger,
    /// Per pool: the round-robin position, or the index of the last `least-used` pick.
    cursors: HashMap<Pool, usize>,
}

/// The live routing state shared by every request.
#[derive(Debug, Default)]
pub struct Router {
    state: Mutex<State>,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks the next target of `plan`, skipping the indices in `tried`, and counts it.
    pub fn pick(&self, plan: &Plan, tried: &[usize], gap_percent: u32, now: i64) -> Pick {
        let mut state = self.lock();
        let State { ledger, cursors } = &mut *state;
        let mut ready: Vec<usize> = Vec::new();
        let mut soonest: Option<(i64, Hold)> = None;
        let mut resting: Option<(i64, usize)> = None;
        for (index, target) in plan.targets.iter().enumerate() {
            if tried.contains(&index)
                || matches!(target.credential.key, ProviderKey::Unavailable(_))
            {
                continue;
            }
            match ledger.availability(&target.credential.key_id, &target.credential.limits, now) {
                Availability::Ready => ready.push(index),
                Availability::Held { until_ms, hold } => {
                    if hold.is_soft() && resting.is_none_or(|(t, _)| until_ms < t) {
                        resting = Some((until_ms, index));
                    }
                    if soonest.as_ref().is_none_or(|(t, _)| until_ms < *t) {
                        soonest = Some((until_ms, hold));
                    }
                }
            }
        }
        let Some(best) = ready.iter().map(|&i| plan.targets[i].tier).min() else {
            if let Some((_, index)) = resting {
                ledger.note_request(&plan.targets[index].credential.key_id, now);
                return Pick::Use(index);
            }
            return match soonest {
                Some((until_ms, hold)) => Pick::Wait {
                    until_ms,
                    reason: hold_message(&hold),
                },
                None => Pick::Exhausted,
            };
        };
        let tier: Vec<usize> = ready
            .into_iter()
            .filter(|&i| plan.targets[i].tier == best)
            .collect();
        let chosen = match plan.strategy {
            Strategy::FillFirst => tier[0],
            Strategy::RoundRobin => {
                // The position runs over the whole tier (available or not), so the spread
                // stays even when one member is briefly out.
                let members: Vec<usize> = (0..plan.targets.len())
                    .filter(|&i| plan.targets[i].tier == best)
                    .collect();
                let start = cursors.get(&plan.pool).copied().unwrap_or(0) % members.len();
                let chosen = (0..members.len())
                    .map(|step| members[(start + step) % members.len()])
                    .find(|i| tier.contains(i))
                    .unwrap_or(tier[0]);
                let position = members.iter().position(|&i| i == chosen).unwrap_or(0);
                remember(cursors, &plan.pool, position + 1);
                chosen
            }
            Strategy::LeastUsed => {
                // Staying on the last pick is fine while it would still be within the gap
                // after this request too; otherwise the least used member takes over.
                let stay = cursors.get(&plan.pool).copied().filter(|last| {
                    let Some(at) = tier.iter().position(|i| i == last) else {
                        return false;
                    };
                    let after = usage_percent(ledger, plan, &tier, Some(*last), now);
                    let others = after
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| *k != at)
                        .map(|(_, u)| *u)
                        .fold(f64::INFINITY, f64::min);
                    after[at] - others.min(after[at]) <= f64::from(gap_percent)
                });
                let chosen = stay.unwrap_or_else(|| {
                    let usage = usage_percent(ledger, plan, &tier, None, now);
                    // The first of the least used, so ties go in pool order.
                    let mut least = 0;
                    for (k, u) in usage.iter().enumerate() {
                        if *u < usage[least] {
                            least = k;
                        }
                    }
                    tier[least]
                });
                remember(cursors, &plan.pool, chosen);
                chosen
            }
        };
        ledger.note_request(&plan.targets[chosen].credential.key_id, now);
        Pick::Use(chosen)
    }

    /// The target a request would use now, without counting it (token counts, model lists).
    pub fn peek<'p>(&self, plan: &'p Plan, now: i64) -> Option<&'p Target> {
        let mut state = self.lock();
        plan.targets.iter().find(|t| {
            !matches!(t.credential.key, ProviderKey::Unavailable(_))
                && state
                    .ledger
                    .availability(&t.credential.key_id, &t.credential.limits, now)
                    == Availability::Ready
        })
    }

    /// Rests a credential after a failed attempt.
    pub fn fail(&self, key_id: &str, failure: Failure, settings: &RoutingSettings, now: i64) {
        let reason = failure.describe();
        let (rest, hold) = match failure {
            Failure::Redirected => return,
            // The provider's own wait is binding; a 429 without one gets the gateway's guess,
            // which only steers requests to other keys while there are any.
            Failure::RateLimited {
                retry_after_ms: Some(wait),
            } => (wait, Hold::CoolingDown(reason)),
            Failure::RateLimited {
                retry_after_ms: None,
            } => (
                i64::try_from(settings.rate_limit_cooldown_ms).unwrap_or(i64::MAX),
                Hold::Resting(reason),
            ),
            Failure::Auth(_) => (
                i64::try_from(settings.auth_cooldown_ms).unwrap_or(i64::MAX),
                Hold::AuthFailed(reason),
            ),
            Failure::Server(_) | Failure::Timeout | Failure::Connection | Failure::BrokeOff => (
                i64::try_from(settings.failure_cooldown_ms).unwrap_or(i64::MAX),
                Hold::Resting(reason),
            ),
        };
        if rest > 0 {
            tracing::info!(credential = %key_id, rest_ms = rest, state = hold.state(), reason = hold.reason(), "credential resting");
            self.lock()
                .ledger
                .cool_down(key_id, now.saturating_add(rest), hold, now);
        }
    }

    /// Counts the tokens a finished request used against its credential.
    pub fn note_tokens(&self, key_id: &str, tokens: u64, now: i64) {
        self.lock().ledger.note_tokens(key_id, tokens, now);
    }

    pub fn reset(&self, key_id: &str) {
        self.lock().ledger.reset(key_id);
    }

    /// A credential's windows and health, for the API and the UI.
    pub fn health(&self, credential: &Credential, now: i64) -> Health {
        let mut state = self.lock();
        let windows = state.ledger.windows(&credential.key_id, now);
        let availability = state
            .ledger
            .availability(&credential.key_id, &credential.limits, now);
        drop(state);
        let (state, available_at_ms, reason) = match (&credential.key, availability) {
            (ProviderKey::Unavailable(reason), _) => {
                ("key_unavailable", None, Some(reason.clone()))
            }
            _ if !credential.enabled => ("disabled", None, None),
            (_, Availability::Ready) => ("ready", None, None),
            (_, Availability::Held { until_ms, hold }) => {
                (hold.state(), Some(until_ms), Some(hold.reason().to_owned()))
            }
        };
        Health {
            state,
            available_at_ms,
            reason,
            windows,
        }
    }

    /// Restores windows from recorded usage (at start).
    pub fn seed(&self, rows: impl IntoIterator<Item = (String, i64, u64)>, now: i64) {
        self.lock().ledger.seed(rows, now);
    }
}

/// How a credential is doing right now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// `ready`, `cooling_down`, `auth_failed`, `at_limit`, `disabled` or `key_unavailable`.
    pub state: &'static str,
    /// When a held credential comes back by itself.
    pub available_at_ms: Option<i64>,
    pub reason: Option<String>,
    #[serde(skip)]
    pub windows: Windows,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.state == "ready"
    }
}

/// The most pools whose strategy position is remembered. Pools named by the client's model
/// (`provider/anything`, any model to a pinned provider) are as many as the names a client
/// makes up, so past this many the client-named ones are forgotten (their round-robin starts
/// over at the first member, which costs nothing but a little evenness).
const MAX_CURSORS: usize = 4096;

/// Sets a pool's cursor, copying the pool's name only the first time.
fn remember(cursors: &mut HashMap<Pool, usize>, pool: &Pool, value: usize) {
    match cursors.get_mut(pool) {
        Some(cursor) => *cursor = value,
        None => {
            if cursors.len() >= MAX_CURSORS {
                cursors.retain(|pool, _| !pool.is_client_named());
                if cursors.len() >= MAX_CURSORS {
                    // Only configured pools left (thousands of routes): start over.
                    cursors.clear();
                }
            }
            cursors.insert(pool.clone(), value);
        }
    }
}

fn hold_message(hold: &Hold) -> String {
    match hold {
        Hold::AtLimit(limit) => format!("at its limit of {limit}"),
        Hold::CoolingDown(reason) | Hold::Resting(reason) => format!("resting after: {reason}"),
        Hold::AuthFailed(reason) => format!("key refused: {reason}"),
    }
}

/// How used each member of a tier is, in percent: of its daily (or else per-minute) capacity
/// when every member has one, otherwise its share of the tier's requests today.
///
/// `plus_one` counts one more request for that member (to judge a pick before making it).
fn usage_percent(
    ledger: &mut Ledger,
    plan: &Plan,
    tier: &[usize],
    plus_one: Option<usize>,
    now: i64,
) -> Vec<f64> {
    let members: Vec<(&Credential, Windows)> = tier
        .iter()
        .map(|&i| {
            let credential = &*plan.targets[i].credential;
            let mut windows = ledger.windows(&credential.key_id, now);
            if plus_one == Some(i) {
                windows.req_day = windows.req_day.saturating_add(1);
                windows.req_min = windows.req_min.saturating_add(1);
            }
            (credential, windows)
        })
        .collect();
    // A member's requests and its capacity in one window: the day's first, then the minute's.
    let day: WindowUse = |c, w| (w.req_day, c.limits.max_request_day);
    let minute: WindowUse = |c, w| (w.req_min, c.limits.max_request_min);
    for window in [day, minute] {
        if members.iter().all(|(c, w)| window(c, w).1.is_some()) {
            return members
                .iter()
                .map(|(c, w)| {
                    let (used, capacity) = window(c, w);
                    percent(u64::from(used), capacity)
                })
                .collect();
        }
    }
    let total: u64 = members.iter().map(|(_, w)| u64::from(w.req_day)).sum();
    members
        .iter()
        .map(|(_, w)| {
            if total == 0 {
                0.0
            } else {
                u64::from(w.req_day) as f64 * 100.0 / total as f64
            }
        })
        .collect()
}

/// How many requests a credential made in one limit window, and its limit there.
type WindowUse = fn(&Credential, &Windows) -> (u32, Option<u32>);

fn percent(used: u64, capacity: Option<u32>) -> f64 {
    match capacity {
        Some(cap) if cap > 0 => used as f64 * 100.0 / f64::from(cap),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::registry::Source;
    use flexiproxy_protocol::Protocol;

    const T0: i64 = 1_700_000_000_000;

    fn provider(id: &str, keys: &[(&str, Limits, u32)]) -> Arc<Provider> {
        Arc::new(Provider {
            id: id.into(),
            url: "http://127.0.0.1:1/v1".into(),
            protocol: Protocol::OpenAiChat,
            discovery: discovery::DiscoveryKind::Off,
            declared_models: vec![],
            discovered: Default::default(),
            credentials: keys
                .iter()
                .map(|(key, limits, priority)| {
                    Arc::new(Credential {
                        provider_id: id.into(),
                        id: (*key).into(),
                        key_id: format!("{id}/{key}"),
                        label: (*key).into(),
                        key: ProviderKey::None,
                        key_hint: None,
                        key_source: None,
                        enabled: true,
                        priority: *priority,
                        limits: *limits,
                        source: Source::Database,
                        implicit: false,
                    })
                })
                .collect(),
            source: Source::Database,
            created_at: 0,
            updated_at: 0,
        })
    }

    fn plan_over(providers: &[Arc<Provider>], strategy: Strategy) -> Plan {
        let mut targets = Vec::new();
        for p in providers {
            for c in &p.credentials {
                targets.push(Target {
                    provider: p.clone(),
                    model: "m".into(),
                    credential: c.clone(),
                    tier: (0, c.priority),
                });
            }
        }
        targets.sort_by_key(|t| t.tier);
        Plan {
            pool: Pool::Route("test".into()),
            strategy,
            targets,
        }
    }

    /// A plan over the keys of one provider `a`.
    fn plan_for(keys: &[(&str, Limits, u32)], strategy: Strategy) -> Plan {
        plan_over(&[provider("a", keys)], strategy)
    }

    fn take(router: &Router, plan: &Plan, n: usize, gap: u32) -> Vec<String> {
        (0..n)
            .map(|i| match router.pick(plan, &[], gap, T0 + i as i64) {
                Pick::Use(index) => plan.targets[index].credential.id.clone(),
                other => panic!("no pick: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn round_robin_spreads_evenly_over_keys_and_providers() {
        let none = Limits::default();
        let plan = plan_over(
            &[
                provider("a", &[("k1", none, 0), ("k2", none, 0)]),
                provider("b", &[("k3", none, 0), ("k4", none, 0)]),
            ],
            Strategy::RoundRobin,
        );
        let picks = take(&Router::default(), &plan, 8, 5);
        assert_eq!(picks, ["k1", "k2", "k3", "k4", "k1", "k2", "k3", "k4"]);
    }

    #[test]
    fn fill_first_stays_until_a_limit_then_moves_on() {
        let three = Limits::requests_per_minute(3);
        let plan = plan_for(&[("k1", three, 0), ("k2", three, 0)], Strategy::FillFirst);
        let router = Router::default();
        let picks = take(&router, &plan, 6, 5);
        assert_eq!(picks, ["k1", "k1", "k1", "k2", "k2", "k2"]);
        match router.pick(&plan, &[], 5, T0 + 10) {
            Pick::Wait { until_ms, reason } => {
                assert_eq!(until_ms, T0 + ledger::MINUTE_MS);
                assert!(reason.contains("3 requests per minute"), "{reason}");
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn lower_priority_tiers_wait_for_the_higher_ones() {
        let one = Limits::requests_per_minute(1);
        let plan = plan_for(
            &[("main", one, 0), ("backup", Limits::default(), 1)],
            Strategy::RoundRobin,
        );
        assert_eq!(
            take(&Router::default(), &plan, 3, 5),
            ["main", "backup", "backup"]
        );
    }

    #[test]
    fn least_used_keeps_the_gap_within_the_setting() {
        let day = Limits::requests_per_day(100);
        let plan = plan_for(
            &[("k1", day, 0), ("k2", day, 0), ("k3", day, 0)],
            Strategy::LeastUsed,
        );
        let router = Router::default();
        for i in 0..4 {
            router.lock().ledger.note_request("a/k1", T0 - 100 + i);
        }
        let mut counts = HashMap::from([("k1", 4), ("k2", 0), ("k3", 0)]);
        for (i, pick) in take(&router, &plan, 26, 5).iter().enumerate() {
            *counts.get_mut(pick.as_str()).unwrap() += 1;
            let gap = counts.values().max().unwrap() - counts.values().min().unwrap();
            assert!(gap <= 5, "after pick {i}: {counts:?}");
        }
    }

    #[test]
    fn a_soft_rest_yields_when_nothing_else_can_serve() {
        let plan = plan_for(&[("only", Limits::default(), 0)], Strategy::RoundRobin);
        let router = Router::default();
        let settings = RoutingSettings::default();
        router.fail("a/only", Failure::Server(500), &settings, T0);
        assert_eq!(router.pick(&plan, &[], 5, T0 + 1), Pick::Use(0));
        router.fail(
            "a/only",
            Failure::RateLimited {
                retry_after_ms: Some(7000),
            },
            &settings,
            T0,
        );
        assert!(
            matches!(router.pick(&plan, &[], 5, T0 + 2), Pick::Wait { until_ms, .. } if until_ms == T0 + 7000)
        );
    }

    #[test]
    fn pools_named_by_clients_do_not_grow_without_bound() {
        let router = Router::default();
        let configured = plan_over(
            &[provider("p", &[("k1", Limits::default(), 0)])],
            Strategy::RoundRobin,
        );
        take(&router, &configured, 1, 0);
        let mut plan = plan_over(
            &[provider(
                "p",
                &[("k1", Limits::default(), 0), ("k2", Limits::default(), 0)],
            )],
            Strategy::RoundRobin,
        );
        for n in 0..(3 * MAX_CURSORS) {
            plan.pool = Pool::Model(format!("p/made-up-{n}"));
            take(&router, &plan, 1, 0);
            assert!(router.lock().cursors.len() <= MAX_CURSORS);
        }
        // The configured pool kept its place through the churn.
        assert!(router.lock().cursors.contains_key(&configured.pool));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("2", T0), Some(2000));
        assert_eq!(parse_retry_after("0.5", T0), Some(500));
        assert_eq!(parse_retry_after("soon", T0), None);
        let date = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis((T0 + 30_000) as u64),
        );
        assert_eq!(parse_retry_after(&date, T0), Some(30_000));
    }
}
