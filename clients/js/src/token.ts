/** The claims the client reads from a JWT (it never verifies the signature: the server does). */
export interface Claims {
  sub?: string;
  exp?: number;
}

/** The soonest a token refresh is scheduled, even for a token about to expire. */
export const MIN_REFRESH_MS = 5_000;

/** setTimeout fires at once for delays above 2^31 - 1 ms (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Decodes a JWT's payload (base64url JSON); `{}` when it is not a JWT. */
export function decodeToken(token: string | undefined): Claims {
  try {
    const b64 = token!.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) || {};
  } catch {
    return {};
  }
}

/**
 * Milliseconds until a token with this `exp` should be replaced: `leadSecs`
 * before it expires, but not sooner than MIN_REFRESH_MS; null without `exp`.
 */
export function refreshDelay(exp: number | undefined, leadSecs: number, now: number): number | null {
  if (typeof exp !== "number") return null;
  return Math.min(MAX_TIMER_MS, Math.max(MIN_REFRESH_MS, (exp - leadSecs) * 1000 - now));
}
