import type { HeraldError } from "./errors.js";
import type { ChangeResult, Counts, InboxPage, Notification, Preferences, StateChange, UnreadState } from "./wire.js";

/**
 * - `connecting`: opening the first socket after connect() (or after coming back online);
 * - `connected`: the socket is open;
 * - `reconnecting`: waiting to retry, or opening the retry socket;
 * - `offline`: the browser reports no network: no attempts until it is back;
 * - `closed`: before connect() or after close().
 */
export type ConnectionStatus = "connecting" | "connected" | "reconnecting" | "offline" | "closed";

/** Where the last seen `seq` is kept between page loads; `localStorage` fits. */
export interface SeqStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/**
 * A handler type whose parameter is checked bivariantly (like a method's), so
 * that the DOM's and the `ws` package's WebSocket, whose handlers take their
 * own event types, are assignable to {@link WebSocketLike}.
 */
type Handler<E> = { bivarianceHack(ev: E): void }["bivarianceHack"];

/** The part of the browser's WebSocket the client uses (the `ws` package's fits too). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

/** A WebSocket constructor: the browser's, or e.g. `WebSocket` from the `ws` package in Node. */
export type WebSocketFactory = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface HeraldClientOptions {
  /** The gateway's base URL, e.g. `"http://127.0.0.1:8083"` (`ws`/`wss` is derived from it). */
  url: string;
  /** Returns a JWT for the user; called before every connect, before `exp`, after close 4001 and after a REST 401. */
  getToken: () => string | Promise<string>;
  /** Where the last seq is kept per user. Default: `globalThis.localStorage` when present, else in memory; `null`: nowhere. */
  storage?: SeqStorage | null;
  /** Default: `globalThis.WebSocket` (Node 20 has none: pass one, e.g. from `ws`). */
  WebSocket?: WebSocketFactory;
  /** Default: `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Reconnect backoff: the window starts at `baseMs` (500) and doubles up to `capMs` (30000). */
  reconnect?: { baseMs?: number; capMs?: number };
  /** Get a new token this many seconds before the current one's `exp` (default 60). */
  refreshLeadSecs?: number;
  /** Connect at once (default true); otherwise call connect(). */
  autoConnect?: boolean;
  /** Jitter source in [0, 1), default `Math.random`. */
  random?: () => number;
}

/** Query of `GET /v1/me/notifications`. */
export interface ListQuery {
  /** Only `seq` below this: the previous page's `next_before`. */
  before?: number;
  /** 1..=100, default 20. */
  limit?: number;
  /** Only unread ones. */
  unread?: boolean;
  category?: string;
  /** `delivered` (default): the text as first delivered; `current`: rendered again now. */
  render?: "delivered" | "current";
  /** `active` (default): archived and snoozed ones left out; `archived` or `snoozed`: only those; `all`: every one. */
  status?: "active" | "archived" | "snoozed" | "all";
}

/** The feed was seen up to `upToSeq` (on any device): `unseen` dropped, `unread` stayed. */
export interface SeenChange {
  upToSeq: number;
  unread: number;
  version: number;
  counts: Counts;
}

/** Categories were muted or unmuted (on any device): the counts after it (a muted category leaves them at once). */
export interface MutedChange {
  muted: string[];
  unmuted: string[];
  unread: number;
  version: number;
  counts: Counts;
}

/** The counts changed (unread, unseen, per category); `version` only ever grows. */
export interface UnreadChange {
  /** The same as `counts.unread`. */
  unread: number;
  version: number;
  counts: Counts;
}

/** Which notifications `markAllRead` changes (all when empty). */
export interface BulkQuery {
  category?: string;
  /** Only `seq` below this: the newest one the screen showed plus one. */
  before_seq?: number;
}

/** Which notifications `archiveAll` changes (all when empty). */
export interface ArchiveAllQuery extends BulkQuery {
  /** Only read ones ("archive everything read"). */
  read?: boolean;
}

/** The events a state change emits. */
export type StateEvent = "read" | "markedUnread" | "archived" | "unarchived" | "snoozed" | "unsnoozed" | "expired";

/** Events of {@link HeraldClient.on}. */
export interface HeraldEvents {
  /** A new notification, once per id, in `seq` order. */
  notification: Notification;
  /** Notifications were read (from any device); `counts` and `version` are the state after the change. */
  read: StateChange;
  /** Notifications were marked unread again (the `unread` frame; the `unread` event is the count). */
  markedUnread: StateChange;
  archived: StateChange;
  unarchived: StateChange;
  /** Notifications were snoozed (out of items() and the counts until their `snoozed_until`). */
  snoozed: StateChange;
  /** Snoozed notifications came back (their time came, or unsnooze()): list them if not held. */
  unsnoozed: StateChange;
  /** Notifications expired: out of items() and the counts for good. */
  expired: StateChange;
  /**
   * After a reconnect the gateway could not tell what changed while away
   * (too many changes): the held items were dropped; list them again.
   * (Otherwise a reconnect brings every held item's state up to date.)
   */
  resync: { version: number };
  /**
   * The user's data was erased (a producer's `DELETE /v1/users/{id}`):
   * every held item and count was dropped; the client reconnects from
   * nothing at once.
   */
  erased: { userId: string | null };
  seen: SeenChange;
  /**
   * Every notification with `seq` up to `upToSeq` was deleted for good
   * (older than the server's retention period): out of items(); unread
   * ones left the counts (an `unread` event says so).
   */
  trimmed: { upToSeq: number };
  muted: MutedChange;
  /** The counts changed (any of them, not only `unread`). */
  unread: UnreadChange;
  status: ConnectionStatus;
  /** An `error` frame from the gateway, or a failure while (re)connecting or refreshing the token. */
  error: HeraldError;
}

export interface HeraldClient {
  readonly status: ConnectionStatus;
  /** Unread count of the highest `version` seen. */
  readonly unread: number;
  /** Unseen count (the badge that clears when the feed is opened) of the highest `version` seen. */
  readonly unseen: number;
  /** Every count (`unread`, `unseen`, `by_category`) of the highest `version` seen. */
  readonly counts: Counts;
  /** -1 before any state arrived. */
  readonly version: number;
  /** Highest `seq` delivered (or announced by `hello`), -1 when unknown. */
  readonly lastSeq: number;
  /**
   * Every notification up to this `seq` was deleted for good (retention; 0:
   * none known): drop listed ones at or below it (a page read before the
   * deletion may still hold them).
   */
  readonly trimmedThrough: number;
  /** The token's `sub`, null before the first token. */
  readonly userId: string | null;
  /** What the client holds (live notifications and list() pages): newest first, each id once, archived and snoozed ones left out. */
  items(): Notification[];
  /** Subscribes; returns the unsubscribe function. */
  on<K extends keyof HeraldEvents>(event: K, listener: (value: HeraldEvents[K]) => void): () => void;
  /** Opens the live connection (a no-op while one is open or opening); during a backoff wait it retries at once. */
  connect(): void;
  /** Closes the connection, stops every timer and listener. connect() may be called again. */
  close(): void;
  /** `GET /v1/me/notifications`; the items are merged into items(). */
  list(query?: ListQuery): Promise<InboxPage>;
  /** Marks each id read (`POST /v1/me/notifications/{id}/read`); the answer combines theirs. */
  markRead(ids: string[]): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/read-all`, optionally narrowed. */
  markAllRead(query?: BulkQuery): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/{id}/unread`: counted again unless archived or muted. */
  markUnread(id: string): Promise<ChangeResult>;
  archive(id: string): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/{id}/unarchive`: back in items(), counted again if unread. */
  unarchive(id: string): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/archive-all`, optionally narrowed (`read: true`: every read one). */
  archiveAll(query?: ArchiveAllQuery): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/{id}/snooze`: out of items() and the counts until `until` (in the future, at most a year ahead). */
  snooze(id: string, until: Date | string): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/{id}/unsnooze`: back now. */
  unsnooze(id: string): Promise<ChangeResult>;
  /** `POST /v1/me/notifications/seen`: the feed was seen up to `upToSeq` (default: the newest delivered). */
  markSeen(upToSeq?: number): Promise<ChangeResult>;
  unreadCount(): Promise<UnreadState>;
  getPreferences(): Promise<Preferences>;
  /** Replaces the preferences; answers what was stored. */
  putPreferences(p: Preferences): Promise<Preferences>;
}
