import type { SeqStorage } from "./types.js";

/** globalThis.localStorage when there is one (and it may be used), else an in-memory store. */
export function defaultStorage(): SeqStorage {
  try {
    if (globalThis.localStorage) return globalThis.localStorage;
  } catch {
    // localStorage access can throw (blocked cookies, sandboxed frames)
  }
  const map = new Map<string, string>();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) };
}

const key = (userId: string) => "herald:seq:" + userId;

/** The stored last seq of a user, -1 when unknown. */
export function loadSeq(storage: SeqStorage | null, userId: string): number {
  try {
    const n = parseInt(storage?.getItem(key(userId)) ?? "", 10);
    return n >= 0 ? n : -1;
  } catch {
    return -1;
  }
}

/**
 * Stores a user's last seq. The stored value only grows (another tab may be
 * further ahead), unless `force` (the server's sequence was reset).
 */
export function saveSeq(storage: SeqStorage | null, userId: string | null, seq: number, force = false): void {
  if (!storage || !userId || seq < 0) return;
  try {
    if (force || seq > loadSeq(storage, userId)) storage.setItem(key(userId), String(seq));
  } catch {
    // quota or privacy mode: resuming falls back to this session's memory
  }
}
