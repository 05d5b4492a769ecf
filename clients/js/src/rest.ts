import { HeraldError, problemError } from "./errors.js";

/** Performs one REST call and answers its JSON body. */
export type Rest = <T>(method: string, path: string, body?: unknown) => Promise<T>;

/**
 * REST calls with `Authorization: Bearer`. `token(true)` must return a fresh
 * token: after a 401 it is asked once more and the call retried once. Other
 * failures throw a {@link HeraldError} built from the problem+json answer.
 */
export function rest(base: string, getFetch: () => typeof fetch, token: (fresh: boolean) => Promise<string>): Rest {
  return async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    for (let retried = false; ; retried = true) {
      const headers: Record<string, string> = { authorization: "Bearer " + (await token(retried)) };
      if (body !== undefined) headers["content-type"] = "application/json";
      const doFetch = getFetch();
      let res: Response;
      try {
        res = await doFetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (cause) {
        throw new HeraldError("network error: " + (cause as Error)?.message, { cause });
      }
      if (res.ok) return res.json();
      if (res.status !== 401 || retried) throw await problemError(res);
    }
  };
}
