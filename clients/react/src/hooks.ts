import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import type {
  ChangeResult,
  ConnectionStatus,
  Counts,
  HeraldClient,
  HeraldEvents,
  ListQuery,
  Notification,
} from "@herald/client";
import { useHeraldClient } from "./context.js";
import { dropIds, isArchived, isRead, markIds, mergeItems, unmarkIds } from "./items.js";

/** The unread count: `client.unread`, kept current by the client's "unread" events. */
export function useUnreadCount(): number {
  const client = useHeraldClient();
  const subscribe = useCallback((onChange: () => void) => client.on("unread", onChange), [client]);
  return useSyncExternalStore(subscribe, () => client.unread, () => client.unread);
}

/** Every count (`unread`, `unseen`, `by_category`): `client.counts`, kept current by the client's "unread" events. */
export function useCounts(): Counts {
  const client = useHeraldClient();
  const subscribe = useCallback((onChange: () => void) => client.on("unread", onChange), [client]);
  return useSyncExternalStore(subscribe, () => client.counts, () => client.counts);
}

/** The connection status: `client.status`, kept current by the client's "status" events. */
export function useConnectionStatus(): ConnectionStatus {
  const client = useHeraldClient();
  const subscribe = useCallback((onChange: () => void) => client.on("status", onChange), [client]);
  return useSyncExternalStore(subscribe, () => client.status, () => client.status);
}

/**
 * Calls `listener` for every `event` of the client while the component is
 * mounted. The latest `listener` is always used; it need not be memoised.
 */
export function useHeraldEvent<K extends keyof HeraldEvents>(
  event: K,
  listener: (value: HeraldEvents[K]) => void,
): void {
  const client = useHeraldClient();
  const latest = useRef(listener);
  useEffect(() => {
    latest.current = listener;
  });
  useEffect(() => client.on(event, (value) => latest.current(value)), [client, event]);
}

export interface UseNotificationsOptions {
  /** Only unread notifications (`unread=true`). */
  unread?: boolean;
  /** Only this category; `undefined`, `null` or `""` for all. */
  category?: string | null;
  /** `"delivered"` (the server's default) or `"current"` (templated ones rendered again in the user's current locale). */
  render?: "delivered" | "current";
  /** Items per page, 1..=100 (default 20). */
  pageSize?: number;
}

export interface UseNotificationsResult {
  /** Newest first, each id once, archived ones left out. */
  items: Notification[];
  /** A page (the first one, a refresh or `loadMore`) is being fetched. */
  loading: boolean;
  /** Why the last page fetch failed; `null` after a success. */
  error: Error | null;
  /** There are older pages (`next_before` of the last page was not `null`). */
  hasMore: boolean;
  /** Fetches the next older page; does nothing while loading or when there is none. */
  loadMore(): Promise<void>;
  /** Lists the first page again, replacing the items (e.g. after a locale change with `render: "current"`). */
  refresh(): Promise<void>;
  /** Repeats the fetch that failed: the first page (`refresh`) or the next one (`loadMore`). */
  retry(): Promise<void>;
  /** Marks read (optimistically; undone if the request fails, which rejects). */
  markRead(ids: string | readonly string[]): Promise<ChangeResult | null>;
  /** Marks everything read (optimistically; undone if the request fails, which rejects). */
  markAllRead(): Promise<ChangeResult>;
  /** Archives one (it leaves the list at once; it comes back if the request fails, which rejects). */
  archive(id: string): Promise<ChangeResult>;
}

/** A state update marking `ids` (every item when `null`) read at `stamp`; the same state when nothing changed. */
function markedRead(ids: ReadonlySet<string> | null, stamp: string) {
  return (s: ListState): ListState => {
    const items = markIds(s.items, ids, stamp);
    return items === s.items ? s : { ...s, items };
  };
}

interface ListState {
  items: Notification[];
  nextBefore: number | null;
  /** The first page arrived (for the current filter). */
  loaded: boolean;
  loading: boolean;
  error: Error | null;
}

const EMPTY: ListState = { items: [], nextBefore: null, loaded: false, loading: true, error: null };

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * The inbox list: the first page from `client.list`, older pages with
 * `loadMore` (cursor `next_before`), live notifications that match the
 * filter merged in (newest first, each id once), and read / unread /
 * archived / unarchived changes from any device applied as they come (an
 * unarchived one comes back by listing the first page again).
 *
 * In the unread-only view an item that gets read stays (shown as read)
 * until the next `refresh` or filter change, so the list does not move under
 * the user's pointer; archived items leave every view at once.
 *
 * Read changes are not part of the resumable sequence, so when the client
 * reconnects after having been connected, the first page is listed again.
 */
export function useNotifications(options: UseNotificationsOptions = {}): UseNotificationsResult {
  const client = useHeraldClient();
  const unreadOnly = options.unread === true;
  const category = options.category ? options.category : undefined;
  const render = options.render;
  const pageSize = options.pageSize;

  const [state, setState] = useState<ListState>(EMPTY);

  // Read, unread-again and archived ids as this hook's latest events left
  // them: a page fetched before a change arrived would otherwise bring the
  // old state back. Events come in the order the server made the changes,
  // so the latest one of an id wins (a `read` takes it out of `knownUnread`,
  // an `unread` out of `knownRead`); `unarchived` takes ids out of
  // `knownArchived`.
  const known = useRef<{
    client: HeraldClient;
    read: Map<string, string>;
    unread: Set<string>;
    archived: Set<string>;
  } | null>(null);
  if (known.current === null || known.current.client !== client) {
    known.current = { client, read: new Map(), unread: new Set(), archived: new Set() };
  }
  const knownRead = known.current.read;
  const knownUnread = known.current.unread;
  const knownArchived = known.current.archived;
  /** Ids the server said are read (at `stamp` when not known before). */
  const learnRead = useCallback(
    (ids: readonly string[], stamp: string) => {
      for (const id of ids) {
        knownUnread.delete(id);
        if (!knownRead.has(id)) knownRead.set(id, stamp);
      }
    },
    [knownRead, knownUnread],
  );

  // Each first-page load (filter change or refresh) is a generation; answers
  // of an older generation are dropped.
  const gen = useRef(0);
  // Live notifications that arrived while the current generation's first page was in flight.
  const liveDuringLoad = useRef<Notification[]>([]);
  const firstInFlight = useRef(false);
  const moreInFlight = useRef<{ gen: number; promise: Promise<void> } | null>(null);
  const lastFailure = useRef<"first" | "more" | null>(null);
  const stateRef = useRef(state);
  stateRef.current = state;

  const baseQuery = useMemo((): ListQuery => {
    const q: ListQuery = {};
    if (unreadOnly) q.unread = true;
    if (category !== undefined) q.category = category;
    if (render !== undefined) q.render = render;
    if (pageSize !== undefined) q.limit = pageSize;
    return q;
  }, [unreadOnly, category, render, pageSize]);

  /** Applies what is known (read, archived) and the filter to items from the server or the socket. */
  const normalize = useCallback(
    (items: readonly Notification[]): Notification[] => {
      const out: Notification[] = [];
      for (const n of items) {
        // Deleted for good after the page was read (retention).
        if (n.seq <= client.trimmedThrough) continue;
        if (isArchived(n) || knownArchived.has(n.id)) continue;
        const readAt = knownRead.get(n.id);
        if (readAt !== undefined && !isRead(n)) out.push({ ...n, read_at: readAt });
        else if (knownUnread.has(n.id) && isRead(n)) out.push({ ...n, read_at: null });
        else out.push(n);
      }
      return out;
    },
    [client, knownRead, knownUnread, knownArchived],
  );

  const loadFirst = useCallback(
    async (clear: boolean): Promise<void> => {
      const my = ++gen.current;
      liveDuringLoad.current = [];
      firstInFlight.current = true;
      moreInFlight.current = null;
      setState((s) => (clear ? EMPTY : { ...s, loading: true, error: null }));
      try {
        const page = await client.list(baseQuery);
        if (my !== gen.current) return;
        firstInFlight.current = false;
        lastFailure.current = null;
        const items = normalize(mergeItems(liveDuringLoad.current, page.items));
        liveDuringLoad.current = [];
        setState({ items, nextBefore: page.next_before, loaded: true, loading: false, error: null });
      } catch (e) {
        if (my !== gen.current) return;
        firstInFlight.current = false;
        lastFailure.current = "first";
        setState((s) => ({ ...s, loading: false, error: toError(e) }));
      }
    },
    [client, baseQuery, normalize],
  );

  // First page whenever the client or the filter changes.
  useEffect(() => {
    void loadFirst(true);
    return () => {
      gen.current++; // drop answers for this filter
    };
  }, [loadFirst]);

  // Live changes.
  useEffect(() => {
    const offNotification = client.on("notification", (n) => {
      if (isArchived(n) || knownArchived.has(n.id)) return;
      if (category !== undefined && n.category !== category) return;
      if (unreadOnly && (isRead(n) || knownRead.has(n.id) || n.muted === true)) return;
      if (firstInFlight.current) liveDuringLoad.current.push(n);
      setState((s) => ({ ...s, items: normalize(mergeItems(s.items, [n])) }));
    });
    const offRead = client.on("read", (change) => {
      const stamp = new Date().toISOString();
      learnRead(change.ids, stamp);
      const ids = new Set(change.ids);
      setState(markedRead(ids, stamp));
    });
    const drop = (change: { ids: string[] }) => {
      const ids = new Set(change.ids);
      setState((s) => {
        const items = dropIds(s.items, ids);
        return items === s.items ? s : { ...s, items };
      });
    };
    const offArchived = client.on("archived", (change) => {
      for (const id of change.ids) knownArchived.add(id);
      drop(change);
    });
    // Snoozed ones come back with an `unsnoozed` event; expired ones never.
    const offSnoozed = client.on("snoozed", drop);
    const offExpired = client.on("expired", drop);
    // Deleted for good (retention): every one up to that seq.
    const offTrimmed = client.on("trimmed", ({ upToSeq }) => {
      setState((s) => {
        const items = s.items.filter((n) => n.seq > upToSeq);
        return items.length === s.items.length ? s : { ...s, items };
      });
    });
    const offUnread = client.on("markedUnread", (change) => {
      for (const id of change.ids) {
        knownRead.delete(id);
        knownUnread.add(id);
      }
      const ids = new Set(change.ids);
      setState((s) => {
        const items = unmarkIds(s.items, ids);
        return items === s.items ? s : { ...s, items };
      });
      // In the unread-only view, ones read before this page loaded are not
      // in it: list it again so they come back in their place.
      if (unreadOnly && change.ids.some((id) => !stateRef.current.items.some((n) => n.id === id))) {
        void loadFirst(false);
      }
    });
    const offUnarchived = client.on("unarchived", (change) => {
      for (const id of change.ids) knownArchived.delete(id);
      // Back in the list, in their place: list the first page again.
      void loadFirst(false);
    });
    const offUnsnoozed = client.on("unsnoozed", () => void loadFirst(false));
    const offResync = client.on("resync", () => void loadFirst(false));
    // The user's data is gone: nothing to list until new ones arrive.
    const offErased = client.on("erased", () => {
      knownRead.clear();
      knownUnread.clear();
      knownArchived.clear();
      setState((s) => ({ ...s, items: [], nextBefore: null }));
    });
    let wasConnected = client.status === "connected";
    let lost = false;
    const offStatus = client.on("status", (status) => {
      if (status === "connected") {
        if (wasConnected && lost) void loadFirst(false);
        wasConnected = true;
        lost = false;
      } else if (status === "reconnecting" || status === "offline") {
        lost = true;
      }
    });
    return () => {
      offNotification();
      offRead();
      offArchived();
      offUnread();
      offUnarchived();
      offSnoozed();
      offExpired();
      offTrimmed();
      offUnsnoozed();
      offResync();
      offErased();
      offStatus();
    };
  }, [client, category, unreadOnly, normalize, loadFirst, learnRead]);

  const refresh = useCallback(() => loadFirst(false), [loadFirst]);

  const loadMore = useCallback((): Promise<void> => {
    const s = stateRef.current;
    const my = gen.current;
    if (moreInFlight.current !== null && moreInFlight.current.gen === my) return moreInFlight.current.promise;
    if (firstInFlight.current || !s.loaded || s.nextBefore === null) return Promise.resolve();
    const before = s.nextBefore;
    setState((st) => ({ ...st, loading: true, error: null }));
    const entry: { gen: number; promise: Promise<void> } = { gen: my, promise: Promise.resolve() };
    moreInFlight.current = entry;
    entry.promise = (async () => {
      try {
        const page = await client.list({ ...baseQuery, before });
        if (my !== gen.current) return;
        lastFailure.current = null;
        const incoming = normalize(page.items);
        setState((st) => ({
          ...st,
          items: mergeItems(st.items, incoming),
          nextBefore: page.next_before,
          loading: false,
          error: null,
        }));
      } catch (e) {
        if (my !== gen.current) return;
        lastFailure.current = "more";
        setState((st) => ({ ...st, loading: false, error: toError(e) }));
      } finally {
        if (moreInFlight.current === entry) moreInFlight.current = null;
      }
    })();
    return entry.promise;
  }, [client, baseQuery, normalize]);

  const retry = useCallback(
    () => (lastFailure.current === "more" ? loadMore() : loadFirst(false)),
    [loadMore, loadFirst],
  );

  const applyRead = useCallback(
    (ids: readonly string[]) => {
      if (ids.length === 0) return;
      const stamp = new Date().toISOString();
      learnRead(ids, stamp);
      const set = new Set(ids);
      setState(markedRead(set, stamp));
    },
    [learnRead],
  );

  /** Undoes an optimistic read: items still carrying `stamp` and not known read become unread again. */
  const undoRead = useCallback(
    (stamp: string) => {
      setState((s) => {
        let changed = false;
        const items = s.items.map((n) => {
          if (n.read_at === stamp && !knownRead.has(n.id)) {
            changed = true;
            const { read_at: _dropped, ...rest } = n;
            return rest as Notification;
          }
          return n;
        });
        return changed ? { ...s, items } : s;
      });
    },
    [knownRead],
  );

  const markRead = useCallback(
    async (idOrIds: string | readonly string[]): Promise<ChangeResult | null> => {
      const wanted = typeof idOrIds === "string" ? [idOrIds] : [...idOrIds];
      const held = new Map(stateRef.current.items.map((n) => [n.id, n]));
      const ids = wanted.filter((id) => {
        if (knownRead.has(id)) return false;
        const n = held.get(id);
        return n === undefined || !isRead(n);
      });
      if (ids.length === 0) return null;
      const stamp = new Date().toISOString();
      const set = new Set(ids);
      setState(markedRead(set, stamp));
      try {
        const result = await client.markRead(ids);
        applyRead(result.ids);
        // Ids the server did not change were already read (or are not ours).
        learnRead(ids, stamp);
        return result;
      } catch (e) {
        undoRead(stamp);
        throw e;
      }
    },
    [client, knownRead, learnRead, applyRead, undoRead],
  );

  const markAllRead = useCallback(async (): Promise<ChangeResult> => {
    const stamp = new Date().toISOString();
    setState(markedRead(null, stamp));
    try {
      const result = await client.markAllRead();
      // Items held when the call was made but not in `ids` were read already.
      applyRead(result.ids);
      return result;
    } catch (e) {
      undoRead(stamp);
      throw e;
    }
  }, [client, knownRead, applyRead, undoRead]);

  const archive = useCallback(
    async (id: string): Promise<ChangeResult> => {
      const removed = stateRef.current.items.find((n) => n.id === id);
      const set = new Set([id]);
      setState((s) => {
        const items = dropIds(s.items, set);
        return items === s.items ? s : { ...s, items };
      });
      try {
        const result = await client.archive(id);
        knownArchived.add(id);
        return result;
      } catch (e) {
        if (removed !== undefined && !knownArchived.has(id)) {
          setState((s) => ({ ...s, items: mergeItems(s.items, normalize([removed])) }));
        }
        throw e;
      }
    },
    [client, knownArchived, normalize],
  );

  return {
    items: state.items,
    loading: state.loading,
    error: state.error,
    hasMore: state.loaded && state.nextBefore !== null,
    loadMore,
    refresh,
    retry,
    markRead,
    markAllRead,
    archive,
  };
}
