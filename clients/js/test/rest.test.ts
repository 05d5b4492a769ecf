import { describe, expect, it, vi } from "vitest";
import { createHeraldClient, HeraldError } from "../src/index.js";
import { connected, fakeFetch, lastSocket, note, nowSecs, jwt, setup, tokenSource } from "./helpers.js";
import { legacy } from "./helpers.js";

const page = (...seqs: number[]) => ({ items: seqs.map((s) => ({ ...note(s), type: undefined })), next_before: null });

/** A client for REST only (as in Node without a WebSocket). */
function restClient(answer: Parameters<typeof fakeFetch>[0], getToken = tokenSource()) {
  const f = fakeFetch(answer);
  const client = createHeraldClient({ url: "http://gw.test/", getToken, fetch: f.fetch, autoConnect: false, storage: null });
  return { client, getToken, ...f };
}

describe("REST", () => {
  it("list(): path, query, Authorization header", async () => {
    const { client, calls, getToken } = restClient(() => ({ body: page(3, 2) }));
    const answer = await client.list({ limit: 10, before: 16, unread: true, category: "orders", render: "current" });
    expect(answer.items.map((n) => n.seq)).toEqual([3, 2]);
    expect(calls[0].method).toBe("GET");
    expect(calls[0].url).toBe("http://gw.test/v1/me/notifications?limit=10&before=16&unread=true&category=orders&render=current");
    expect(calls[0].headers.authorization).toBe("Bearer " + getToken.mock.results[0].value);
    await client.list({ unread: false });
    expect(calls[1].url).toBe("http://gw.test/v1/me/notifications");
  });

  it("list() merges pages into items(): each id once, newest first", async () => {
    const { fetch } = fakeFetch(() => ({ body: page(3, 2, 1) }));
    const { client } = await connected({ fetch }, { last_seq: 3 });
    lastSocket().receive(note(4));
    await client.list();
    await client.list();
    expect(client.items().map((n) => n.id)).toEqual(["n4", "n3", "n2", "n1"]);
  });

  it("list() keeps read state the client already saw", async () => {
    const { fetch } = fakeFetch(() => ({ body: page(1) }));
    const { client } = await connected({ fetch }, { last_seq: 0 });
    lastSocket().receive(note(1));
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 4 });
    await client.list();
    expect(client.items()[0].read_at).toBeDefined();
  });

  it("markRead() posts each id, applies the answers and combines them", async () => {
    let v = 10;
    const f = fakeFetch((c) => ({ body: { ids: [c.url.split("/").at(-2)], version: ++v, unread: 12 - v } }));
    const { client } = await connected({ fetch: f.fetch }, { last_seq: 0, unread: 2, version: 10 });
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    const reads: string[][] = [];
    client.on("read", (c) => reads.push(c.ids));
    const result = await client.markRead(["n1", "n2"]);
    expect(f.calls.map((c) => [c.method, c.url])).toEqual([
      ["POST", "http://gw.test/v1/me/notifications/n1/read"],
      ["POST", "http://gw.test/v1/me/notifications/n2/read"],
    ]);
    expect(result).toEqual({ ids: ["n1", "n2"], unread: 0, version: 12, counts: legacy(0) });
    expect([client.unread, client.version]).toEqual([0, 12]);
    expect(reads).toEqual([["n1"], ["n2"]]);
    expect(client.items().every((n) => n.read_at)).toBe(true);
  });

  it("markRead([]) asks nothing", async () => {
    const { client, calls } = restClient(() => ({}));
    expect(await client.markRead([])).toEqual({ ids: [], unread: 0, version: -1, counts: legacy(0) });
    expect(calls).toEqual([]);
  });

  it("escapes ids in paths", async () => {
    const { client, calls } = restClient(() => ({ body: { ids: [], unread: 0, version: 1 } }));
    await client.archive("a/b?c");
    expect(calls[0].url).toBe("http://gw.test/v1/me/notifications/a%2Fb%3Fc/archive");
  });

  it("markAllRead() and archive()", async () => {
    const f = fakeFetch((c) =>
      c.url.endsWith("read-all")
        ? { body: { ids: ["n1", "n2"], unread: 0, version: 5 } }
        : { body: { ids: ["n2"], unread: 0, version: 6 } },
    );
    const { client } = await connected({ fetch: f.fetch }, { last_seq: 0, unread: 2, version: 4 });
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    const archived: string[][] = [];
    client.on("archived", (c) => archived.push(c.ids));
    expect(await client.markAllRead()).toEqual({ ids: ["n1", "n2"], unread: 0, version: 5 });
    expect(await client.archive("n2")).toEqual({ ids: ["n2"], unread: 0, version: 6 });
    expect(f.calls.map((c) => [c.method, c.url])).toEqual([
      ["POST", "http://gw.test/v1/me/notifications/read-all"],
      ["POST", "http://gw.test/v1/me/notifications/n2/archive"],
    ]);
    expect(archived).toEqual([["n2"]]);
    expect(client.items().map((n) => n.id)).toEqual(["n1"]);
    // the frame of the same change does not emit again
    lastSocket().receive({ type: "archived", ids: ["n2"], unread: 0, version: 6 });
    expect(archived).toHaveLength(1);
  });

  it("markUnread() and unarchive() undo read and archive, on this device and from frames", async () => {
    const f = fakeFetch((c) =>
      c.url.endsWith("/unread")
        ? { body: { ids: ["n1"], unread: 1, version: 7 } }
        : { body: { ids: ["n2"], unread: 2, version: 8 } },
    );
    const { client } = await connected({ fetch: f.fetch }, { last_seq: 0, unread: 2, version: 4 });
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 1, version: 5 });
    lastSocket().receive({ type: "archived", ids: ["n2"], unread: 0, version: 6 });
    expect(client.items().map((n) => [n.id, !!n.read_at])).toEqual([["n1", true]]);
    const events: [string, string[]][] = [];
    client.on("markedUnread", (c) => events.push(["markedUnread", c.ids]));
    client.on("unarchived", (c) => events.push(["unarchived", c.ids]));

    expect(await client.markUnread("n1")).toEqual({ ids: ["n1"], unread: 1, version: 7 });
    expect(await client.unarchive("n2")).toEqual({ ids: ["n2"], unread: 2, version: 8 });
    expect(f.calls.map((c) => [c.method, c.url])).toEqual([
      ["POST", "http://gw.test/v1/me/notifications/n1/unread"],
      ["POST", "http://gw.test/v1/me/notifications/n2/unarchive"],
    ]);
    expect(client.items().map((n) => [n.id, !!n.read_at, !!n.archived_at])).toEqual([
      ["n2", false, false],
      ["n1", false, false],
    ]);
    expect([client.unread, client.version]).toEqual([2, 8]);
    // the frames of the same changes do not emit again; another device's do
    lastSocket().receive({ type: "unread", ids: ["n1"], unread: 1, version: 7 });
    lastSocket().receive({ type: "unarchived", ids: ["n2"], unread: 2, version: 8 });
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 1, version: 9 });
    lastSocket().receive({ type: "unread", ids: ["n1"], unread: 2, version: 10 });
    expect(events).toEqual([
      ["markedUnread", ["n1"]],
      ["unarchived", ["n2"]],
      ["markedUnread", ["n1"]],
    ]);
    expect(client.items().find((n) => n.id === "n1")?.read_at).toBeNull();
    expect([client.unread, client.version]).toEqual([2, 10]);
  });

  it("markAllRead() and archiveAll() pass their filters", async () => {
    const { client, calls } = restClient(() => ({ body: { ids: [], unread: 0, version: 1 } }));
    await client.markAllRead({ category: "orders", before_seq: 12 });
    await client.archiveAll({ read: true });
    await client.archiveAll();
    expect(calls.map((c) => [c.method, c.url])).toEqual([
      ["POST", "http://gw.test/v1/me/notifications/read-all?category=orders&before_seq=12"],
      ["POST", "http://gw.test/v1/me/notifications/archive-all?read=true"],
      ["POST", "http://gw.test/v1/me/notifications/archive-all"],
    ]);
  });

  it("an older change of an item arriving after a newer one is left out", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 1, version: 4 });
    lastSocket().receive(note(1));
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 10 });
    lastSocket().receive({ type: "unread", ids: ["n1"], unread: 1, version: 12 });
    // the read of version 11 was published after the unread of 12
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 11 });
    expect(client.items()[0].read_at).toBeNull();
    expect([client.unread, client.version]).toEqual([1, 12]);
    lastSocket().receive({ type: "archived", ids: ["n1"], unread: 0, version: 13 });
    lastSocket().receive({ type: "unarchived", ids: ["n1"], unread: 1, version: 14 });
    lastSocket().receive({ type: "archived", ids: ["n1"], unread: 0, version: 13 });
    expect(client.items().map((n) => n.id)).toEqual(["n1"]);
  });

  it("list({ status }) asks for archived or all", async () => {
    const { client, calls } = restClient(() => ({ body: page(1) }));
    await client.list({ status: "archived" });
    expect(calls[0].url).toBe("http://gw.test/v1/me/notifications?status=archived");
  });

  it("unreadCount() takes the count only when its version is higher", async () => {
    let answer = { unread: 5, version: 9, last_seq: 20 };
    const { client } = restClient(() => ({ body: answer }));
    expect(await client.unreadCount()).toEqual(answer);
    expect([client.unread, client.version]).toEqual([5, 9]);
    answer = { unread: 7, version: 8, last_seq: 20 };
    await client.unreadCount();
    expect([client.unread, client.version]).toEqual([5, 9]);
  });

  it("getPreferences() and putPreferences()", async () => {
    const prefs = { locale: "pl", timezone: "Europe/Warsaw", muted_categories: ["social"] };
    const { client, calls } = restClient(() => ({ body: prefs }));
    expect(await client.getPreferences()).toEqual(prefs);
    expect(await client.putPreferences(prefs)).toEqual(prefs);
    expect(calls.map((c) => [c.method, c.url])).toEqual([
      ["GET", "http://gw.test/v1/me/preferences"],
      ["PUT", "http://gw.test/v1/me/preferences"],
    ]);
    expect(calls[0].headers["content-type"]).toBeUndefined();
    expect(calls[1].headers["content-type"]).toBe("application/json");
    expect(JSON.parse(calls[1].body!)).toEqual(prefs);
  });

  it("reuses the held token, and gets a new one when it is about to expire", async () => {
    const { client, calls, getToken } = restClient(() => ({ body: page() }), tokenSource(3600));
    await client.list();
    await client.list();
    expect(getToken).toHaveBeenCalledTimes(1);
    expect(calls[1].headers.authorization).toBe(calls[0].headers.authorization);
    await vi.advanceTimersByTimeAsync(3600_000 - 59_000); // within refreshLeadSecs of exp
    await client.list();
    expect(getToken).toHaveBeenCalledTimes(2);
  });

  it("concurrent calls share one getToken()", async () => {
    const { client, getToken } = restClient(() => ({ body: { ids: [], unread: 0, version: 1 } }));
    await client.markRead(["a", "b", "c"]);
    expect(getToken).toHaveBeenCalledTimes(1);
  });

  it("401: gets a token once more and retries once", async () => {
    let n = 0;
    const { client, calls, getToken } = restClient(() =>
      n++ === 0 ? { status: 401, body: { type: "https://herald.dev/problems/unauthorized", title: "Unauthorized", status: 401 } } : { body: page(1) },
    );
    await client.list();
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(calls).toHaveLength(2);
    expect(calls[1].headers.authorization).toBe("Bearer " + getToken.mock.results[1].value);
    expect(calls[1].headers.authorization).not.toBe(calls[0].headers.authorization);
  });

  it("401 twice: throws a HeraldError", async () => {
    const problem = { type: "https://herald.dev/problems/unauthorized", title: "Unauthorized", status: 401, detail: "token expired" };
    const { client, calls } = restClient(() => ({ status: 401, body: problem }));
    const err = await client.unreadCount().catch((e) => e);
    expect(calls).toHaveLength(2);
    expect(err).toBeInstanceOf(HeraldError);
    expect(err).toMatchObject({ name: "HeraldError", status: 401, type: "unauthorized", message: "token expired", problem });
  });

  it("problem+json: status, type slug, detail as message, the problem itself", async () => {
    const problem = {
      type: "https://herald.dev/problems/invalid-request",
      title: "Invalid request",
      status: 400,
      detail: "invalid field(s): timezone",
      errors: [{ field: "timezone", message: "unknown time zone" }],
    };
    const { client, calls } = restClient(() => ({ status: 400, body: problem }));
    const err = await client.putPreferences({ locale: null, timezone: "Mars/Base", muted_categories: [] }).catch((e) => e);
    expect(calls).toHaveLength(1);
    expect(err).toMatchObject({ status: 400, type: "invalid-request", message: "invalid field(s): timezone", problem });
  });

  it("uses the title without detail, the status without a JSON body", async () => {
    let answer: { status: number; body?: unknown; raw?: string } = { status: 404, body: { type: "https://herald.dev/problems/not-found", title: "Not found", status: 404 } };
    const { client } = restClient(() => answer);
    await expect(client.archive("x")).rejects.toMatchObject({ status: 404, type: "not-found", message: "Not found" });
    answer = { status: 503, raw: "upstream down" };
    await expect(client.archive("x")).rejects.toMatchObject({ status: 503, type: undefined, message: "HTTP 503" });
  });

  it("a network failure is a HeraldError with the cause", async () => {
    const cause = new TypeError("fetch failed");
    const client = createHeraldClient({
      url: "http://gw.test",
      getToken: tokenSource(),
      autoConnect: false,
      storage: null,
      fetch: () => Promise.reject(cause),
    });
    const err = await client.list().catch((e) => e);
    expect(err).toBeInstanceOf(HeraldError);
    expect(err.cause).toBe(cause);
    expect(err.status).toBeUndefined();
  });

  it("uses globalThis.fetch by default, called without a receiver", async () => {
    const f = fakeFetch(() => ({ body: page() }));
    vi.stubGlobal("fetch", f.fetch);
    const client = createHeraldClient({ url: "http://gw.test", getToken: tokenSource(), autoConnect: false, storage: null });
    await client.list();
    expect(f.calls).toHaveLength(1);
    expect(f.fetch).toHaveBeenCalledWith(expect.any(String), expect.anything());
    expect((f.fetch as unknown as { mock: { contexts: unknown[] } }).mock.contexts[0]).toBeUndefined();
  });

  it("REST on a ws:// base URL goes over http://", async () => {
    const f = fakeFetch(() => ({ body: page() }));
    const { client } = setup({ url: "wss://gw.test", fetch: f.fetch, autoConnect: false });
    await client.list();
    expect(f.calls[0].url).toBe("https://gw.test/v1/me/notifications");
  });

  it("REST works in Node without any WebSocket when autoConnect is false", async () => {
    const { client } = restClient(() => ({ body: { unread: 1, version: 2, last_seq: 3 } }), vi.fn(() => jwt({ sub: "alice", exp: nowSecs() + 60 })));
    expect((globalThis as { WebSocket?: unknown }).WebSocket).toBeUndefined();
    expect((await client.unreadCount()).unread).toBe(1);
    expect(client.userId).toBe("alice");
    expect(() => client.connect()).toThrow(/WebSocket/);
  });
});

