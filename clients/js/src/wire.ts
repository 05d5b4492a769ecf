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
 * When the user archived it; absent unless archived.
 */
archived_at?: string | null, 
/**
 * The locale a template was rendered in; absent for plain notifications.
 */
locale?: string | null, 
/**
 * Stored while its category was muted: history only, never pushed or counted.
 */
muted?: boolean, };

/**
 * A notification as sent on the socket. A live one (published by the
 * transaction that stored it) also carries the user's unread count and
 * state version right after that transaction; one sent from storage
 * (resume, gaps) carries neither.
 */
export type NotificationFrame = { 
/**
 * The user's unread count after the transaction that stored it.
 */
unread?: number | null, 
/**
 * The state version `unread` belongs to: keep the count of the highest.
 */
version?: number | null, id: string, user_id: string, 
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
 * When the user archived it; absent unless archived.
 */
archived_at?: string | null, 
/**
 * The locale a template was rendered in; absent for plain notifications.
 */
locale?: string | null, 
/**
 * Stored while its category was muted: history only, never pushed or counted.
 */
muted?: boolean, };

/**
 * Machine-readable reason in an `error` frame.
 */
export type ErrorCode = "bad_frame" | "unsupported_data" | "frame_too_large" | "bad_token" | "too_many_ids" | "unavailable" | "rate_limited";

/**
 * Frames the gateway sends to a client.
 */
export type ServerFrame = { "type": "hello", user_id: string, 
/**
 * Notifications not read yet.
 */
unread: number, 
/**
 * Highest `seq` stored for this user (0 when none).
 */
last_seq: number, 
/**
 * The user's state counter: bumped with every change of unread state.
 */
version: number, } | { "type": "notification" } & NotificationFrame | { "type": "read", ids: Array<string>, unread: number, version: number, } | { "type": "archived", ids: Array<string>, unread: number, version: number, } | { "type": "unread", ids: Array<string>, unread: number, version: number, } | { "type": "unarchived", ids: Array<string>, unread: number, version: number, } | { "type": "pong" } | { "type": "error", code: ErrorCode, message: string, };

/**
 * Frames a client sends to the gateway.
 */
export type ClientFrame = { "type": "ping" } | { "type": "resume", since: number, } | { "type": "read", ids: Array<string>, } | { "type": "read_all", category?: string, before_seq?: number, } | { "type": "unread", ids: Array<string>, } | { "type": "refresh", token: string, };

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
export type UnreadState = { unread: number, 
/**
 * Bumped with every change of unread state: keep the highest.
 */
version: number, last_seq: number, };

/**
 * The outcome of a change of read state (read, read-all, archive): which
 * notifications changed and the user's state after it.
 */
export type ChangeResult = { 
/**
 * The notifications this request changed (empty if none did).
 */
ids: Array<string>, unread: number, version: number, };
