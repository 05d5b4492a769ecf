//! What a producer request goes through, for `POST /v1/notifications` and
//! `/batch` alike: a JSON body within its limit with an optional
//! `Idempotency-Key` ([`read_request`]), each notification stamped with its
//! id and checked against its template ([`admit`]), and the entries
//! appended to their streams, once per idempotency key ([`append`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, web};
use chrono::{DateTime, Utc};
use domain::{
    FieldError, Lane, NewNotification, NotificationRequest, Priority, RequestError, Shard,
};
use futures_util::future::try_join_all;
use platform::hashing::sha256_hex;
use platform::redis::{IdempotentAppend, KeyClaim};
use platform::rendering::TemplateLookupError;
use templates::Template;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Producer;
use crate::error::ApiError;
use crate::state::{AppState, Appender};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What every producer request starts with: a JSON content type, a valid
/// optional `Idempotency-Key`, and a body within `limit`.
pub async fn read_request(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Option<String>, web::Bytes), ApiError> {
    require_json(req)?;
    let key = idempotency_key(req)?;
    let body = payload
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))?
        .map_err(|err| ApiError::BadBody(err.to_string()))?;
    Ok((key, body))
}

/// Stamps a validated request with its id and time, and pins its template
/// to the version its params were checked against.
pub async fn admit(
    state: &AppState,
    request: NotificationRequest,
    now: DateTime<Utc>,
    lookups: &mut TemplateLookups,
) -> Result<NewNotification, ApiError> {
    let mut notification = request.into_notification(Uuid::now_v7(), now);
    if let Some(template) = &mut notification.template {
        template.version = check_template(state, template, lookups).await?;
    }
    Ok(notification)
}

/// What one request found of the templates it names: a batch asks
/// PostgreSQL once per template key, whether the key exists or not (a
/// batch of 1,000 items naming an unknown template is one query, not
/// 1,000).
#[derive(Default)]
pub struct TemplateLookups {
    found: HashMap<String, Result<Arc<Template>, String>>,
}

impl TemplateLookups {
    /// The template `key` as found for an earlier item of this request,
    /// else as `lookup` finds it: the template, or why there is none. A
    /// database error is not remembered: it fails the whole request.
    async fn latest<Fut>(
        &mut self,
        key: &str,
        lookup: impl FnOnce() -> Fut,
    ) -> Result<Result<Arc<Template>, String>, ApiError>
    where
        Fut: Future<Output = Result<Result<Arc<Template>, String>, ApiError>>,
    {
        if let Some(found) = self.found.get(key) {
            return Ok(found.clone());
        }
        let found = lookup().await?;
        self.found.insert(key.to_owned(), found.clone());
        Ok(found)
    }
}

/// The current version of the template, if the params fit every locale of it.
/// An unknown template or a missing or mistyped parameter is the producer's
/// to fix now: nothing is queued.
async fn check_template(
    state: &AppState,
    template: &domain::TemplateRef,
    lookups: &mut TemplateLookups,
) -> Result<i32, ApiError> {
    let found = lookups
        .latest(&template.key, || async {
            let unknown = || TemplateLookupError::Unknown(template.key.clone()).to_string();
            if state.unknown_templates.contains(template.key.as_str()) {
                return Ok(Err(unknown()));
            }
            let mut conn = state.conn().await?;
            match state.templates.latest(&mut conn, &template.key).await {
                Ok(compiled) => Ok(Ok(compiled)),
                Err(TemplateLookupError::Db(err)) => Err(ApiError::database(err)),
                Err(TemplateLookupError::Unknown(_)) => {
                    state.unknown_templates.insert(template.key.clone());
                    Ok(Err(unknown()))
                }
                Err(err) => Ok(Err(err.to_string())),
            }
        })
        .await?;
    let compiled = found.map_err(|why| {
        ApiError::from(RequestError::InvalidFields(vec![FieldError::new(
            "template", why,
        )]))
    })?;
    compiled.check_params(&template.params).map_err(|err| {
        RequestError::InvalidFields(vec![FieldError::new(
            format!("params.{}", err.param),
            format!(
                "template `{}`: parameter `{}` {}",
                template.key, err.param, err.problem
            ),
        )])
    })?;
    Ok(compiled.version)
}

/// The span of appending `entries` notifications to the streams; its
/// `traceparent` goes into each entry, so the worker continues the trace.
pub fn xadd_span(entries: usize) -> tracing::Span {
    if !platform::telemetry::exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "XADD",
        otel.kind = "producer",
        db.system.name = "redis",
        entries
    )
}

/// A request's `Idempotency-Key`, as remembered for `ttl`: scoped to the
/// producer's API key (two producers cannot collide) and to the endpoint,
/// with the fingerprint of the body it was first used with.
pub struct Idempotency {
    record: String,
    fingerprint: String,
    ttl: Duration,
}

impl Idempotency {
    /// The idempotency of a request that sent `key` (`None`: it sent none).
    /// `endpoint` is `None` for single notifications, `Some("batch")` for
    /// batches.
    pub fn of(
        key: Option<&str>,
        producer: &Producer,
        endpoint: Option<&str>,
        body: &[u8],
        ttl: Duration,
    ) -> Option<Self> {
        let key = sha256_hex(key?.as_bytes());
        let record = match endpoint {
            None => format!("{}:{key}", producer.key_id()),
            Some(endpoint) => format!("{}:{endpoint}:{key}", producer.key_id()),
        };
        Some(Self {
            record,
            fingerprint: sha256_hex(body),
            ttl,
        })
    }
}

/// A request's stream entries, grouped by the shard of their user (in the
/// order the shards first appear): each group is appended in one command
/// on the node that owns its shard.
#[derive(Debug, Default)]
pub struct Entries {
    shards: Vec<(Shard, Vec<(Priority, String)>)>,
}

impl Entries {
    pub fn push(&mut self, lane: Lane, entry: String) {
        let item = (lane.priority, entry);
        match self
            .shards
            .iter_mut()
            .find(|(shard, _)| *shard == lane.shard)
        {
            Some((_, group)) => group.push(item),
            None => self.shards.push((lane.shard, vec![item])),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|(_, group)| group.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The priorities of the entries, except those of the shards in `except`.
    pub fn priorities_except<'a>(
        &'a self,
        except: &'a [Shard],
    ) -> impl Iterator<Item = Priority> + 'a {
        self.shards
            .iter()
            .filter(|(shard, _)| !except.contains(shard))
            .flat_map(|(_, group)| group.iter().map(|(priority, _)| *priority))
    }

    /// The shards the entries go to.
    pub fn shards(&self) -> impl Iterator<Item = Shard> + '_ {
        self.shards.iter().map(|(shard, _)| *shard)
    }
}

/// One shard's entries of a request.
type Group<'a> = &'a [(Priority, String)];

/// How [`append`] went.
#[derive(Debug)]
pub enum Appended {
    /// Appended now, every entry.
    Now,
    /// A request with the same key and body came before and appended the
    /// entries of these shards: what each recorded then (see [`append`]).
    /// Shards not listed were appended now (that request failed part-way).
    Earlier(Vec<(Shard, String)>),
}

/// Appends `entries` to their streams inside `span` (an [`xadd_span`]
/// whose `traceparent` the entries carry); 503 when Redis fails. Entries
/// of one shard are appended all or none; a request spanning shards may
/// fail part-way, which a retry with the same idempotency key completes.
/// With an idempotency key, the first request appends and remembers, in
/// each shard, `answer(None)` (the whole answer) when its entries are in
/// one shard, else `answer(Some(shard))` (that shard's part of it); a
/// retry with the same body appends only what is missing and gets back
/// what each shard remembered; the same key with another body is refused
/// with 409. With `redis.min_replicas_acks`, every shard's replicas
/// confirm before this returns Ok.
pub async fn append(
    appender: &Appender,
    entries: &Entries,
    span: tracing::Span,
    idempotency: Option<Idempotency>,
    answer: impl Fn(Option<Shard>) -> Result<String, ApiError>,
) -> Result<Appended, ApiError> {
    let appended = match idempotency {
        None => append_plain(appender, entries)
            .instrument(span)
            .await
            .map(|()| Appended::Now),
        Some(idempotency) => {
            append_once(appender, entries, &idempotency, answer)
                .instrument(span)
                .await
        }
    }?;
    if appender.waits_for_replicas() {
        try_join_all(
            entries
                .shards()
                .map(|shard| appender.confirm_replicated(shard)),
        )
        .await
        .map_err(ApiError::redis)?;
    }
    Ok(appended)
}

async fn append_plain(appender: &Appender, entries: &Entries) -> Result<(), ApiError> {
    match entries.shards.as_slice() {
        // One XADD: cheaper for Redis than the script.
        [(shard, group)] if group.len() == 1 => {
            let (priority, entry) = &group[0];
            let lane = Lane {
                shard: *shard,
                priority: *priority,
            };
            appender.append(lane, entry).await.map(drop)
        }
        [(shard, group)] => appender.append_many(*shard, group).await.map(drop),
        groups => try_join_all(
            groups
                .iter()
                .map(|(shard, group)| appender.append_many(*shard, group)),
        )
        .await
        .map(drop),
    }
    .map_err(ApiError::redis)
}

async fn append_once(
    appender: &Appender,
    entries: &Entries,
    idempotency: &Idempotency,
    answer: impl Fn(Option<Shard>) -> Result<String, ApiError>,
) -> Result<Appended, ApiError> {
    // No entries (a batch of invalid items) still remembers its answer.
    // Each shard's entries, with what its record remembers.
    let groups: Vec<(Shard, Group<'_>, String)> = match entries.shards.as_slice() {
        [] => vec![(Shard::FIRST, &[], answer(None)?)],
        [(shard, group)] => vec![(*shard, group.as_slice(), answer(None)?)],
        groups => groups
            .iter()
            .map(|(shard, group)| Ok((*shard, group.as_slice(), answer(Some(*shard))?)))
            .collect::<Result<_, ApiError>>()?,
    };
    if groups.len() > 1 {
        let claim = appender
            .claim_idempotency_key(
                &idempotency.record,
                &idempotency.fingerprint,
                idempotency.ttl,
            )
            .await
            .map_err(ApiError::redis)?;
        if claim == KeyClaim::OtherBody {
            return Err(ApiError::IdempotencyKeyReused);
        }
    }
    let outcomes = try_join_all(groups.iter().map(|(shard, group, answer)| async {
        appender
            .append_idempotent(
                *shard,
                group,
                &idempotency.record,
                &idempotency.fingerprint,
                answer,
                idempotency.ttl,
            )
            .await
            .map(|outcome| (*shard, outcome))
    }))
    .await
    .map_err(ApiError::redis)?;
    earlier_answers(idempotency, outcomes)
}

/// [`Appended::Now`] when every shard appended now, else the answers the
/// shards that appended before remembered; 409 if one remembered another body.
fn earlier_answers(
    idempotency: &Idempotency,
    outcomes: impl IntoIterator<Item = (Shard, IdempotentAppend)>,
) -> Result<Appended, ApiError> {
    let mut earlier = Vec::new();
    for (shard, outcome) in outcomes {
        match outcome {
            IdempotentAppend::Appended => {}
            IdempotentAppend::Replayed {
                fingerprint,
                answer,
            } if fingerprint == idempotency.fingerprint => earlier.push((shard, answer)),
            IdempotentAppend::Replayed { .. } => return Err(ApiError::IdempotencyKeyReused),
        }
    }
    Ok(if earlier.is_empty() {
        Appended::Now
    } else {
        Appended::Earlier(earlier)
    })
}

/// The optional `Idempotency-Key`: 1..=255 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::BadIdempotencyKey("must be visible ASCII"))?;
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::BadIdempotencyKey("must be 1..=255 characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey(
            "must be visible ASCII without spaces",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// `application/json`, with or without parameters such as `charset`.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    if platform::body::is_json(req) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_request_looks_each_template_key_up_once() {
        let asked = AtomicUsize::new(0);
        let mut lookups = TemplateLookups::default();
        for item in 0..1_000 {
            let key = if item % 2 == 0 { "unknown" } else { "other" };
            let found = lookups
                .latest(key, || async {
                    asked.fetch_add(1, Ordering::SeqCst);
                    Ok(Err(format!("no template `{key}`")))
                })
                .await
                .unwrap();
            assert_eq!(found.unwrap_err(), format!("no template `{key}`"));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 2, "one lookup per key");
    }

    #[tokio::test]
    async fn a_database_error_is_not_remembered() {
        let mut lookups = TemplateLookups::default();
        let failed = lookups
            .latest("t", || async { Err(ApiError::database("down")) })
            .await;
        assert!(failed.is_err());
        let found = lookups
            .latest("t", || async { Ok(Err("no template `t`".to_owned())) })
            .await
            .unwrap();
        assert!(found.is_err(), "asked again after the failure");
    }
}
