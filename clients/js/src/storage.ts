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

/**
 * Where a user's last seq is kept: per user and per gateway, so two Herald
 * deployments used from one origin (staging and production) never resume
 * from each other's sequence.
 */
export const seqKey = (userId: string, gateway: string) => `herald:seq:${userId}@${gateway}`;

/**
 * Where the epoch of the user's inbox that seq counts in is kept (an erased
 * user's next inbox has another one).
 */
export const epochKey = (userId: string, gateway: string) => `herald:epoch:${userId}@${gateway}`;

/** The stored epoch under `key`, 0 when unknown. */
export function loadEpoch(storage: SeqStorage | null, key: string): number {
  const n = loadSeq(storage, key);
  return n > 0 ? n : 0;
}

/** Stores the epoch of the inbox the stored seq counts in. */
export function saveEpoch(storage: SeqStorage | null, key: string | null, epoch: number): void {
  if (!storage || !key || epoch < 0) return;
  try {
    storage.setItem(key, String(epoch));
  } catch {
    // as saveSeq
  }
}

/** The stored last seq under `key`, -1 when unknown. */
export function loadSeq(storage: SeqStorage | null, key: string): number {
  try {
    const n = parseInt(storage?.getItem(key) ?? "", 10);
    return n >= 0 ? n : -1;
  } catch {
    return -1;
  }
}

/**
 * Stores a user's last seq. The stored value only grows (another tab may be
 * further ahead), unless `force` (the server's sequence was reset).
 */
export function saveSeq(storage: SeqStorage | null, key: string | null, seq: number, force = false): void {
  if (!storage || !key || seq < 0) return;
  try {
    if (force || seq > loadSeq(storage, key)) storage.setItem(key, String(seq));
  } catch {
    // quota or privacy mode: resuming falls back to this session's memory
  }
}
