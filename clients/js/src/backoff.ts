/**
 * The shortest wait before any reconnect. Delays are drawn uniformly from
 * [FLOOR_MS, window] rather than [0, window], so a server that accepts and
 * closes at once costs a client at most 10 connections a second even with an
 * unlucky random source, and in practice far fewer as the window doubles.
 */
export const FLOOR_MS = 100;

/** A connection that stayed up this long resets the attempt counter. */
export const STABLE_MS = 10_000;

/** Upper bound of the random wait after 1012 (gateway draining): [FLOOR_MS, DRAIN_MS]. */
export const DRAIN_MS = 2_000;

/** Exponential backoff with full jitter: uniform in [FLOOR_MS, min(capMs, baseMs * 2^attempt)]. */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number): number {
  const window = Math.min(capMs, baseMs * 2 ** attempt);
  return FLOOR_MS + random() * Math.max(0, window - FLOOR_MS);
}

/** The wait after 1012: spread over [FLOOR_MS, DRAIN_MS] so clients of a draining gateway don't stampede. */
export function drainDelay(random: () => number): number {
  return FLOOR_MS + random() * (DRAIN_MS - FLOOR_MS);
}

/**
 * Liveness: browsers answer the gateway's WebSocket pings without telling
 * the page, so a socket left half-open (a laptop that slept, a network
 * switch without an `offline` event) would look connected forever. After
 * PING_AFTER_MS without a frame the client sends `{"type":"ping"}` (the
 * gateway answers `pong`); after DEAD_MS without one it reconnects.
 */
export const PING_AFTER_MS = 25_000;
export const DEAD_MS = 45_000;
/** How often the silence is checked. */
export const LIVENESS_CHECK_MS = 5_000;
