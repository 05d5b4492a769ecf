import type { Notification } from "@herald/client";

/**
 * Merges `incoming` into `base`: one entry per id (incoming wins, but a read
 * stays read: `read_at` only ever goes from absent to set), newest (highest
 * `seq`) first.
 */
export function mergeItems(base: readonly Notification[], incoming: readonly Notification[]): Notification[] {
  if (incoming.length === 0) return base as Notification[];
  const byId = new Map<string, Notification>();
  for (const n of base) byId.set(n.id, n);
  for (const n of incoming) {
    const old = byId.get(n.id);
    if (old !== undefined && isRead(old) && !isRead(n)) {
      byId.set(n.id, { ...n, read_at: old.read_at });
    } else {
      byId.set(n.id, n);
    }
  }
  return sortNewestFirst([...byId.values()]);
}

export function sortNewestFirst(items: Notification[]): Notification[] {
  return items.sort((a, b) => b.seq - a.seq);
}

export function isRead(n: Notification): boolean {
  return n.read_at !== undefined && n.read_at !== null;
}

export function isArchived(n: Notification): boolean {
  return n.archived_at !== undefined && n.archived_at !== null;
}

/** Marks the given ids read with `stamp`; returns `items` itself when nothing changed. */
export function markIds(items: Notification[], ids: ReadonlySet<string> | null, stamp: string): Notification[] {
  let changed = false;
  const next = items.map((n) => {
    if ((ids === null || ids.has(n.id)) && !isRead(n)) {
      changed = true;
      return { ...n, read_at: stamp };
    }
    return n;
  });
  return changed ? next : items;
}

/** Marks the given ids unread again; returns `items` itself when nothing changed. */
export function unmarkIds(items: Notification[], ids: ReadonlySet<string>): Notification[] {
  let changed = false;
  const next = items.map((n) => {
    if (!ids.has(n.id) || !isRead(n)) return n;
    changed = true;
    return { ...n, read_at: null };
  });
  return changed ? next : items;
}

/** Drops the given ids; returns `items` itself when nothing changed. */
export function dropIds(items: Notification[], ids: ReadonlySet<string>): Notification[] {
  const next = items.filter((n) => !ids.has(n.id));
  return next.length === items.length ? items : next;
}
