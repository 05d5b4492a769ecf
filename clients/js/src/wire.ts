// Generated from the Rust types in crates/domain by ts-rs: do not edit.
// Regenerate with `make wire-types`; `make test` fails while this file is stale.

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

/**
 * Delivery lane. Each priority has its own stream so a backlog of `low`
 * never sits in front of `high`.
 */
export type Priority = "high" | "normal" | "low";

/**
 * A stored notification: the new one plus its place in the user's sequence.
 */
export type Notification = { id: string, user_id: string, 
/**
 * Position in this user's sequence: 1, 2, 3, ... without gaps.
 */
seq: number, title: string, body: string, priority: Priority, category: string | null, data: { [key in string]: JsonValue } | null, created_at: string, 
/**
 * When it stops being worth showing; `null` never expires.
 */
expires_at: string | null, 
/**
 * When the user read it; absent while unread (live frames never carry it).
 */
read_at?: string | null, 
/**
 * When the user first saw it (marked it seen, or read it); absent
 * while unseen (live frames never carry it).
 */
seen_at?: string | null, 
/**
 * When the user archived it; absent unless archived.
 */
archived_at?: string | null, 
/**
 * Snoozed until then: out of the list and the counts until it comes
 * back; absent unless snoozed.
 */
snoozed_until?: string | null, 
/**
 * The locale a template was rendered in; absent for plain notifications.
 */
locale?: string | null, 
/**
 * Stored while its category was muted: never pushed; counted only
 * while its category is not muted (muting is retroactive).
 */
muted?: boolean, };

/**
 * A category's part of [`Counts`].
 */
export type CategoryCounts = { unread: number, unseen: number, };

/**
 * What a user's badges show. A notification counts while it is listed
 * and neither archived nor muted: `unread` until it is read, `unseen`
 * until it is seen (marked seen, or read; a notification marked unread
 * again stays seen).
 */
export type Counts = { unread: number, 
/**
 * Never more than `unread`.
 */
unseen: number, 
/**
 * The same two per category; a category with neither is left out
 * (and notifications without a category are in no entry).
 */
by_category: { [key in string]: CategoryCounts }, };

/**
 * A notification as sent on the socket. A live one (published by the
 * transaction that stored it) also carries the user's counts and state
 * version right after that transaction; one sent from storage (resume,
 * gaps) carries neither.
 */
export type NotificationFrame = { 
/**
 * The user's unread count after the transaction that stored it (the
 * same as `counts.unread`).
 */
unread?: number | null, 
/**
 * The state version the counts belong to: keep the counts of the highest.
 */
version?: number | null, counts?: Counts | null, id: string, user_id: string, 
/**
 * Position in this user's sequence: 1, 2, 3, ... without gaps.
 */
seq: number, title: string, body: string, priority: Priority, category: string | null, data: { [key in string]: JsonValue } | null, created_at: string, 
/**
 * When it stops being worth showing; `null` never expires.
 */
expires_at: string | null, 
/**
 * When the user read it; absent while unread (live frames never carry it).
 */
read_at?: string | null, 
/**
 * When the user first saw it (marked it seen, or read it); absent
 * while unseen (live frames never carry it).
 */
seen_at?: string | null, 
/**
 * When the user archived it; absent unless archived.
 */
archived_at?: string | null, 
/**
 * Snoozed until then: out of the list and the counts until it comes
 * back; absent unless snoozed.
 */
snoozed_until?: string | null, 
/**
 * The locale a template was rendered in; absent for plain notifications.
 */
locale?: string | null, 
/**
 * Stored while its category was muted: never pushed; counted only
 * while its category is not muted (muting is retroactive).
 */
muted?: boolean, };

/**
 * Which notifications a change of state (on any device of the user, or
 * by a producer) changed, and the user's counts right after it: keep the
 * counts of the highest `version`.
 */
export type StateChange = { ids: Array<string>, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, };

/**
 * One notification's state in a [`ServerFrame::State`] frame: its last
 * change's `version` and every state field (absent: not set).
 */
export type ItemState = { id: string, seq: number, 
/**
 * The user's state version its last change made.
 */
version: number, read_at?: string, seen_at?: string, archived_at?: string, snoozed_until?: string, 
/**
 * Expired: gone from the inbox for good.
 */
expired?: boolean, };

/**
 * Machine-readable reason in an `error` frame.
 */
export type ErrorCode = "bad_frame" | "unsupported_data" | "frame_too_large" | "bad_token" | "too_many_ids" | "unavailable" | "rate_limited";

/**
 * Frames the gateway sends to a client.
 */
export type ServerFrame = { "type": "hello", user_id: string, 
/**
 * Notifications not read yet (the same as `counts.unread`).
 */
unread: number, 
/**
 * Highest `seq` stored for this user (0 when none).
 */
last_seq: number, 
/**
 * The user's state counter: bumped with every change of the counts.
 */
version: number, counts: Counts, 
/**
 * Every notification with `seq` up to this one was deleted for
 * good (older than the retention period; 0 when none was): drop
 * the ones held.
 */
trimmed_through: number, 
/**
 * Which inbox of the user `seq` counts in: an erased user's next
 * inbox has another (0: none yet). Resume with `epoch` beside
 * `since`; a held one that differs means what was held is gone.
 */
epoch: number, } | { "type": "notification" } & NotificationFrame | { "type": "read" } & StateChange | { "type": "archived" } & StateChange | { "type": "unread" } & StateChange | { "type": "unarchived" } & StateChange | { "type": "snoozed", ids: Array<string>, until: string, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, } | { "type": "unsnoozed" } & StateChange | { "type": "expired" } & StateChange | { "type": "trimmed", up_to_seq: number, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, } | { "type": "seen", up_to_seq: number, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, } | { "type": "muted", muted: Array<string>, unmuted: Array<string>, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, } | { "type": "state", items: Array<ItemState>, version: number, } | { "type": "resync" } | { "type": "erased" } | { "type": "pong" } | { "type": "error", code: ErrorCode, message: string, };

/**
 * Frames a client sends to the gateway.
 */
export type ClientFrame = { "type": "ping" } | { "type": "resume", since: number, } | { "type": "read", ids: Array<string>, } | { "type": "read_all", category?: string, before_seq?: number, } | { "type": "unread", ids: Array<string>, } | { "type": "seen", up_to_seq: number, } | { "type": "archive", ids: Array<string>, } | { "type": "unarchive", ids: Array<string>, } | { "type": "archive_all", category?: string, before_seq?: number, read?: boolean, } | { "type": "snooze", ids: Array<string>, until: string, } | { "type": "unsnooze", ids: Array<string>, } | { "type": "refresh", token: string, };

export type Preferences = { 
/**
 * BCP 47 locale to render templates in (`pt-BR`); `null`: the default.
 */
locale: string | null, 
/**
 * IANA time zone (`Europe/Warsaw`); `null`: unknown.
 */
timezone: string | null, 
/**
 * Notifications in these categories are stored but neither pushed nor counted unread.
 */
muted_categories: Array<string>, };

/**
 * One page of `GET /v1/me/notifications`.
 */
export type InboxPage = { 
/**
 * Newest first. Archived ones are left out.
 */
items: Array<Notification>, 
/**
 * Pass as `before` for the next page; `null` on the last page.
 */
next_before: number | null, };

/**
 * The user's read state (`GET /v1/me/unread-count`).
 */
export type UnreadState = { 
/**
 * The same as `counts.unread`.
 */
unread: number, 
/**
 * Bumped with every change of the counts: keep the highest.
 */
version: number, last_seq: number, counts: Counts, };

/**
 * `POST /v1/me/notifications/seen`: every notification with `seq` up to
 * `up_to_seq` was seen (the feed was opened).
 */
export type SeenRequest = { 
/**
 * The newest `seq` the user has seen; 0 or more.
 */
up_to_seq: number, };

/**
 * `POST /v1/me/notifications/{id}/snooze`: out of the list and the counts
 * until `until`.
 */
export type SnoozeRequest = { 
/**
 * RFC 3339, in the future and at most a year ahead.
 */
until: string, };

/**
 * The outcome of a change of state (read, unread, seen, archive, ...):
 * which notifications changed and the user's state after it.
 */
export type ChangeResult = { 
/**
 * The notifications this request changed (empty if none did).
 */
ids: Array<string>, 
/**
 * The same as `counts.unread`.
 */
unread: number, version: number, counts: Counts, };
