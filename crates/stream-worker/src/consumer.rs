//! The consume loop: read a round, store it, publish it, acknowledge it.
//!
//! Promises:
//! - An entry is acknowledged only after its notification committed in
//!   PostgreSQL, or after it was recorded as a dead letter (PostgreSQL table
//!   and dead-letter stream).
//! - Storing is idempotent by id, so an entry delivered twice is stored once
//!   and counted unread once; it may be published again, and clients drop a
//!   frame whose `seq` they already have.
//! - A transient failure (database unreachable, timeout) is retried with
//!   exponential backoff and jitter, without acking and without re-reading,
//!   until it succeeds or shutdown is requested.
//! - An entry that can never succeed (undecodable, invalid, refused by the
//!   database while it is healthy, or delivered more than `max_deliveries`
//!   times) becomes a dead letter and stops blocking the stream.
//!
//! A consumer reads one shard's lanes (a process runs its consumers on
//! every shard), so a round's entries, acknowledgements and users'
//! channels share one hash slot.
//!
//! Each round reads, in order: this consumer's own pending entries (at start
//! and after a failure), entries other consumers left idle for
//! `claim_min_idle` (every `claim_interval`), then new entries by lane
//! priority (see [`crate::lanes`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Lane, NewNotification, NotificationFrame, Priority, ServerFrame, Shard, published};
use platform::db::{DbError, DbPool};
use platform::redis::{ReadFrom, RedisError, RedisStore, StreamEntry};
use platform::rendering::{Renderer, TemplateLookupError, Wanted};
use platform::retry::{Cancelled, Retry, sleep_or_cancel};
use platform::storage::dead_letters::{self, NewDeadLetter};
use platform::storage::notifications::{self, Prepared, StoredBatch, Unprepared};
use platform::telemetry::traceparent;
use tokio_util::sync::CancellationToken;

use crate::lanes::LanePolicy;
use crate::metrics::{Outcome, WorkerMetrics, lane};
use crate::round_trace::RoundTrace;

pub struct Consumer {
    pub name: String,
    /// The shard whose lanes it reads.
    pub shard: Shard,
    /// The lanes this consumer reads: all of them, or only `high` for the
    /// express consumer.
    pub reads: &'static [Priority],
    /// Whether it takes over entries of dead consumers (one per process
    /// does: two would take in-flight entries from each other).
    pub claims: bool,
    pub db: DbPool,
    /// Serves acks, publishes, claims and dead letters.
    pub redis: RedisStore,
    /// Its own connection: the blocking read must not stall `redis`.
    pub reader: RedisStore,
    pub lanes: LanePolicy,
    pub block: Duration,
    pub claim_min_idle: Duration,
    pub claim_interval: Duration,
    pub max_deliveries: u64,
    pub metrics: Arc<WorkerMetrics>,
    /// Shared by every consumer of the process.
    pub renderer: Renderer,
}

/// The round's compiled templates by (key, version), or why one cannot be used.
type Templates = HashMap<(String, i32), Result<Arc<templates::Template>, String>>;

/// A round after decoding: what can be stored, and what never can.
struct Sorted {
    notifications: Vec<(StreamEntry, NewNotification)>,
    dead: Vec<(StreamEntry, String)>,
}

/// Why a round was not acknowledged.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("shutdown requested before the round committed")]
    Cancelled,
}

/// Where the next round's entries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    OwnPending,
    Claim,
    /// New entries, lane by lane (high first), then blocking if none.
    New,
    /// The last round was short, so the lanes were about empty: block on
    /// all of them at once instead of probing each first (three round trips
    /// saved per round when traffic is light).
    Waiting,
}

impl Consumer {
    /// Runs until `shutdown` is cancelled; the round in hand is finished first.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.name, shard = %self.shard, "consuming");
        let mut source = Source::OwnPending;
        let mut next_claim = Instant::now();
        let mut read_retry = Retry::new(&shutdown);
        while !shutdown.is_cancelled() {
            let reading_new = |source| matches!(source, Source::New | Source::Waiting);
            if reading_new(source) && self.claims && Instant::now() >= next_claim {
                source = Source::Claim;
                next_claim = Instant::now() + self.claim_interval;
            }
            let reading_new = reading_new(source);
            let entries = match self.fetch(source).await {
                Ok(entries) => entries,
                Err(err) if err.is_missing_group() => {
                    tracing::warn!(%err, "consumer group missing; recreating it");
                    if let Err(err) = self.redis.ensure_consumer_group().await {
                        tracing::warn!(%err, "cannot recreate the consumer group");
                        sleep_or_cancel(Duration::from_secs(1), &shutdown).await;
                    }
                    continue;
                }
                Err(err) => {
                    // Cancelled: the loop ends at its condition.
                    let _ = read_retry.after("cannot read the streams", &err).await;
                    continue;
                }
            };
            read_retry = Retry::new(&shutdown);
            if entries.is_empty() {
                source = if reading_new {
                    Source::Waiting
                } else {
                    Source::New
                };
                continue;
            }
            let full = entries.len() >= self.waiting_count();
            match self.process(entries, &shutdown).await {
                // Keep draining the same source until it is empty; new
                // entries lane by lane only while rounds come back full.
                Ok(()) if reading_new => {
                    source = if full { Source::New } else { Source::Waiting };
                }
                Ok(()) => {}
                Err(RoundError::Cancelled) => break,
                Err(err) => {
                    tracing::warn!(%err, "round not acknowledged; it will be re-read");
                    source = Source::OwnPending;
                }
            }
        }
        tracing::info!(consumer = %self.name, shard = %self.shard, "stopped consuming");
    }

    fn lane(&self, priority: Priority) -> Lane {
        Lane {
            shard: self.shard,
            priority,
        }
    }

    /// Entries asked of each lane by a `Waiting` read, so that the round
    /// stays within the batch; a round this long means a lane may hold more,
    /// so the next one goes lane by lane again.
    fn waiting_count(&self) -> usize {
        self.lanes.batch_size.div_ceil(self.reads.len().max(1))
    }

    /// One blocking read of new entries over all this consumer's lanes,
    /// on its own connection. COUNT applies per stream: the batch is split
    /// over the lanes.
    async fn read_waiting(&self) -> Result<Vec<StreamEntry>, RedisError> {
        self.reader
            .read_lanes(
                &self.name,
                self.shard,
                self.reads,
                ReadFrom::New,
                self.waiting_count(),
                self.block,
            )
            .await
    }

    async fn fetch(&self, source: Source) -> Result<Vec<StreamEntry>, RedisError> {
        let batch = self.lanes.batch_size;
        match source {
            Source::OwnPending => {
                self.reader
                    .read_lanes(
                        &self.name,
                        self.shard,
                        self.reads,
                        ReadFrom::OwnPending,
                        batch,
                        self.block,
                    )
                    .await
            }
            Source::Claim => {
                let mut claimed = Vec::new();
                for priority in Priority::ALL {
                    let entries = self
                        .redis
                        .claim_stale(&self.name, self.lane(priority), self.claim_min_idle, batch)
                        .await?;
                    if !entries.is_empty() {
                        tracing::info!(%priority, count = entries.len(), "claimed entries of a dead or stuck consumer");
                        self.metrics
                            .claimed
                            .get_or_create(&lane(priority))
                            .inc_by(entries.len() as u64);
                    }
                    claimed.extend(entries);
                }
                Ok(claimed)
            }
            Source::Waiting => self.read_waiting().await,
            Source::New => {
                let mut round = Vec::new();
                for &priority in self.reads {
                    let want = self.lanes.want(priority, round.len());
                    round.extend(
                        self.redis
                            .read_lane(&self.name, self.lane(priority), want)
                            .await?,
                    );
                }
                if round.is_empty() {
                    round = self.read_waiting().await?;
                }
                Ok(round)
            }
        }
    }

    /// Stores, publishes and acknowledges one round.
    async fn process(
        &self,
        entries: Vec<StreamEntry>,
        shutdown: &CancellationToken,
    ) -> Result<(), RoundError> {
        let started = Instant::now();
        let mut trace = RoundTrace::start(&self.name, entries.len());
        let Sorted {
            notifications,
            mut dead,
        } = self.sort(&entries);
        for (_, n) in &notifications {
            trace.follow(n.id, n.traceparent.as_deref());
        }
        let templates = self.load_templates(&notifications, shutdown).await?;
        let inserting = trace.stage("database insert");
        let (stored, refused) = self.store(&notifications, &templates, shutdown).await?;
        drop(inserting);
        dead.extend(refused);
        self.dead_letter(&dead, shutdown).await?;

        let mut publishing = Vec::new();
        let frames: Vec<(&str, String)> = stored
            .visible
            .iter()
            .map(|n| {
                let span = trace.stage_of(&n.id, "publish");
                let context = span.as_ref().and_then(traceparent::of);
                publishing.extend(span);
                let counts = stored.counts.get(&n.user_id).cloned();
                let frame =
                    ServerFrame::Notification(NotificationFrame::live(n.clone(), counts)).to_json();
                (
                    n.user_id.as_str(),
                    published::encode(frame, context.as_deref()),
                )
            })
            .collect();
        self.redis.publish_and_ack(&frames, &entries).await?;
        drop(publishing);

        let dead_entries: HashSet<&str> = dead.iter().map(|(e, _)| e.id.as_str()).collect();
        let done = || {
            notifications
                .iter()
                .filter(|(entry, _)| !dead_entries.contains(entry.id.as_str()))
        };
        let now = Utc::now();
        for (_, n) in done() {
            let age = (now - n.created_at).to_std().unwrap_or_default();
            self.metrics.delivery_seconds.observe(age.as_secs_f64());
        }
        self.count_outcomes(done(), &stored, &dead);
        self.metrics.batches.inc();
        self.metrics.batch_size.observe(entries.len() as f64);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            entries = entries.len(),
            stored = stored.inserted,
            duplicates = stored.duplicates.len(),
            expired = stored.expired.len(),
            dead = dead.len(),
            "round done"
        );
        Ok(())
    }

    /// Counts the round's outcomes: `done` are its notifications that did
    /// not become dead letters.
    fn count_outcomes<'a>(
        &self,
        done: impl Iterator<Item = &'a (StreamEntry, NewNotification)>,
        stored: &StoredBatch,
        dead: &[(StreamEntry, String)],
    ) {
        let mut counted = HashSet::new();
        for (entry, n) in done {
            let outcome = if stored.expired.contains(&n.id) {
                Outcome::Expired
            } else if stored.duplicates.contains(&n.id) || !counted.insert(n.id) {
                Outcome::Duplicate
            } else {
                Outcome::Stored
            };
            self.metrics.count(entry.priority, outcome, 1);
        }
        for (entry, _) in dead {
            self.metrics.count(entry.priority, Outcome::DeadLettered, 1);
        }
    }

    /// Splits a round into notifications to store and entries that can never be.
    fn sort(&self, entries: &[StreamEntry]) -> Sorted {
        let mut sorted = Sorted {
            notifications: Vec::with_capacity(entries.len()),
            dead: Vec::new(),
        };
        for entry in entries {
            // Acknowledged with the round (see `process`).
            if entry.deleted {
                tracing::debug!(entry = %entry.id, "entry deleted while pending (an erased user's)");
                continue;
            }
            if entry.deliveries > self.max_deliveries {
                sorted.dead.push((
                    entry.clone(),
                    format!(
                        "delivered {} times, more than max_deliveries ({})",
                        entry.deliveries, self.max_deliveries
                    ),
                ));
                continue;
            }
            let decoded = match &entry.payload {
                Some(payload) => {
                    NewNotification::decode_entry(payload.as_bytes()).map_err(|e| match e {
                        domain::RequestError::InvalidFields(errors) => errors
                            .iter()
                            .map(|f| format!("{}: {}", f.field, f.message))
                            .collect::<Vec<_>>()
                            .join("; "),
                        other => other.to_string(),
                    })
                }
                None => Err("entry has no notification field".to_owned()),
            };
            match decoded {
                Ok(notification) => sorted.notifications.push((entry.clone(), notification)),
                Err(error) => sorted.dead.push((entry.clone(), error)),
            }
        }
        sorted
    }

    /// Renders a templated notification in its user's language and marks it
    /// muted when the user muted its category; called while storing, with
    /// the user's preferences. A template that cannot be found or rendered
    /// can never succeed: the error makes the entry a dead letter.
    fn prepare(
        &self,
        notification: &NewNotification,
        preferences: Option<&domain::Preferences>,
        templates: &Templates,
    ) -> Result<Prepared, String> {
        let mut notification = notification.clone();
        let muted = match (&notification.category, preferences) {
            (Some(category), Some(p)) => p.muted_categories.contains(category),
            _ => false,
        };
        let mut locale = None;
        if let Some(template_ref) = &notification.template {
            let compiled = templates
                .get(&(template_ref.key.clone(), template_ref.version))
                .cloned()
                .unwrap_or_else(|| Err("template not loaded".into()));
            let wanted = Wanted {
                request: template_ref.locale.as_deref(),
                user: preferences.and_then(|p| p.locale.as_deref()),
            };
            let rendered = compiled
                .and_then(|t| self.renderer.render(&t, wanted, &template_ref.params))
                .map_err(|error| {
                    format!(
                        "template `{}` v{}: {error}",
                        template_ref.key, template_ref.version
                    )
                })?;
            notification.title = rendered.title;
            notification.body = rendered.body;
            locale = Some(rendered.locale);
        }
        Ok(Prepared {
            notification,
            locale,
            muted,
        })
    }

    /// The round's templates (from the cache, or PostgreSQL on a miss),
    /// retrying transient failures.
    async fn load_templates(
        &self,
        notifications: &[(StreamEntry, NewNotification)],
        shutdown: &CancellationToken,
    ) -> Result<Templates, RoundError> {
        let mut wanted: Vec<(String, i32)> = notifications
            .iter()
            .filter_map(|(_, n)| n.template.as_ref().map(|t| (t.key.clone(), t.version)))
            .collect();
        if wanted.is_empty() {
            return Ok(Templates::new());
        }
        wanted.sort();
        wanted.dedup();
        let mut retry = self.retry(shutdown);
        loop {
            let attempt = async {
                let mut conn = self.db.get().await?;
                let mut templates = Templates::new();
                for (key, version) in &wanted {
                    let compiled = match self.renderer.version(&mut conn, key, *version).await {
                        Ok(compiled) => Ok(compiled),
                        Err(TemplateLookupError::Db(err)) => return Err(err),
                        Err(err) => Err(err.to_string()),
                    };
                    templates.insert((key.clone(), *version), compiled);
                }
                Ok::<_, DbError>(templates)
            };
            match attempt.await {
                Ok(templates) => return Ok(templates),
                Err(err) => retry.after("cannot load templates", &err).await?,
            }
        }
    }

    /// Prepares and stores the notifications in one transaction, retrying
    /// transient failures. Returns what was stored and the entries that can
    /// never be: unrenderable ones, and, if the database refuses the batch
    /// while healthy, the ones it refuses when stored one by one.
    async fn store(
        &self,
        batch: &[(StreamEntry, NewNotification)],
        templates: &Templates,
        shutdown: &CancellationToken,
    ) -> Result<(StoredBatch, Vec<(StreamEntry, String)>), RoundError> {
        let unprepared_entries = |part: &[(StreamEntry, NewNotification)],
                                  unprepared: Vec<Unprepared>| {
            unprepared
                .into_iter()
                .map(|(index, error)| (part[index].0.clone(), error))
                .collect::<Vec<_>>()
        };
        match self.store_retrying(batch, templates, shutdown).await? {
            Ok((stored, unprepared)) => Ok((stored, unprepared_entries(batch, unprepared))),
            Err(refusal) => {
                tracing::warn!(%refusal, "the database refused a batch; storing its entries one by one");
                let mut total = StoredBatch::default();
                let mut refused = Vec::new();
                for item in batch {
                    let one = std::slice::from_ref(item);
                    match self.store_retrying(one, templates, shutdown).await? {
                        Ok((stored, unprepared)) => {
                            total.merge(stored);
                            refused.extend(unprepared_entries(one, unprepared));
                        }
                        Err(err) => refused
                            .push((item.0.clone(), format!("refused by the database: {err}"))),
                    }
                }
                Ok((total, refused))
            }
        }
    }

    /// `Ok(Ok)` stored; `Ok(Err)` refused by a healthy database (a data
    /// error: retrying will not help); `Err` cancelled during retries.
    async fn store_retrying(
        &self,
        batch: &[(StreamEntry, NewNotification)],
        templates: &Templates,
        shutdown: &CancellationToken,
    ) -> Result<Result<(StoredBatch, Vec<Unprepared>), DbError>, RoundError> {
        let notifications: Vec<&NewNotification> = batch.iter().map(|(_, n)| n).collect();
        let prepare = |index: usize, preferences: Option<&domain::Preferences>| {
            self.prepare(notifications[index], preferences, templates)
        };
        let mut retry = self.retry(shutdown);
        let mut refusals = 0;
        loop {
            let attempt = async {
                let mut conn = self.db.get().await?;
                notifications::store_preparing(&mut conn, &notifications, Utc::now(), prepare).await
            };
            let err = match attempt.await {
                Ok(stored) => return Ok(Ok(stored)),
                Err(err) => err,
            };
            // A constraint violation from a database that answers a ping is
            // the data's fault; twice in a row, it is not going away. Anything
            // else (deadlock, timeout, lost connection) is retried.
            if err.is_refusal() && platform::db::ping(&self.db).await.is_ok() {
                refusals += 1;
                if refusals >= 2 {
                    return Ok(Err(err));
                }
            }
            let what = format!("cannot store a batch of {}", batch.len());
            retry.after(&what, &err).await?;
        }
    }

    /// Records dead letters in PostgreSQL (retrying transient failures) and
    /// copies them to the dead-letter stream.
    async fn dead_letter(
        &self,
        dead: &[(StreamEntry, String)],
        shutdown: &CancellationToken,
    ) -> Result<(), RoundError> {
        if dead.is_empty() {
            return Ok(());
        }
        let records: Vec<NewDeadLetter> = dead
            .iter()
            .map(|(entry, error)| {
                NewDeadLetter::new(
                    entry.shard,
                    entry.priority,
                    &entry.id,
                    entry.payload.as_deref().unwrap_or_default(),
                    error,
                    entry.deliveries,
                )
            })
            .collect();
        let mut retry = self.retry(shutdown);
        loop {
            let attempt = async {
                let mut conn = self.db.get().await?;
                dead_letters::record(&mut conn, &records).await
            };
            match attempt.await {
                Ok(()) => break,
                Err(err) => retry.after("cannot record dead letters", &err).await?,
            }
        }
        for (entry, error) in dead {
            tracing::error!(entry = %entry.id, priority = %entry.priority, deliveries = entry.deliveries, %error, "entry moved to the dead letters");
            self.redis.dead_letter(entry, error).await?;
            self.metrics.dead_letters.inc();
        }
        Ok(())
    }
}

impl Consumer {
    /// Waits between the attempts of a round's step that failed
    /// transiently: the shared backoff, each retry counted in the retries
    /// metric, [`RoundError::Cancelled`] when shutdown comes first.
    fn retry<'a>(&'a self, shutdown: &'a CancellationToken) -> Retry<'a> {
        Retry::new(shutdown).counting(&self.metrics.retries)
    }
}

impl From<Cancelled> for RoundError {
    fn from(Cancelled: Cancelled) -> Self {
        RoundError::Cancelled
    }
}
