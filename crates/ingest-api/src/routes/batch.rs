//! `POST /v1/notifications/batch`: up to 1,000 notifications in one request,
//! each validated like a single one, with a result per item.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use domain::{FieldError, NotificationRequest, Priority, RequestError, Shard};
use platform::telemetry::traceparent;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::{Authorized, scope};
use crate::error::ApiError;
use crate::metrics::Rejection;
use crate::pipeline::{self, Appended, Entries, IDEMPOTENT_REPLAYED, Idempotency};
use crate::rate_limit::with_headers;
use crate::state::{AppState, Appender};

/// Most notifications in one batch.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1..=1000 notifications, each the body of `POST /v1/notifications`.
    // Each item is kept as its JSON text and decoded like a single
    // request's body: no `Value` tree built first.
    #[schema(value_type = Vec<NotificationRequest>, min_items = 1, max_items = 1000)]
    pub notifications: Vec<Box<RawValue>>,
}

/// The outcome of one item, in the order sent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ItemResult {
    /// Appended to its stream.
    Accepted { id: Uuid },
    /// Invalid: nothing appended for this item.
    Rejected { errors: Vec<FieldError> },
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResult {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<ItemResult>,
}

/// Queue many notifications at once.
///
/// Each item is validated like `POST /v1/notifications`; valid items are
/// appended (all of them, or none when Redis fails: then 503; per shard of
/// their users when the streams are sharded), invalid ones
/// are reported in `results` and nothing is appended for them. With an
/// `Idempotency-Key`, a retry of the same batch returns the first answer.
#[utoipa::path(
    post,
    path = "/v1/notifications/batch",
    tag = "notifications",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1..=255 visible ASCII characters; makes retries of the whole batch safe for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the producer; when ingest-api exports traces, the trace continues through the worker to the gateway's frame write"),
    ),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Per-item results (header Idempotent-Replayed: true on a replay)", body = BatchResult),
        (status = 400, description = "Malformed JSON, or not 1..=1000 items", content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `notify` scope, or an item addresses a user it may not (a tenant's key; `errors` names the items); nothing accepted", content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with a different body", content_type = "application/problem+json"),
        (status = 413, description = "Body over the batch size limit, or more items than the key's burst", content_type = "application/problem+json"),
        (status = 415, description = "Content type is not JSON", content_type = "application/problem+json"),
        (status = 429, description = "The key is over its rate (a batch counts its items); nothing accepted; see Retry-After and RateLimit; or too many failed authentications from this address", content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable; nothing appended; see Retry-After", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn create_batch(
    producer: Authorized<scope::Notify>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    appender: web::Data<Appender>,
) -> Result<HttpResponse, ApiError> {
    let (idempotency_key, body) = pipeline::read_request(&req, payload, state.limits.batch).await?;
    let batch: BatchRequest = domain::validation::decode_json(&body)?;
    if batch.notifications.is_empty() || batch.notifications.len() > MAX_BATCH {
        return Err(RequestError::InvalidFields(vec![FieldError::new(
            "notifications",
            format!(
                "must hold 1..={MAX_BATCH} items, got {}",
                batch.notifications.len()
            ),
        )])
        .into());
    }

    // Items are parsed first: a tenant's key addressing another tenant's
    // user is refused as a whole, before its rate or templates are touched.
    let parsed: Vec<Result<NotificationRequest, RequestError>> = batch
        .notifications
        .iter()
        .map(|item| NotificationRequest::parse(item.get().as_bytes()))
        .collect();
    let foreign: Vec<FieldError> = parsed
        .iter()
        .enumerate()
        .filter_map(|(index, item)| match item {
            Ok(request) if !producer.identity.may_address(&request.user_id) => {
                Some(FieldError::new(
                    format!("notifications[{index}].user_id"),
                    producer.foreign_user_message(),
                ))
            }
            _ => None,
        })
        .collect();
    if !foreign.is_empty() {
        return Err(ApiError::ForeignUsers(foreign));
    }
    let rate = state
        .key_rates
        .take(&appender, &producer.identity, parsed.len())
        .await?;
    let keys = appender.keys();
    // Each item's shard, for merging the answers of a batch that an
    // earlier request appended in part.
    let item_shards: Vec<Option<Shard>> = parsed
        .iter()
        .map(|item| item.as_ref().ok().map(|r| keys.shard_of(&r.user_id)))
        .collect();

    let now = Utc::now();
    let xadd = pipeline::xadd_span(batch.notifications.len());
    let trace = traceparent::of(&xadd);
    let mut results = Vec::with_capacity(batch.notifications.len());
    let mut entries = Entries::default();
    let mut lookups = pipeline::TemplateLookups::default();
    for (index, item) in parsed.into_iter().enumerate() {
        let checked = match item {
            Ok(request) => match pipeline::admit(&state, request, now, &mut lookups).await {
                Ok(notification) => Ok(notification),
                Err(ApiError::InvalidRequest(RequestError::InvalidFields(errors))) => Err(errors),
                Err(other) => return Err(other),
            },
            Err(RequestError::InvalidFields(errors)) => Err(errors),
            // The envelope's parse only skims each item: a lone surrogate
            // escape or a number out of range shows here. Broken JSON is
            // the whole request's, as in a single body.
            Err(RequestError::MalformedJson(why)) => {
                return Err(
                    RequestError::MalformedJson(format!("notifications[{index}]: {why}")).into(),
                );
            }
        };
        match checked {
            Ok(mut notification) => {
                notification.traceparent = trace.clone();
                let entry = serde_json::to_string(&notification)
                    .map_err(|err| ApiError::BadBody(err.to_string()))?;
                entries.push(
                    keys.lane_of(&notification.user_id, notification.priority),
                    entry,
                );
                results.push(ItemResult::Accepted {
                    id: notification.id,
                });
            }
            Err(errors) => results.push(ItemResult::Rejected { errors }),
        }
    }
    let accepted = entries.len();
    let answer = BatchResult {
        accepted,
        rejected: results.len() - accepted,
        results,
    };
    let idempotency = Idempotency::of(
        idempotency_key.as_deref(),
        &producer,
        Some("batch"),
        &body,
        state.idempotency_ttl,
    );
    let appended = pipeline::append(
        &appender,
        &entries,
        xadd,
        idempotency,
        |shard| match shard {
            None => to_json(&answer),
            Some(shard) => to_json(&ShardPart::of(&answer, &item_shards, shard)),
        },
    )
    .await?;
    match appended {
        Appended::Now => {
            count_items(&state, &entries, &[], answer.rejected);
            Ok(with_headers(HttpResponse::Ok().json(answer), rate))
        }
        Appended::Earlier(earlier) => {
            // Within one shard: the first answer, as it was recorded.
            if let [(_, first)] = earlier.as_slice()
                && entries.shards().count() <= 1
                && matches!(Recorded::read(first)?, Recorded::Whole(_))
            {
                return Ok(with_headers(
                    replayed(HttpResponse::Ok(), first.clone()),
                    rate,
                ));
            }
            let done: Vec<Shard> = earlier.iter().map(|(shard, _)| *shard).collect();
            let merged = merge_answers(answer, &earlier, &item_shards)?;
            let body = to_json(&merged)?;
            if done.len() == entries.shards().count() {
                Ok(with_headers(replayed(HttpResponse::Ok(), body), rate))
            } else {
                // A request that failed part-way, completed now.
                count_items(&state, &entries, &done, 0);
                Ok(with_headers(
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body),
                    rate,
                ))
            }
        }
    }
}

fn replayed(mut response: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
    response
        .insert_header((IDEMPOTENT_REPLAYED, "true"))
        .content_type("application/json")
        .body(body)
}

fn to_json(value: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|err| ApiError::BadBody(err.to_string()))
}

/// What a shard's idempotency record holds for a batch spanning shards:
/// the results of the items whose user is in that shard, by index (not
/// the whole answer, which every shard would otherwise keep a copy of).
#[derive(Debug, Serialize, Deserialize)]
struct ShardPart {
    items: Vec<(usize, ItemResult)>,
}

impl ShardPart {
    fn of(answer: &BatchResult, item_shards: &[Option<Shard>], shard: Shard) -> Self {
        let items = answer
            .results
            .iter()
            .enumerate()
            .filter(|(index, _)| item_shards.get(*index) == Some(&Some(shard)))
            .map(|(index, result)| (index, result.clone()))
            .collect();
        Self { items }
    }
}

/// An idempotency record of a batch: the whole answer (the batch was in
/// one shard) or one shard's part of it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Recorded {
    Whole(BatchResult),
    Part(ShardPart),
}

impl Recorded {
    fn read(record: &str) -> Result<Self, ApiError> {
        serde_json::from_str(record)
            .map_err(|err| ApiError::redis(format!("an unreadable idempotency record: {err}")))
    }
}

/// The answer of a batch whose shards were appended by several requests
/// with one idempotency key: each item's result is the one its shard
/// recorded (its id as appended then); items of shards appended now, and
/// items without a user, keep `now`'s.
fn merge_answers(
    mut now: BatchResult,
    earlier: &[(Shard, String)],
    item_shards: &[Option<Shard>],
) -> Result<BatchResult, ApiError> {
    for (shard, record) in earlier {
        let part = match Recorded::read(record)? {
            Recorded::Part(part) => part,
            Recorded::Whole(whole) => ShardPart::of(&whole, item_shards, *shard),
        };
        for (index, first) in part.items {
            if let Some(result) = now.results.get_mut(index) {
                *result = first;
            }
        }
    }
    now.accepted = now
        .results
        .iter()
        .filter(|r| matches!(r, ItemResult::Accepted { .. }))
        .count();
    now.rejected = now.results.len() - now.accepted;
    Ok(now)
}

/// Counts an appended batch's items (except those of shards in `except`,
/// appended by an earlier request): accepted by priority, invalid ones rejected.
fn count_items(state: &AppState, entries: &Entries, except: &[Shard], rejected: usize) {
    for priority in Priority::ALL {
        let count = entries
            .priorities_except(except)
            .filter(|p| *p == priority)
            .count();
        if count > 0 {
            state.metrics.accepted(priority, count as u64);
        }
    }
    if rejected > 0 {
        state.metrics.rejected(Rejection::Invalid, rejected as u64);
    }
}
