import { describe, expect, it, vi } from "vitest";
import type { Notification } from "../src/index.js";
import { connected, lastSocket, live, memoryStorage, nextTimer, note, setup, sockets, tick } from "./helpers.js";

describe("resume with since", () => {
  it("resumes with the epoch of its inbox; another one (erased meanwhile) drops what it held and starts from seq 0", async () => {
    const storage = memoryStorage();
    const { client } = await connected({ storage }, { last_seq: 0, epoch: 5 });
    const erased: unknown[] = [];
    const seen: string[] = [];
    client.on("erased", (e) => erased.push(e));
    client.on("notification", (n) => seen.push(n.id));
    for (const seq of [1, 2, 3]) lastSocket().receive(live(seq, seq, seq, { id: `old${seq}` }));
    expect(storage.getItem("herald:epoch:alice@http://gw.test")).toBe("5");
    lastSocket().serverClose(1006);
    await nextTimer();
    expect([lastSocket().since, lastSocket().epoch]).toEqual(["3", "5"]);
    lastSocket().open();
    // The new inbox already has two: the gateway sends them from seq 1.
    lastSocket().hello({ last_seq: 2, unread: 2, version: 2, epoch: 9 });
    expect(erased).toEqual([{ userId: "alice" }]);
    expect(client.items()).toEqual([]);
    lastSocket().receive(note(1, { id: "new1" }));
    lastSocket().receive(note(2, { id: "new2" }));
    expect(client.items().map((n) => n.id)).toEqual(["new2", "new1"]);
    expect(seen).toEqual(["old1", "old2", "old3", "new1", "new2"]);
    expect([client.lastSeq, client.unread]).toEqual([2, 2]);
    expect(storage.getItem("herald:epoch:alice@http://gw.test")).toBe("9");
    // The same inbox again: nothing is dropped.
    lastSocket().serverClose(1006);
    await nextTimer();
    expect([lastSocket().since, lastSocket().epoch]).toEqual(["2", "9"]);
    lastSocket().open();
    lastSocket().hello({ last_seq: 2, unread: 2, version: 2, epoch: 9 });
    expect(client.items()).toHaveLength(2);
    expect(erased).toHaveLength(1);
  });

  it("an unknown epoch (0: no inbox yet, or a gateway without epochs) never resets", async () => {
    const { client } = await connected({}, { last_seq: 0, epoch: 0 });
    const erased: unknown[] = [];
    client.on("erased", (e) => erased.push(e));
    lastSocket().receive(live(1, 1, 1));
    lastSocket().serverClose(1006);
    await nextTimer();
    expect([lastSocket().since, lastSocket().epoch]).toEqual(["1", null]);
    lastSocket().open();
    lastSocket().hello({ last_seq: 1, unread: 1, version: 1, epoch: 4 });
    expect(erased).toEqual([]);
    expect(client.items()).toHaveLength(1);
  });

  it("without a known seq connects without since and takes hello.last_seq", async () => {
    const { client } = setup();
    await tick();
    expect(lastSocket().since).toBeNull();
    expect(client.lastSeq).toBe(-1);
    lastSocket().open();
    lastSocket().hello({ last_seq: 41 });
    expect(client.lastSeq).toBe(41);
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(lastSocket().since).toBe("41");
  });

  it("persists the last seq per user; a second client with the same storage resumes with since", async () => {
    const storage = memoryStorage();
    const { client } = await connected({ storage }, { last_seq: 3 });
    expect(client.userId).toBe("alice");
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("3");
    lastSocket().receive(note(4));
    lastSocket().receive(note(5));
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("5");
    client.close();

    const second = setup({ storage });
    await tick();
    expect(second.client.lastSeq).toBe(5);
    expect(lastSocket().since).toBe("5");
    expect(sockets()).toHaveLength(2);
  });

  it("keeps seqs of different users apart", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:bob@http://gw.test", "77");
    await connected({ storage }, { last_seq: 3 });
    expect(storage.map.get("herald:seq:alice@http://gw.test")).toBe("3");
    expect(storage.map.get("herald:seq:bob@http://gw.test")).toBe("77");
  });

  it("uses globalThis.localStorage by default", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:alice@http://gw.test", "8");
    vi.stubGlobal("localStorage", storage);
    setup({ storage: undefined });
    await tick();
    expect(lastSocket().since).toBe("8");
  });

  it("falls back to memory when localStorage throws", async () => {
    vi.stubGlobal("localStorage", undefined);
    Object.defineProperty(globalThis, "localStorage", {
      configurable: true,
      get() {
        throw new Error("SecurityError");
      },
    });
    try {
      const { client } = await connected({ storage: undefined }, { last_seq: 2 });
      expect(client.lastSeq).toBe(2);
    } finally {
      delete (globalThis as { localStorage?: unknown }).localStorage;
    }
  });

  it("never lowers the stored seq (another tab may be further ahead)", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:alice@http://gw.test", "3");
    await connected({ storage }, { last_seq: 10 });
    storage.setItem("herald:seq:alice@http://gw.test", "9"); // another tab
    lastSocket().receive(note(4));
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("9");
    lastSocket().receive(note(10));
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("10");
  });

  it("ignores a garbage stored value", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:alice@http://gw.test", "nope");
    setup({ storage });
    await tick();
    expect(lastSocket().since).toBeNull();
  });

  it("a server whose storage was reset (hello.last_seq < lastSeq): lastSeq, storage and version start over", async () => {
    const storage = memoryStorage();
    storage.setItem("herald:seq:alice@http://gw.test", "50");
    const { client } = setup({ storage });
    await tick();
    expect(lastSocket().since).toBe("50");
    lastSocket().open();
    lastSocket().hello({ last_seq: 50, unread: 9, version: 80 });
    lastSocket().serverClose(1006);
    await nextTimer();
    // the server's storage was reset meanwhile
    lastSocket().open();
    lastSocket().hello({ last_seq: 2, unread: 2, version: 2 });
    expect([client.unread, client.version]).toEqual([2, 2]);
    expect(client.lastSeq).toBe(2);
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("2");
    const seqs: number[] = [];
    client.on("notification", (n) => seqs.push(n.seq));
    lastSocket().receive(live(3, 3, 3, { id: "fresh-3" }));
    expect(seqs).toEqual([3]);
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(lastSocket().since).toBe("3");
    // the version counter restarted with the storage
    lastSocket().open();
    lastSocket().hello({ last_seq: 3, unread: 3, version: 3 });
    expect(client.unread).toBe(3);
  });

  it("storage: null keeps the seq for this session only", async () => {
    const { client } = await connected({ storage: null }, { last_seq: 6 });
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(lastSocket().since).toBe("6");
    client.close();
    setup({ storage: null });
    await tick();
    expect(lastSocket().since).toBeNull();
  });
});

describe("each notification once, in order", () => {
  it("emits notification, then advances lastSeq", async () => {
    const { client } = await connected({}, { last_seq: 3 });
    const seen: Array<[number, number]> = [];
    client.on("notification", (n) => seen.push([n.seq, client.lastSeq]));
    lastSocket().receive(note(4));
    expect(seen).toEqual([[4, 3]]);
    expect(client.lastSeq).toBe(4);
  });

  it("passes the notification without its frame type", async () => {
    const { client } = await connected({}, { last_seq: 3 });
    let got: Notification | undefined;
    client.on("notification", (n) => (got = n));
    lastSocket().receive(note(4, { locale: "pl" }));
    expect(got).toEqual({ ...note(4, { locale: "pl" }), type: undefined });
    expect(got && "type" in got).toBe(false);
  });

  it("dedupes across reconnects: a replay of seen seqs is emitted once", async () => {
    const { client } = await connected({}, { last_seq: 3 });
    const seqs: number[] = [];
    client.on("notification", (n) => seqs.push(n.seq));
    lastSocket().receive(live(4, 1, 2));
    lastSocket().receive(live(5, 2, 3));
    lastSocket().serverClose(1008);
    await nextTimer();
    expect(lastSocket().since).toBe("5");
    lastSocket().open();
    lastSocket().hello({ last_seq: 6 });
    // a server replaying more than asked
    lastSocket().receive(note(4));
    lastSocket().receive(note(5));
    lastSocket().receive(note(6));
    lastSocket().receive(note(6));
    expect(seqs).toEqual([4, 5, 6]);
    expect(client.items().map((n) => n.seq)).toEqual([6, 5, 4]);
  });

  it("drops an id already delivered even under a higher seq", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    const ids: string[] = [];
    client.on("notification", (n) => ids.push(n.id));
    lastSocket().receive(note(1, { id: "same" }));
    lastSocket().receive(note(2, { id: "same" }));
    lastSocket().receive(note(3));
    expect(ids).toEqual(["same", "n3"]);
  });

  it("accepts jumps over muted seqs", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    const seqs: number[] = [];
    client.on("notification", (n) => seqs.push(n.seq));
    lastSocket().receive(note(1));
    lastSocket().receive(note(4));
    expect(seqs).toEqual([1, 4]);
    expect(client.lastSeq).toBe(4);
  });

  it("remembers a bounded number of ids", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    let count = 0;
    client.on("notification", () => count++);
    for (let seq = 1; seq <= 1500; seq++) lastSocket().receive(note(seq));
    expect(count).toBe(1500);
    // the oldest ids are forgotten, but their seq is still below lastSeq: still dropped
    lastSocket().receive(note(1));
    expect(count).toBe(1500);
  });
});

describe("resume with since_version", () => {
  const sinceVersion = () => new URL(lastSocket().url).searchParams.get("since_version");

  it("a client holding items reconnects with since_version and applies the state frames", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 3 });
    expect(sinceVersion()).toBeNull();
    for (const seq of [1, 2, 3]) lastSocket().receive(live(seq, seq, 3 + seq));
    lastSocket().serverClose(1006);
    await nextTimer();
    expect([lastSocket().since, sinceVersion()]).toEqual(["3", "3"]);
    lastSocket().open();
    lastSocket().hello({ last_seq: 3, unread: 1, version: 9 });
    const read = "2026-12-05T08:00:00Z";
    lastSocket().receive({
      type: "state",
      version: 6,
      items: [
        { id: "n1", seq: 1, version: 5, read_at: read, seen_at: read },
        { id: "n2", seq: 2, version: 6, archived_at: read },
      ],
    });
    lastSocket().receive({ type: "state", version: 9, items: [{ id: "n3", seq: 3, version: 9, expired: true }] });
    expect(client.items().map((n) => [n.id, n.read_at ?? null, n.seen_at ?? null])).toEqual([["n1", read, read]]);
    // The next reconnect asks from the last state frame's version.
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(sinceVersion()).toBe("9");
  });

  it("a state item older than a change applied live leaves that field alone", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 3 });
    lastSocket().receive(live(1, 1, 4));
    lastSocket().serverClose(1006);
    await nextTimer();
    lastSocket().open();
    lastSocket().hello({ last_seq: 1, unread: 0, version: 8 });
    // Applied live first (version 8), then the older state arrives.
    lastSocket().receive({ type: "archived", ids: ["n1"], unread: 0, version: 8 });
    lastSocket().receive({ type: "state", version: 8, items: [{ id: "n1", seq: 1, version: 7, read_at: "2026-12-05T08:00:00Z" }] });
    expect(client.items()).toEqual([]); // still archived: the state item says nothing newer
  });

  it("resync drops the held items and is emitted; the next reconnect sends no since_version until items are held again", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 3 });
    const resyncs: unknown[] = [];
    client.on("resync", (r) => resyncs.push(r));
    lastSocket().receive(live(1, 1, 4));
    lastSocket().serverClose(1006);
    await nextTimer();
    lastSocket().open();
    lastSocket().hello({ last_seq: 1, unread: 0, version: 4 });
    lastSocket().receive({ type: "resync" });
    expect(client.items()).toEqual([]);
    expect(resyncs).toEqual([{ version: 4 }]);
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(sinceVersion()).toBeNull();
  });
});

describe("erasure", () => {
  it("drops everything held on `erased` and reconnects from nothing at once after 4004", async () => {
    const storage = memoryStorage();
    const { client } = await connected({ storage }, { last_seq: 0 });
    lastSocket().receive(live(1, 1, 1));
    lastSocket().receive(live(2, 2, 2));
    expect(client.items()).toHaveLength(2);
    const erased = vi.fn();
    const unread = vi.fn();
    client.on("erased", erased);
    client.on("unread", unread);

    lastSocket().receive({ type: "erased" });
    expect(erased).toHaveBeenCalledWith({ userId: "alice" });
    expect(unread).toHaveBeenLastCalledWith(expect.objectContaining({ unread: 0 }));
    expect(client.items()).toEqual([]);
    expect([client.unread, client.lastSeq]).toEqual([0, 0]);
    expect(storage.getItem("herald:seq:alice@http://gw.test")).toBe("0");

    const before = sockets().length;
    lastSocket().serverClose(4004);
    await tick();
    expect(sockets()).toHaveLength(before + 1);
    expect(lastSocket().since).toBe("0");
    expect(new URL(lastSocket().url).searchParams.get("since_version")).toBeNull();
    lastSocket().open();
    lastSocket().hello({ last_seq: 1, unread: 1, version: 1 });
    lastSocket().receive(live(1, 1, 1, { id: "fresh1" }));
    expect(client.items().map((n) => n.id)).toEqual(["fresh1"]);
    expect(client.unread).toBe(1);
  });
});
