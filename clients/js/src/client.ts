import { backoffDelay, DEAD_MS, drainDelay, LIVENESS_CHECK_MS, PING_AFTER_MS, STABLE_MS } from "./backoff.js";
import { emitter } from "./emitter.js";
import { HeraldError } from "./errors.js";
import { rest } from "./rest.js";
import { defaultStorage, epochKey, loadEpoch, loadSeq, saveEpoch, saveSeq, seqKey } from "./storage.js";
import { decodeToken, refreshDelay } from "./token.js";
import type {
  HeraldClient,
  HeraldClientOptions,
  HeraldEvents,
  ListQuery,
  ArchiveAllQuery,
  BulkQuery,
  ConnectionStatus,
  StateEvent,
  WebSocketLike,
} from "./types.js";
import type {
  ChangeResult,
  Counts,
  InboxPage,
  ItemState,
  Notification,
  Preferences,
  ServerFrame,
  UnreadState,
} from "./wire.js";

/** The state-change frames: what each does to a held item, and the event it emits. */
type ChangeKind = "read" | "unread" | "archived" | "unarchived" | "snoozed" | "unsnoozed" | "expired";
const CHANGES: Record<ChangeKind, { field: "read_at" | "archived_at" | "snoozed_until" | null; set: boolean; event: StateEvent }> = {
  read: { field: "read_at", set: true, event: "read" },
  unread: { field: "read_at", set: false, event: "markedUnread" },
  archived: { field: "archived_at", set: true, event: "archived" },
  unarchived: { field: "archived_at", set: false, event: "unarchived" },
  snoozed: { field: "snoozed_until", set: true, event: "snoozed" },
  unsnoozed: { field: "snoozed_until", set: false, event: "unsnoozed" },
  // expired ones are dropped: they never come back
  expired: { field: null, set: true, event: "expired" },
};

const NO_COUNTS: Counts = { unread: 0, unseen: 0, by_category: {} };

/** The counts a frame carries; a gateway older than `counts` sends `unread` alone (nothing is ever seen there). */
const countsOf = (frame: { unread: number; counts?: Counts | null }): Counts =>
  frame.counts ?? { unread: frame.unread, unseen: frame.unread, by_category: {} };

/** How many delivered notification ids (and emitted change versions) are remembered to drop repeats. */
const REMEMBER = 1000;

/** How many items `items()` holds at most: the newest by seq (the rest is a `list()` away). */
const MAX_HELD = 1000;

/**
 * A notification that came without the count after it (sent from storage)
 * and is newer than what the held count includes is counted by asking the
 * gateway, once per burst, this long after the last one.
 */
const RECOUNT_MS = 250;

type Timer = ReturnType<typeof setTimeout> | undefined;

/** Adds to an insertion-ordered set, forgetting the oldest entries past REMEMBER. */
function remember<T>(set: Set<T>, value: T): void {
  set.add(value);
  if (set.size > REMEMBER) set.delete(set.values().next().value as T);
}

const toError = (e: unknown) => (e instanceof HeraldError ? e : new HeraldError(String((e as Error)?.message ?? e), { cause: e }));

/**
 * Creates a Herald client: one live connection for one user, resumed with
 * `since` after every disconnect, plus the inbox REST API.
 */
export function createHeraldClient(options: HeraldClientOptions): HeraldClient {
  const base = options.url.replace(/\/+$/, "");
  const storage = options.storage === undefined ? defaultStorage() : options.storage;
  const { baseMs = 500, capMs = 30_000 } = options.reconnect ?? {};
  const lead = options.refreshLeadSecs ?? 60;
  const random = options.random ?? Math.random;
  const events = emitter<HeraldEvents>();
  const g = globalThis as unknown as {
    WebSocket?: HeraldClientOptions["WebSocket"];
    navigator?: { onLine?: boolean };
    addEventListener?: (type: string, listener: () => void) => void;
    removeEventListener?: (type: string, listener: () => void) => void;
  };

  let status: ConnectionStatus = "closed";
  let counts: Counts = NO_COUNTS;
  let version = -1;
  let lastSeq = -1;
  let countedSeq = -1; // the highest seq the held count is known to include
  // The state version every held item's state is known to include (-1:
  // none); a reconnect asks for what changed since (`since_version`).
  let stateVersion = -1;
  let resumedState = false; // this socket was opened with since_version
  let trimmedThrough = 0; // every notification up to this seq was deleted (retention)
  let userId: string | null = null;
  let token: string | undefined;
  let socketToken: string | undefined; // the token the open socket was given (at connect or by refresh)
  let tokenPending: Promise<string> | null = null;

  let ws: WebSocketLike | null = null;
  let running = false; // between connect() and close()
  let opening = false; // waiting for getToken() before a socket exists
  let generation = 0; // bumped to cancel an opening in progress
  let attempt = 0;
  let openedAt = 0;
  let retryTimer: Timer;
  let refreshTimer: Timer;
  let recountTimer: Timer;
  let livenessTimer: ReturnType<typeof setInterval> | undefined;
  let lastFrameAt = 0;

  const held = new Map<string, Notification>();
  let seqStore: string | null = null; // the storage key of the user's last seq
  let epochStore: string | null = null; // ...and of the epoch of the inbox it counts in
  let epoch = 0; // the inbox lastSeq counts in (0: unknown)
  const delivered = new Set<string>();
  const emitted = new Set<string>();
  /** The version of the last change applied to each item's `read_at` / `archived_at` ("field:id"). */
  const changedAt = new Map<string, number>();

  const setStatus = (s: ConnectionStatus) => {
    if (s !== status) events.emit("status", (status = s));
  };
  const report = (e: unknown) => events.emit("error", toError(e));
  const isOffline = () => g.navigator?.onLine === false;

  // --- tokens -------------------------------------------------------------

  /** Calls getToken() (once for concurrent callers); a new `sub` starts that user's state. */
  const fetchToken = (): Promise<string> =>
    (tokenPending ??= Promise.resolve()
      .then(() => options.getToken())
      .then((t) => {
        const { sub } = decodeToken(t);
        token = t;
        if (sub && sub !== userId) {
          // Another user: start from that user's state, on a socket of theirs.
          const switching = userId !== null && ws !== null;
          userId = sub;
          seqStore = seqKey(sub, base);
          epochStore = epochKey(sub, base);
          forgetState();
          lastSeq = loadSeq(storage, seqStore);
          epoch = loadEpoch(storage, epochStore);
          if (switching) open();
        }
        return t;
      })
      .finally(() => (tokenPending = null)));

  /** Drops everything held of the user (another user signed in, or this one was erased). */
  const forgetState = () => {
    held.clear();
    delivered.clear();
    emitted.clear();
    counts = NO_COUNTS;
    version = -1;
    countedSeq = -1;
    stateVersion = -1;
    trimmedThrough = 0;
  };

  /** The user's inbox is gone (erased): drop everything held and count from seq 0 again. */
  const startOver = () => {
    forgetState();
    changedAt.clear();
    lastSeq = 0;
    saveSeq(storage, seqStore, 0, true);
    epoch = 0;
    saveEpoch(storage, epochStore, 0);
    resumedState = false;
    events.emit("erased", { userId });
  };

  /** The held token for REST while it is not about to expire, else a fresh one. */
  const restToken = (fresh: boolean) => (!fresh && token && !expiring(token) ? Promise.resolve(token) : fetchToken());
  const expiring = (t: string) => {
    const exp = decodeToken(t).exp;
    return exp !== undefined && (exp - lead) * 1000 <= Date.now();
  };

  const scheduleRefresh = () => {
    clearTimeout(refreshTimer);
    const delay = refreshDelay(decodeToken(token).exp, lead, Date.now());
    if (delay !== null) refreshTimer = setTimeout(refresh, delay);
  };

  /** Gets a new token and hands it to the open socket, before the current one expires. */
  const refresh = async () => {
    const socket = ws;
    try {
      const t = await fetchToken();
      // Compared with the socket's own token: a REST call may have fetched
      // this one already, and the socket still needs it.
      if (socket && ws === socket && socket.readyState === 1 && t !== socketToken) {
        socket.send(JSON.stringify({ type: "refresh", token: t }));
        socketToken = t;
      }
    } catch (e) {
      report(e);
    }
    if (socket && ws === socket) scheduleRefresh();
  };

  // --- state --------------------------------------------------------------

  /** Keeps the counts of the highest version. */
  const acceptCounts = (c: Counts, v: number) => {
    if (v > version) {
      counts = c;
      version = v;
      events.emit("unread", { unread: c.unread, version, counts: c });
    }
  };

  const merge = (n: Notification) => {
    if (n.seq <= trimmedThrough) return;
    held.set(n.id, { ...held.get(n.id), ...n });
    if (held.size > MAX_HELD * 1.1) {
      const newest = [...held.values()].sort((a, b) => b.seq - a.seq).slice(0, MAX_HELD);
      held.clear();
      for (const item of newest) held.set(item.id, item);
    }
  };

  /**
   * Applies a state change (frame or REST answer): item state always, the
   * count by version, the event once. `until` is a snooze's end.
   */
  const applyChange = (kind: ChangeKind, change: ChangeResult, until?: string) => {
    const { field, set, event } = CHANGES[kind];
    const at = set ? (until ?? new Date().toISOString()) : null;
    for (const id of change.ids) {
      // Changes can be undone (unread, unarchive) and arrive out of order
      // (two gateway instances, a REST answer racing its frame): an older
      // one than the item's last applied change is left out.
      const key = (field ?? "expired") + ":" + id;
      if ((changedAt.get(key) ?? -1) >= change.version) continue;
      changedAt.delete(key);
      changedAt.set(key, change.version);
      if (changedAt.size > REMEMBER) changedAt.delete(changedAt.keys().next().value as string);
      const n = held.get(id);
      if (!n) continue;
      if (field === null) held.delete(id);
      // Read ones are seen; unread again, they stay seen.
      else if (field === "read_at" && !n.read_at === set) held.set(id, { ...n, read_at: at, seen_at: n.seen_at ?? n.read_at ?? at });
      else if (field === "snoozed_until" && set) held.set(id, { ...n, snoozed_until: at });
      else if (!n[field] === set) held.set(id, { ...n, [field]: at });
    }
    const c = countsOf(change);
    acceptCounts(c, change.version);
    const key = kind + change.version;
    if (change.ids.length && !emitted.has(key)) {
      remember(emitted, key);
      events.emit(event, { ids: change.ids, unread: c.unread, version: change.version, counts: c });
    }
    return change;
  };

  /** One item's state from a `state` frame (a resumed connection): every field, if newer than what was applied. */
  const applyItem = (item: ItemState) => {
    const n = held.get(item.id);
    if (!n) return;
    if (item.expired) {
      held.delete(item.id);
      return;
    }
    const next = { ...n, seen_at: n.seen_at ?? item.seen_at ?? null };
    // A field changed live after this item's version keeps that change.
    for (const field of ["read_at", "archived_at", "snoozed_until"] as const) {
      const key = field + ":" + item.id;
      if ((changedAt.get(key) ?? -1) > item.version) continue;
      changedAt.set(key, item.version);
      next[field] = item[field] ?? null;
    }
    held.set(item.id, next);
  };

  /** The feed was seen up to `upToSeq` (a `seen` frame): held unseen ones up to it become seen. Never undone. */
  const applySeen = (upToSeq: number, c: Counts, v: number) => {
    const at = new Date().toISOString();
    for (const [id, n] of held) if (n.seq <= upToSeq && !n.seen_at) held.set(id, { ...n, seen_at: n.read_at ?? at });
    acceptCounts(c, v);
    const key = "seen" + v;
    if (!emitted.has(key)) {
      remember(emitted, key);
      events.emit("seen", { upToSeq, unread: c.unread, version: v, counts: c });
    }
  };

  /**
   * Notifications up to `upToSeq` were deleted for good (retention: a
   * `trimmed` frame, or a hello's `trimmed_through`): held ones go. Emitted
   * once per new floor.
   */
  const applyTrimmed = (upToSeq: number) => {
    if (upToSeq <= trimmedThrough) return;
    trimmedThrough = upToSeq;
    for (const [id, n] of held) if (n.seq <= upToSeq) held.delete(id);
    events.emit("trimmed", { upToSeq });
  };

  /** Counts covering `seq`: the held count includes every notification up to it. */
  const covered = (seq: number) => {
    countedSeq = Math.max(countedSeq, seq);
  };

  /** Asks the gateway for the count once a burst of uncounted notifications is over. */
  const recount = () => {
    clearTimeout(recountTimer);
    recountTimer = setTimeout(() => {
      if (lastSeq > countedSeq) client.unreadCount().catch(report);
    }, RECOUNT_MS);
  };

  const deliver = (n: Notification) => {
    // At or below the trimmed floor: deleted since it was read (a backlog
    // or page read before the trim), never shown again.
    if (n.seq <= lastSeq || n.seq <= trimmedThrough || delivered.has(n.id)) return;
    remember(delivered, n.id);
    merge(n);
    events.emit("notification", n);
    lastSeq = n.seq;
    saveSeq(storage, seqStore, lastSeq);
  };

  const onFrame = (data: unknown) => {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data as string);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello": {
        if (userId === null) {
          userId = frame.user_id;
          seqStore = seqKey(userId, base);
          epochStore = epochKey(userId, base);
        }
        // Another inbox than the one held (the user was erased while this
        // client was away): what it held is gone, and the gateway sends
        // this inbox from its start.
        const epochNow = frame.epoch ?? 0;
        if (epoch > 0 && epochNow !== epoch) startOver();
        epoch = epochNow;
        saveEpoch(storage, epochStore, epoch);
        const reset = frame.last_seq < lastSeq; // the server's storage was reset
        if (reset) version = countedSeq = -1;
        if (reset || lastSeq < 0) {
          lastSeq = frame.last_seq;
          saveSeq(storage, seqStore, lastSeq, reset);
        }
        acceptCounts(countsOf(frame), frame.version);
        covered(frame.last_seq);
        applyTrimmed(frame.trimmed_through ?? 0);
        // Nothing to catch up on: the held state is as of this hello.
        if (!resumedState || reset) stateVersion = frame.version;
        break;
      }
      case "state": {
        for (const item of frame.items) applyItem(item);
        stateVersion = Math.max(stateVersion, frame.version);
        break;
      }
      case "erased": {
        // The user's data is gone: start again from nothing (the gateway
        // closes with 4004 next, and the reconnect asks from seq 0).
        startOver();
        events.emit("unread", { unread: 0, version: 0, counts: NO_COUNTS });
        break;
      }
      case "resync": {
        // The gateway cannot tell what changed: drop the held items' state.
        held.clear();
        changedAt.clear();
        stateVersion = version;
        events.emit("resync", { version });
        break;
      }
      case "notification": {
        // Live frames carry the user's count right after storing them;
        // ones sent from storage do not, and are counted by asking.
        const { type: _, unread: u, version: v, counts: c, ...n } = frame;
        if (u != null && v != null) {
          acceptCounts(countsOf({ unread: u, counts: c }), v);
          covered(n.seq);
        }
        deliver(n);
        if (n.seq > countedSeq && !n.read_at && !n.archived_at) recount();
        break;
      }
      case "read":
      case "unread":
      case "archived":
      case "unarchived":
      case "unsnoozed":
      case "expired":
        applyChange(frame.type, frame);
        break;
      case "snoozed":
        applyChange("snoozed", frame, frame.until);
        break;
      case "seen":
        applySeen(frame.up_to_seq, frame.counts, frame.version);
        break;
      case "trimmed":
        acceptCounts(frame.counts, frame.version);
        applyTrimmed(frame.up_to_seq);
        break;
      case "muted": {
        const { type: _, ...change } = frame;
        acceptCounts(change.counts, change.version);
        events.emit("muted", change);
        break;
      }
      case "error":
        events.emit("error", new HeraldError(frame.message, { code: frame.code }));
    }
  };

  // --- the connection ------------------------------------------------------

  /** Drops the socket (without its close event) and every timer; cancels an opening in progress. */
  const stop = () => {
    generation++;
    opening = false;
    clearTimeout(retryTimer);
    clearTimeout(refreshTimer);
    clearTimeout(recountTimer);
    clearInterval(livenessTimer);
    retryTimer = refreshTimer = recountTimer = livenessTimer = undefined;
    const socket = ws;
    ws = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000);
      } catch {
        // already closed
      }
    }
  };

  const open = async () => {
    stop();
    const gen = generation;
    opening = true;
    setStatus(status === "reconnecting" ? "reconnecting" : "connecting");
    let t: string;
    try {
      t = await fetchToken();
    } catch (e) {
      if (gen !== generation) return;
      opening = false;
      report(e);
      return retry();
    }
    if (gen !== generation) return;
    opening = false;
    const WS = options.WebSocket ?? g.WebSocket!;
    resumedState = lastSeq >= 0 && stateVersion >= 0 && held.size > 0;
    const query =
      (lastSeq >= 0 ? "?since=" + lastSeq + (epoch > 0 ? "&epoch=" + epoch : "") : "") +
      (resumedState ? "&since_version=" + stateVersion : "");
    const url = base.replace(/^http/, "ws") + "/v1/ws" + query;
    let socket: WebSocketLike;
    try {
      socket = ws = new WS(url, ["herald.v1", "herald.token." + t]);
    } catch (e) {
      report(e);
      return retry();
    }
    socketToken = t;
    socket.onopen = () => {
      openedAt = lastFrameAt = Date.now();
      setStatus("connected");
      scheduleRefresh();
      livenessTimer = setInterval(() => checkLiveness(socket), LIVENESS_CHECK_MS);
    };
    socket.onmessage = (ev) => {
      lastFrameAt = Date.now();
      onFrame(ev.data);
    };
    socket.onclose = (ev) => {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      ws = null;
      clearTimeout(refreshTimer);
      clearInterval(livenessTimer);
      onClose(ev.code);
    };
  };

  /** A socket silent too long is asked for a pong, then given up as half-open. */
  const checkLiveness = (socket: WebSocketLike) => {
    if (ws !== socket) return;
    const silent = Date.now() - lastFrameAt;
    if (silent >= DEAD_MS) {
      stop();
      onClose(4408); // as if the gateway had timed it out: reconnect with since
    } else if (silent >= PING_AFTER_MS) {
      socket.send(JSON.stringify({ type: "ping" }));
    }
  };

  /** Decides what follows a close the client did not ask for. */
  const onClose = (code: number) => {
    if (openedAt && Date.now() - openedAt >= STABLE_MS) attempt = 0;
    openedAt = 0;
    if (code === 1012) {
      // Gateway draining: spread out over the drain window; one that drains
      // again right after the last time also counts as a failed attempt.
      const drain = drainDelay(random);
      retry(attempt++ === 0 ? drain : Math.max(drain, backoffDelay(attempt - 1, baseMs, capMs, random)));
    } else if (code === 4004) {
      attempt = 0; // erased: the fresh start connects at once
      setStatus("reconnecting");
      open();
    } else if (code === 4001 && !attempt) {
      attempt++; // token expired: a fresh one at once (a second quick 4001 backs off)
      setStatus("reconnecting");
      open();
    } else {
      retry();
    }
  };

  /** Waits, then reconnects with `since`; nothing while the browser is offline. */
  const retry = (delay?: number) => {
    if (isOffline()) return setStatus("offline");
    setStatus("reconnecting");
    retryTimer = setTimeout(open, delay ?? backoffDelay(attempt++, baseMs, capMs, random));
  };

  const goOffline = () => {
    stop();
    setStatus("offline");
  };
  const goOnline = () => {
    if (running && !ws && !opening) {
      attempt = 0;
      open();
    }
  };
  const listen = (add: boolean) => {
    const method = add ? g.addEventListener : g.removeEventListener;
    if (method && g.navigator && "onLine" in g.navigator) {
      method.call(g, "offline", goOffline);
      method.call(g, "online", goOnline);
    }
  };

  // --- REST ---------------------------------------------------------------

  const request = rest(base.replace(/^ws/, "http"), () => options.fetch ?? globalThis.fetch, restToken);
  const post = (path: string) => request<ChangeResult>("POST", "/v1/me/notifications/" + path);
  /** `?k=v&...` of the set fields (`""` when none). */
  const queryString = (query: object) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v != null && v !== false) params.set(k, String(v));
    const qs = String(params);
    return qs ? "?" + qs : "";
  };
  const id = encodeURIComponent;

  const client: HeraldClient = {
    get status() {
      return status;
    },
    get unread() {
      return counts.unread;
    },
    get unseen() {
      return counts.unseen;
    },
    get counts() {
      return counts;
    },
    get version() {
      return version;
    },
    get lastSeq() {
      return lastSeq;
    },
    get trimmedThrough() {
      return trimmedThrough;
    },
    get userId() {
      return userId;
    },
    items: () => [...held.values()].filter((n) => !n.archived_at && !n.snoozed_until).sort((a, b) => b.seq - a.seq),
    on: events.on,

    connect() {
      if (!(options.WebSocket ?? g.WebSocket)) {
        throw new HeraldError('no WebSocket: pass options.WebSocket (e.g. from the "ws" package)');
      }
      if (!running) {
        running = true;
        attempt = 0;
        listen(true);
      }
      if (ws || opening) return;
      if (isOffline()) return setStatus("offline");
      open();
    },

    close() {
      running = false;
      listen(false);
      stop();
      setStatus("closed");
    },

    async list(query: ListQuery = {}) {
      const page = await request<InboxPage>("GET", "/v1/me/notifications" + queryString(query));
      page.items.forEach(merge);
      return page;
    },

    async markRead(ids: string[]) {
      const answers = await Promise.all(ids.map((i) => post(id(i) + "/read").then((r) => applyChange("read", r))));
      // the held count is now the one of the highest version seen, these answers included
      return { ids: answers.flatMap((r) => r.ids), unread: counts.unread, version, counts };
    },
    markAllRead: (query: BulkQuery = {}) => post("read-all" + queryString(query)).then((r) => applyChange("read", r)),
    markUnread: (i: string) => post(id(i) + "/unread").then((r) => applyChange("unread", r)),
    archive: (i: string) => post(id(i) + "/archive").then((r) => applyChange("archived", r)),
    unarchive: (i: string) => post(id(i) + "/unarchive").then((r) => applyChange("unarchived", r)),
    snooze(i: string, until: Date | string) {
      const at = typeof until === "string" ? until : until.toISOString();
      return request<ChangeResult>("POST", "/v1/me/notifications/" + id(i) + "/snooze", { until: at }).then((r) =>
        applyChange("snoozed", r, at),
      );
    },
    unsnooze: (i: string) => post(id(i) + "/unsnooze").then((r) => applyChange("unsnoozed", r)),
    archiveAll: (query: ArchiveAllQuery = {}) =>
      post("archive-all" + queryString(query)).then((r) => applyChange("archived", r)),
    async markSeen(upToSeq?: number) {
      const up_to_seq = upToSeq ?? Math.max(lastSeq, 0);
      const answer = await request<ChangeResult>("POST", "/v1/me/notifications/seen", { up_to_seq });
      // The answer names what changed; held ones up to it were all seen.
      if (answer.ids.length) applySeen(up_to_seq, answer.counts, answer.version);
      else acceptCounts(answer.counts, answer.version);
      return answer;
    },

    async unreadCount() {
      const state = await request<UnreadState>("GET", "/v1/me/unread-count");
      acceptCounts(countsOf(state), state.version);
      covered(state.last_seq);
      return state;
    },
    getPreferences: () => request<Preferences>("GET", "/v1/me/preferences"),
    putPreferences: (p: Preferences) => request<Preferences>("PUT", "/v1/me/preferences", p),
  };

  if (options.autoConnect ?? true) client.connect();
  return client;
}
