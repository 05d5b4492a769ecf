import { describe, expect, it, vi } from "vitest";
import { DEAD_MS, PING_AFTER_MS } from "../src/backoff.js";
import { connected, jwt, lastSocket, live, memoryStorage, nowSecs, setup, sockets, tick } from "./helpers.js";

describe("a half-open socket", () => {
  it("a quiet but live socket is pinged and kept", async () => {
    const { client } = await connected();
    await vi.advanceTimersByTimeAsync(PING_AFTER_MS + 5_000);
    expect(lastSocket().pings).toBeGreaterThanOrEqual(1);
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    expect(sockets()).toHaveLength(1);
    expect(client.status).toBe("connected");
  });

  it("a socket that answers nothing is given up and replaced, resuming with since", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    lastSocket().receive(live(1, 1, 2));
    lastSocket().answersPings = false;
    await vi.advanceTimersByTimeAsync(DEAD_MS - 5_000);
    expect(sockets()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(10_000 + 2_000);
    await tick();
    expect(sockets()).toHaveLength(2);
    expect(sockets()[0].closedWith).not.toBeNull();
    expect(lastSocket().since).toBe("1");
    expect(client.status).toBe("reconnecting");
  });
});

describe("tokens, seen from the socket", () => {
  it("a token fetched for REST first is still handed to the socket before exp", async () => {
    // The app's getToken caches: it answers one token until it is near its end.
    let current = jwt({ sub: "alice", exp: nowSecs() + 120 });
    let served = 0;
    const getToken = vi.fn(() => {
      served++;
      return current;
    });
    const fetch = vi.fn(async () => new Response(JSON.stringify({ unread: 0, version: 0, last_seq: 0 })));
    const { client } = await connected({ getToken, fetch: fetch as unknown as typeof globalThis.fetch });
    await vi.advanceTimersByTimeAsync(61_000); // inside the lead window of the first token
    // Meanwhile the app renewed it, and a REST call picked the new one up first.
    current = jwt({ sub: "alice", exp: nowSecs() + 3600 });
    await client.unreadCount();
    await vi.advanceTimersByTimeAsync(6_000); // the next refresh (never sooner than 5 s)
    expect(served).toBeGreaterThanOrEqual(2);
    const refreshes = lastSocket().frames.filter((f) => f.type === "refresh");
    expect(refreshes.at(-1)).toEqual({ type: "refresh", token: current });
  });

  it("a token for another user reconnects as that user, from that user's own sequence", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:bob@http://gw.test", "41");
    let sub = "alice";
    const getToken = vi.fn(() => jwt({ sub, exp: nowSecs() + 120 }));
    const { client } = await connected({ getToken, storage }, { last_seq: 5 });
    const alice = lastSocket();
    sub = "bob";
    await vi.advanceTimersByTimeAsync(61_000); // the refresh fetches bob's token
    await tick();
    expect(alice.closedWith).not.toBeNull();
    expect(alice.frames.filter((f) => f.type === "refresh")).toEqual([]);
    expect(client.userId).toBe("bob");
    expect(lastSocket()).not.toBe(alice);
    expect(lastSocket().since).toBe("41");
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("5");
  });
});

describe("what the client holds", () => {
  it("items() keeps the newest 1000 or so, not everything ever seen", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    for (let seq = 1; seq <= 2_500; seq++) lastSocket().receive(live(seq, seq, seq));
    const items = client.items();
    expect(items.length).toBeLessThanOrEqual(1_100);
    expect(items[0].seq).toBe(2_500);
    expect(items.at(-1)!.seq).toBeGreaterThan(1_300);
  });

  it("the stored sequence is per gateway: another deployment does not resume from it", async () => {
    const storage = memoryStorage();
    await connected({ storage, url: "https://staging.example" }, { last_seq: 30 });
    const prod = setup({ storage, url: "https://prod.example" });
    await tick();
    expect(lastSocket().since).toBeNull();
    prod.client.close();
    setup({ storage, url: "https://staging.example" });
    await tick();
    expect(lastSocket().since).toBe("30");
  });
});
