import type {
  ChangeResult,
  ConnectionStatus,
  Counts,
  HeraldClient,
  HeraldEvents,
  InboxPage,
  ListQuery,
  Notification,
  Preferences,
  UnreadState,
} from "@herald/client";

type Listener = (value: never) => void;

/** Counts with `unread` unread ones, `unseen` of them unseen (default: all), no categories. */
export function counts(unread: number, unseen = unread): Counts {
  return { unread, unseen, by_category: {} };
}

/** A HeraldClient without a network: tests set the answers and emit events by hand. */
export class FakeClient implements HeraldClient {
  status: ConnectionStatus = "connected";
  counts: Counts = counts(0);
  version = 0;
  lastSeq = 0;
  trimmedThrough = 0;
  userId: string | null = "alice";

  /** Every list() call, in order. */
  listCalls: ListQuery[] = [];
  markReadCalls: string[][] = [];
  markAllReadCalls = 0;
  archiveCalls: string[] = [];
  /** Answers list(): by default the queued pages, in order. */
  listImpl: (q: ListQuery) => Promise<InboxPage> = () => {
    const page = this.pages.shift();
    return page === undefined ? Promise.resolve({ items: [], next_before: null }) : page();
  };
  /** Queued answers, made when asked for (a queued failure is no unhandled rejection). */
  pages: (() => Promise<InboxPage>)[] = [];
  failMarkRead = false;

  private listeners = new Map<string, Set<Listener>>();

  queuePage(items: Notification[], nextBefore: number | null = null): void {
    this.pages.push(() => Promise.resolve({ items, next_before: nextBefore }));
  }

  queueFailure(error: Error): void {
    this.pages.push(() => Promise.reject(error));
  }

  get unread(): number {
    return this.counts.unread;
  }

  get unseen(): number {
    return this.counts.unseen;
  }

  emit<K extends keyof HeraldEvents>(event: K, value: HeraldEvents[K]): void {
    if (event === "unread" || event === "read" || event === "archived" || event === "seen") {
      this.counts = (value as HeraldEvents["unread"]).counts;
    } else if (event === "status") {
      this.status = value as ConnectionStatus;
    }
    for (const l of [...(this.listeners.get(event) ?? [])]) (l as (v: HeraldEvents[K]) => void)(value);
  }

  listenerCount(event: keyof HeraldEvents): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  items(): Notification[] {
    return [];
  }

  on<K extends keyof HeraldEvents>(event: K, listener: (value: HeraldEvents[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener);
    return () => {
      set.delete(listener as Listener);
    };
  }

  connect(): void {}
  close(): void {}

  list(query: ListQuery = {}): Promise<InboxPage> {
    this.listCalls.push({ ...query });
    return this.listImpl(query);
  }

  async markRead(ids: string[]): Promise<ChangeResult> {
    this.markReadCalls.push([...ids]);
    if (this.failMarkRead) throw new Error("unavailable");
    const unread = Math.max(0, this.unread - ids.length);
    return { ids, unread, version: ++this.version, counts: counts(unread, Math.min(unread, this.unseen)) };
  }

  async markAllRead(): Promise<ChangeResult> {
    this.markAllReadCalls++;
    return { ids: [], unread: 0, version: ++this.version, counts: counts(0) };
  }

  async archive(id: string): Promise<ChangeResult> {
    this.archiveCalls.push(id);
    return { ids: [id], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async markUnread(id: string): Promise<ChangeResult> {
    return { ids: [id], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async unarchive(id: string): Promise<ChangeResult> {
    return { ids: [id], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async archiveAll(): Promise<ChangeResult> {
    return { ids: [], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async unreadCount(): Promise<UnreadState> {
    return { unread: this.unread, version: this.version, last_seq: this.lastSeq, counts: this.counts };
  }

  async snooze(id: string): Promise<ChangeResult> {
    return { ids: [id], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async unsnooze(id: string): Promise<ChangeResult> {
    return { ids: [id], unread: this.unread, version: ++this.version, counts: this.counts };
  }

  async markSeen(): Promise<ChangeResult> {
    return { ids: [], unread: this.unread, version: ++this.version, counts: counts(this.unread, 0) };
  }

  async getPreferences(): Promise<Preferences> {
    return { locale: null, timezone: null, muted_categories: [] };
  }

  async putPreferences(p: Preferences): Promise<Preferences> {
    return p;
  }
}

/** A notification with seq `seq` (id "n<seq>"). */
export function note(seq: number, extra: Partial<Notification> = {}): Notification {
  return {
    id: `n${seq}`,
    user_id: "alice",
    seq,
    title: `Title ${seq}`,
    body: `Body ${seq}`,
    priority: "normal",
    category: null,
    data: null,
    created_at: new Date(Date.now() - 5 * 60_000).toISOString(),
    expires_at: null,
    ...extra,
  };
}

/** Newest first: note(to) … note(from). */
export function notes(from: number, to: number, extra: Partial<Notification> = {}): Notification[] {
  const out: Notification[] = [];
  for (let s = to; s >= from; s--) out.push(note(s, extra));
  return out;
}
