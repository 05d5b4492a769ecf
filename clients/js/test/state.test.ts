import { describe, expect, it, vi } from "vitest";
import type { StateChange, UnreadChange } from "../src/index.js";
import { connected, fakeFetch, lastSocket, live, memoryStorage, nextTimer, note, setup, tick } from "./helpers.js";

function record(client: ReturnType<typeof setup>["client"]) {
  const unread: UnreadChange[] = [];
  const read: StateChange[] = [];
  const archived: StateChange[] = [];
  client.on("unread", (u) => unread.push(u));
  client.on("read", (c) => read.push(c));
  client.on("archived", (c) => archived.push(c));
  return { unread, read, archived };
}

describe("unread count and version", () => {
  it("starts at version -1 and takes hello's state", async () => {
    const { client } = setup();
    const ev = record(client);
    expect(client.version).toBe(-1);
    expect(client.unread).toBe(0);
    await tick();
    lastSocket().open();
    lastSocket().hello({ unread: 3, version: 7 });
    expect([client.unread, client.version]).toEqual([3, 7]);
    expect(ev.unread).toEqual([{ unread: 3, version: 7 }]);
  });

  it("keeps the highest version when changes arrive out of order, and still applies item state", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 2, version: 6 });
    const ev = record(client);
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 8 });
    lastSocket().receive({ type: "archived", ids: ["n2"], unread: 1, version: 7 }); // older
    expect([client.unread, client.version]).toEqual([0, 8]);
    expect(ev.unread).toEqual([{ unread: 0, version: 8 }]);
    expect(ev.read).toEqual([{ ids: ["n1"], unread: 0, version: 8 }]);
    expect(ev.archived).toEqual([{ ids: ["n2"], unread: 1, version: 7 }]);
    expect(client.items().map((n) => n.id)).toEqual(["n1"]);
    expect(client.items()[0].read_at).toEqual(expect.any(String));
  });

  it("ignores a hello with an older version after a reconnect", async () => {
    const { client } = await connected({}, { unread: 4, version: 10 });
    lastSocket().serverClose(1006);
    await vi.advanceTimersToNextTimerAsync();
    await tick();
    lastSocket().open();
    lastSocket().hello({ unread: 9, version: 9 });
    expect([client.unread, client.version]).toEqual([4, 10]);
  });

  it("emits a change once: the same frame twice, or a REST answer then its frame", async () => {
    const { fetch } = fakeFetch(() => ({ body: { ids: ["n1"], unread: 0, version: 2 } }));
    const { client } = await connected({ fetch }, { last_seq: 0, unread: 1, version: 1 });
    const ev = record(client);
    lastSocket().receive(note(1));
    await client.markRead(["n1"]);
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 2 });
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 2 });
    expect(ev.read).toHaveLength(1);
    expect(ev.unread).toEqual([{ unread: 0, version: 2 }]);
  });

  it("does not emit a change without ids", async () => {
    const { client } = await connected({}, { version: 1 });
    const ev = record(client);
    lastSocket().receive({ type: "read", ids: [], unread: 0, version: 2 });
    expect(ev.read).toEqual([]);
    expect(ev.unread).toEqual([{ unread: 0, version: 2 }]);
  });
});

describe("counts that come with notifications", () => {
  it("a live notification carries the count after it: taken by version, never lowered by an older one", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 4 });
    const ev = record(client);
    lastSocket().receive(live(1, 1, 5));
    expect([client.unread, client.version]).toEqual([1, 5]);
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 7 });
    // stored before that read, delivered after it: its count is older
    lastSocket().receive(live(2, 1, 6));
    expect([client.unread, client.version]).toEqual([0, 7]);
    expect(ev.unread).toEqual([
      { unread: 1, version: 5 },
      { unread: 0, version: 7 },
    ]);
    // the counts are the user's state, not fields of the item
    expect(client.items()[0]).not.toHaveProperty("unread");
    expect(client.items()[0]).not.toHaveProperty("version");
  });

  it("notifications without counts beyond what the count includes are counted by asking, once per burst", async () => {
    const { fetch, calls } = fakeFetch(() => ({ body: { unread: 4, version: 9, last_seq: 4 } }));
    const { client } = await connected({ fetch }, { last_seq: 2, unread: 2, version: 3 });
    lastSocket().receive(note(3));
    lastSocket().receive(note(4));
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(300);
    expect(calls.map((c) => c.url)).toEqual(["http://gw.test/v1/me/unread-count"]);
    expect([client.unread, client.version]).toEqual([4, 9]);
    // now counted: nothing more to ask
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toHaveLength(1);
  });

  it("a resume backlog that hello already counted, or a live frame that counts itself, asks nothing", async () => {
    const { fetch, calls } = fakeFetch(() => ({ body: { unread: 0, version: 0, last_seq: 0 } }));
    const { client } = await connected({ fetch, storage: memoryStorage() }, { last_seq: 3, unread: 3, version: 3 });
    lastSocket().receive(live(4, 4, 4));
    lastSocket().serverClose(1006);
    await nextTimer();
    lastSocket().open();
    lastSocket().hello({ last_seq: 6, unread: 6, version: 6 });
    lastSocket().receive(note(5));
    lastSocket().receive(note(6));
    await vi.advanceTimersByTimeAsync(1000);
    expect(calls).toHaveLength(0);
    expect([client.unread, client.version, client.lastSeq]).toEqual([6, 6, 6]);
  });
});

describe("items()", () => {
  it("holds live notifications newest first, each id once, archived ones left out", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    lastSocket().receive(note(1));
    lastSocket().receive(note(3));
    lastSocket().receive(note(2)); // dropped: below lastSeq
    lastSocket().receive(note(4, { archived_at: "2026-11-28T00:00:00Z" })); // from a resume
    expect(client.items().map((n) => n.seq)).toEqual([3, 1]);
    lastSocket().receive({ type: "archived", ids: ["n3"], unread: 0, version: 5 });
    expect(client.items().map((n) => n.seq)).toEqual([1]);
  });

  it("replaces items instead of mutating them (safe for UI state)", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    lastSocket().receive(note(1));
    const before = client.items()[0];
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 5 });
    const after = client.items()[0];
    expect(before.read_at).toBeUndefined();
    expect(after.read_at).toBeDefined();
    expect(after).not.toBe(before);
  });
});

describe("events", () => {
  it("on() returns an unsubscribe function", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    const seqs: number[] = [];
    const off = client.on("notification", (n) => seqs.push(n.seq));
    lastSocket().receive(note(1));
    off();
    lastSocket().receive(note(2));
    expect(seqs).toEqual([1]);
  });

  it("a listener that throws does not stop the others or the client", async () => {
    const { client } = await connected({}, { last_seq: 0 });
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const seqs: number[] = [];
    client.on("notification", () => {
      throw new Error("app bug");
    });
    client.on("notification", (n) => seqs.push(n.seq));
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    expect(seqs).toEqual([1, 2]);
    expect(client.lastSeq).toBe(2);
    expect(log).toHaveBeenCalledTimes(2);
  });
});
