import { describe, expect, it, vi } from "vitest";
import { decodeToken, MIN_REFRESH_MS, refreshDelay } from "../src/token.js";
import { connected, jwt, lastSocket, nowSecs, setup, sockets, tick, tokenSource } from "./helpers.js";

describe("decodeToken", () => {
  it("reads sub and exp from a base64url payload, without verifying", () => {
    expect(decodeToken(jwt({ sub: "ålice-ü", exp: 123 }))).toMatchObject({ sub: "ålice-ü", exp: 123 });
  });
  it("answers {} for anything else", () => {
    expect(decodeToken("opaque")).toEqual({});
    expect(decodeToken("a.!!!.c")).toEqual({});
    expect(decodeToken(undefined)).toEqual({});
    expect(decodeToken("a." + Buffer.from("null").toString("base64url") + ".c")).toEqual({});
  });
});

describe("refreshDelay", () => {
  it("is lead seconds before exp, at least a few seconds, null without exp", () => {
    expect(refreshDelay(1000, 60, 0)).toBe(940_000);
    expect(refreshDelay(10, 60, 0)).toBe(MIN_REFRESH_MS);
    expect(refreshDelay(undefined, 60, 0)).toBeNull();
    expect(refreshDelay(10 ** 10, 60, 0)).toBe(2 ** 31 - 1); // setTimeout would fire at once above that
  });
});

describe("tokens", () => {
  it("takes userId from sub", async () => {
    const { client } = setup({ getToken: tokenSource(3600, "bob") });
    expect(client.userId).toBeNull();
    await tick();
    expect(client.userId).toBe("bob");
  });

  it("accepts a promise from getToken()", async () => {
    const token = jwt({ sub: "alice", exp: nowSecs() + 600 });
    setup({ getToken: async () => token });
    await tick();
    expect(lastSocket().protocols).toEqual(["herald.v1", "herald.token." + token]);
  });

  it("refreshes before exp: a new token in a refresh frame on the open socket", async () => {
    const { getToken } = await connected({ getToken: tokenSource(120) }); // refresh at exp - 60 s
    await tick();
    await vi.advanceTimersByTimeAsync(59_999);
    expect(getToken).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(getToken).toHaveBeenCalledTimes(2);
    const fresh = getToken.mock.results[1].value;
    expect(lastSocket().frames).toEqual([{ type: "refresh", token: fresh }]);
    // and again for the new token
    await vi.advanceTimersByTimeAsync(60_000);
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(lastSocket().frames).toHaveLength(2);
    expect(sockets()).toHaveLength(1);
  });

  it("honours refreshLeadSecs and never refreshes sooner than a few seconds", async () => {
    const { getToken } = await connected({ getToken: tokenSource(30), refreshLeadSecs: 60 });
    await vi.advanceTimersByTimeAsync(MIN_REFRESH_MS - 1);
    expect(getToken).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(lastSocket().frames[0]).toMatchObject({ type: "refresh" });
  });

  it("a token without exp is never refreshed", async () => {
    await connected({ getToken: () => jwt({ sub: "alice" }) });
    await vi.advanceTimersByTimeAsync(24 * 3600_000);
    expect(lastSocket().frames).toEqual([]);
  });

  it("does not send the same token again; a failing getToken() is emitted and retried", async () => {
    let calls = 0;
    const same = jwt({ sub: "alice", exp: nowSecs() + 100 });
    const { client } = await connected({
      getToken: () => {
        calls++;
        if (calls === 2) throw new Error("auth down");
        return same;
      },
    });
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.message));
    await vi.advanceTimersByTimeAsync(40_000); // exp - 60 s
    expect(errors).toEqual(["auth down"]);
    await vi.advanceTimersByTimeAsync(MIN_REFRESH_MS);
    expect(calls).toBe(3);
    expect(lastSocket().frames).toEqual([]);
  });

  it("a bad_token answer to a refresh is emitted; the 4001 that follows reconnects with a fresh token", async () => {
    const { client, getToken } = await connected({ getToken: tokenSource(120) }, { last_seq: 2 });
    const codes: Array<string | undefined> = [];
    client.on("error", (e) => codes.push(e.code));
    await vi.advanceTimersByTimeAsync(60_000);
    lastSocket().receive({ type: "error", code: "bad_token", message: "invalid token" });
    expect(codes).toEqual(["bad_token"]);
    lastSocket().serverClose(4001);
    await tick();
    expect(getToken).toHaveBeenCalledTimes(3);
    expect(lastSocket().since).toBe("2");
    expect(lastSocket().protocols).toContain("herald.token." + getToken.mock.results[2].value);
  });

  it("stops refreshing when the socket closes", async () => {
    const { client, getToken } = await connected({ getToken: tokenSource(120) });
    client.close();
    await vi.advanceTimersByTimeAsync(600_000);
    expect(getToken).toHaveBeenCalledTimes(1);
  });

  it("starts a new user's state when sub changes", async () => {
    let sub = "alice";
    const { client } = await connected({ getToken: () => jwt({ sub, exp: nowSecs() + 3600 }) }, { last_seq: 5, unread: 2, version: 3 });
    lastSocket().receive({ type: "notification", id: "a6", user_id: "alice", seq: 6, title: "", body: "", priority: "low", category: null, data: null, created_at: "", expires_at: null });
    expect(client.items()).toHaveLength(1);
    client.close();
    sub = "bob";
    client.connect();
    await tick();
    expect(client.userId).toBe("bob");
    expect(client.items()).toEqual([]);
    expect([client.unread, client.version, client.lastSeq]).toEqual([0, -1, -1]);
    expect(lastSocket().since).toBeNull();
  });
});
