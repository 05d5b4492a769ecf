import { describe, expect, it, vi } from "vitest";
import { createHeraldClient, HeraldError, type ConnectionStatus } from "../src/index.js";
import { connected, FakeWebSocket, lastSocket, nextTimer, note, setup, sockets, tick, tokenSource } from "./helpers.js";

const ALMOST_ONE = 1 - 1e-9;

describe("opening the socket", () => {
  it("sends the token as a subprotocol next to herald.v1", async () => {
    const { getToken } = setup();
    await tick();
    expect(getToken).toHaveBeenCalledTimes(1);
    const token = getToken.mock.results[0].value;
    expect(lastSocket().protocols).toEqual(["herald.v1", "herald.token." + token]);
    expect(lastSocket().url).toBe("ws://gw.test/v1/ws");
  });

  it("derives wss from https and ignores a trailing slash", async () => {
    setup({ url: "https://example.com/herald/" });
    await tick();
    expect(lastSocket().url).toBe("wss://example.com/herald/v1/ws");
  });

  it("walks the statuses connecting -> connected -> reconnecting -> closed", async () => {
    const { client } = setup({ autoConnect: false });
    const seen: ConnectionStatus[] = [];
    client.on("status", (s) => seen.push(s));
    expect(client.status).toBe("closed");
    client.connect();
    await tick();
    lastSocket().open();
    lastSocket().serverClose(1006);
    client.close();
    expect(seen).toEqual(["connecting", "connected", "reconnecting", "closed"]);
  });

  it("does not connect before connect() when autoConnect is false; connect() twice opens one socket", async () => {
    const { client } = setup({ autoConnect: false });
    await tick();
    expect(sockets()).toHaveLength(0);
    client.connect();
    client.connect();
    await tick();
    client.connect();
    expect(sockets()).toHaveLength(1);
  });

  it("connect() during a backoff wait retries at once", async () => {
    const { client } = setup({ random: () => ALMOST_ONE });
    await tick();
    lastSocket().serverClose(1006);
    expect(sockets()).toHaveLength(1);
    client.connect();
    await tick();
    expect(sockets()).toHaveLength(2);
  });

  it("uses globalThis.WebSocket by default and throws a HeraldError when there is none", async () => {
    vi.stubGlobal("WebSocket", FakeWebSocket);
    createHeraldClient({ url: "http://gw.test", getToken: tokenSource(), storage: null });
    await tick();
    expect(sockets()).toHaveLength(1);

    vi.stubGlobal("WebSocket", undefined);
    expect(() => createHeraldClient({ url: "http://gw.test", getToken: tokenSource(), storage: null })).toThrow(HeraldError);
  });

  it("a getToken() failure is emitted and retried with backoff", async () => {
    let fail = true;
    const good = tokenSource();
    const { client } = setup({ getToken: () => (fail ? Promise.reject(new Error("auth down")) : good()) });
    const errors: HeraldError[] = [];
    client.on("error", (e) => errors.push(e));
    await tick();
    expect(errors.map((e) => e.message)).toEqual(["auth down"]);
    expect(errors[0]).toBeInstanceOf(HeraldError);
    expect(sockets()).toHaveLength(0);
    expect(client.status).toBe("reconnecting");
    fail = false;
    await nextTimer();
    expect(sockets()).toHaveLength(1);
  });

  it("a WebSocket constructor that throws is emitted and retried", async () => {
    let n = 0;
    class Throwing extends FakeWebSocket {
      constructor(url: string, p?: string | string[]) {
        if (n++ === 0) throw new Error("bad url");
        super(url, p);
      }
    }
    const { client } = setup({ WebSocket: Throwing });
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.message));
    await tick();
    expect(errors).toEqual(["bad url"]);
    await nextTimer();
    expect(sockets()).toHaveLength(1);
  });
});

describe("close codes", () => {
  it("1000 from close(): closes with 1000, no reconnect, no timer left", async () => {
    const { client } = await connected();
    const socket = lastSocket();
    client.close();
    expect(socket.closedWith?.code).toBe(1000);
    expect(client.status).toBe("closed");
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets()).toHaveLength(1);
  });

  it("close() while getToken() is pending opens nothing", async () => {
    let resolve!: (t: string) => void;
    const { client } = setup({ getToken: () => new Promise<string>((r) => (resolve = r)) });
    await tick();
    client.close();
    resolve(tokenSource()());
    await tick();
    expect(sockets()).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it.each([1008, 1009, 1011, 4408, 1006, 1001, 1000])("%i from the server: reconnect with since after a backoff", async (code) => {
    const { client } = await connected({ random: () => ALMOST_ONE }, { last_seq: 12 });
    lastSocket().serverClose(code);
    expect(client.status).toBe("reconnecting");
    await tick();
    expect(sockets()).toHaveLength(1); // not at once
    const delay = await nextTimer();
    expect(Math.abs(delay - 500)).toBeLessThanOrEqual(1);
    expect(sockets()).toHaveLength(2);
    expect(lastSocket().since).toBe("12");
  });

  it("1012 (draining): a jittered wait within [0.1 s, 2 s] after a stable connection, whatever came before", async () => {
    const { client } = setup({ random: () => ALMOST_ONE });
    await tick();
    for (let i = 0; i < 6; i++) {
      lastSocket().serverClose(1006);
      await nextTimer(); // attempt grows: the next backoff window would be 30 s
    }
    lastSocket().open();
    lastSocket().hello({ last_seq: 3 });
    await vi.advanceTimersByTimeAsync(10_000); // a stable connection resets the attempts
    lastSocket().serverClose(1012);
    expect(client.status).toBe("reconnecting");
    const delay = await nextTimer();
    expect(delay).toBeGreaterThanOrEqual(100);
    expect(delay).toBeLessThanOrEqual(2000);
    expect(lastSocket().since).toBe("3");
  });

  it("1012 again right after reconnecting backs off like any failure: no endless drain loop", async () => {
    setup({ random: () => ALMOST_ONE });
    await tick();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      lastSocket().open();
      lastSocket().hello({ last_seq: 3 });
      lastSocket().serverClose(1012);
      waits.push(await nextTimer());
    }
    expect(waits[0]).toBeLessThanOrEqual(2000);
    // max(drain window, backoff window): 2 s, 2 s, 2 s, 4 s, 8 s, 16 s (base 500 ms)
    expect(waits.slice(3).map((w) => Math.round(w / 1000))).toEqual([4, 8, 16]);
  });

  it("1012 spreads clients: random 0 waits the floor, random 0.5 about 1 s", async () => {
    for (const [random, expected] of [
      [0, 100],
      [0.5, 1050],
    ]) {
      const { client } = await connected({ random: () => random });
      lastSocket().serverClose(1012);
      expect(Math.abs((await nextTimer()) - expected)).toBeLessThanOrEqual(1);
      client.close();
    }
  });

  it("4001: a fresh token and reconnect at once with since", async () => {
    const { client, getToken } = await connected({}, { last_seq: 5 });
    expect(getToken).toHaveBeenCalledTimes(1);
    lastSocket().serverClose(4001);
    await tick();
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(sockets()).toHaveLength(2);
    expect(lastSocket().since).toBe("5");
    expect(lastSocket().protocols).toEqual(["herald.v1", "herald.token." + getToken.mock.results[1].value]);
    expect(client.status).toBe("reconnecting");
  });

  it("4001 again right away backs off instead of looping", async () => {
    await connected({ random: () => ALMOST_ONE });
    lastSocket().serverClose(4001);
    await tick();
    lastSocket().open();
    lastSocket().serverClose(4001);
    await tick();
    expect(sockets()).toHaveLength(2);
    expect(Math.abs((await nextTimer()) - 1000)).toBeLessThanOrEqual(1);
    expect(sockets()).toHaveLength(3);
  });

  it("ignores events of a socket it already dropped", async () => {
    const { client } = await connected();
    const old = lastSocket();
    old.serverClose(1006);
    await nextTimer();
    const notes: number[] = [];
    client.on("notification", (n) => notes.push(n.seq));
    // The dropped socket is detached: a late frame or close of it reaches nothing.
    expect(old.onmessage).toBeNull();
    expect(old.onclose).toBeNull();
    old.receive(note(1));
    old.serverClose(1006);
    expect(sockets()).toHaveLength(2);
    expect(notes).toEqual([]);
  });
});

describe("error frames", () => {
  it("emits each error frame as a HeraldError with its code; bad_token keeps the socket", async () => {
    const { client } = await connected();
    const errors: HeraldError[] = [];
    client.on("error", (e) => errors.push(e));
    lastSocket().receive({ type: "error", code: "bad_token", message: "token is for another user" });
    lastSocket().receive({ type: "error", code: "bad_frame", message: "not a known frame" });
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ["bad_token", "token is for another user"],
      ["bad_frame", "not a known frame"],
    ]);
    expect(errors[0]).toBeInstanceOf(HeraldError);
    expect(lastSocket().closedWith).toBeNull();
    expect(client.status).toBe("connected");
  });

  it("ignores frames that are not JSON and pongs", async () => {
    const { client } = await connected({}, { unread: 2, version: 3 });
    lastSocket().receive("not json");
    lastSocket().receive({ type: "pong" });
    expect(client.unread).toBe(2);
  });
});

describe("offline / online", () => {
  function browser(onLine = true) {
    const target = new EventTarget();
    const nav = { onLine };
    const add = vi.fn(target.addEventListener.bind(target));
    const remove = vi.fn(target.removeEventListener.bind(target));
    vi.stubGlobal("navigator", nav);
    vi.stubGlobal("addEventListener", add);
    vi.stubGlobal("removeEventListener", remove);
    return {
      nav,
      add,
      remove,
      fire(type: "online" | "offline") {
        nav.onLine = type === "online";
        target.dispatchEvent(new Event(type));
      },
    };
  }

  it("offline closes the socket and waits; online reconnects at once with since", async () => {
    const b = browser();
    const { client } = await connected({}, { last_seq: 9 });
    const socket = lastSocket();
    b.fire("offline");
    expect(socket.closedWith?.code).toBe(1000);
    expect(client.status).toBe("offline");
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(sockets()).toHaveLength(1);

    b.fire("online");
    await tick();
    expect(sockets()).toHaveLength(2);
    expect(lastSocket().since).toBe("9");
    expect(client.status).toBe("connecting");
  });

  it("starts offline without a socket when navigator.onLine is false", async () => {
    const b = browser(false);
    const { client } = setup();
    await tick();
    expect(client.status).toBe("offline");
    expect(sockets()).toHaveLength(0);
    b.fire("online");
    await tick();
    expect(sockets()).toHaveLength(1);
  });

  it("a close while the browser is offline schedules nothing", async () => {
    const b = browser();
    const { client } = await connected();
    b.nav.onLine = false;
    lastSocket().serverClose(1006);
    expect(client.status).toBe("offline");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("online while connected keeps the socket", async () => {
    const b = browser();
    await connected();
    b.fire("online");
    await tick();
    expect(sockets()).toHaveLength(1);
  });

  it("close() removes the listeners", async () => {
    const b = browser();
    const { client } = await connected();
    expect(b.add).toHaveBeenCalledTimes(2);
    client.close();
    expect(b.remove.mock.calls.map((c) => c[0]).sort()).toEqual(["offline", "online"]);
    b.fire("offline");
    b.fire("online");
    await tick();
    expect(sockets()).toHaveLength(1);
    expect(client.status).toBe("closed");
  });

  it("works without navigator or addEventListener (Node)", async () => {
    expect((globalThis as { navigator?: unknown }).navigator).toBeUndefined();
    const { client } = await connected();
    expect(client.status).toBe("connected");
    client.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});
