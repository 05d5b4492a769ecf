import { describe, expect, it, vi } from "vitest";
import type { StateChange, UnreadChange } from "../src/index.js";
import { connected, fakeFetch, lastSocket, live, memoryStorage, nextTimer, note, setup, tick } from "./helpers.js";
import { legacy } from "./helpers.js";

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
    expect(ev.unread).toEqual([{ unread: 3, version: 7, counts: legacy(3) }]);
  });

  it("keeps the highest version when changes arrive out of order, and still applies item state", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 2, version: 6 });
    const ev = record(client);
    lastSocket().receive(note(1));
    lastSocket().receive(note(2));
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 0, version: 8 });
    lastSocket().receive({ type: "archived", ids: ["n2"], unread: 1, version: 7 }); // older
    expect([client.unread, client.version]).toEqual([0, 8]);
    expect(ev.unread).toEqual([{ unread: 0, version: 8, counts: legacy(0) }]);
    expect(ev.read).toEqual([{ ids: ["n1"], unread: 0, version: 8, counts: legacy(0) }]);
    expect(ev.archived).toEqual([{ ids: ["n2"], unread: 1, version: 7, counts: legacy(1) }]);
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
    expect(ev.unread).toEqual([{ unread: 0, version: 2, counts: legacy(0) }]);
  });

  it("does not emit a change without ids", async () => {
    const { client } = await connected({}, { version: 1 });
    const ev = record(client);
    lastSocket().receive({ type: "read", ids: [], unread: 0, version: 2 });
    expect(ev.read).toEqual([]);
    expect(ev.unread).toEqual([{ unread: 0, version: 2, counts: legacy(0) }]);
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
      { unread: 1, version: 5, counts: legacy(1) },
      { unread: 0, version: 7, counts: legacy(0) },
    ]);
    // the counts are the user's state, not fields of the item
    expect(client.items()[0]).not.toHaveProperty("unread");
    expect(client.items()[0]).not.toHaveProperty("version");
    expect(client.items()[0]).not.toHaveProperty("counts");
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

describe("unseen and counts per category", () => {
  const counts = (unread: number, unseen: number, by_category = {}) => ({ unread, unseen, by_category });

  it("takes every count from hello, live notifications and state frames, by version", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 1, version: 4, counts: counts(1, 1, { orders: { unread: 1, unseen: 1 } }) });
    const ev = record(client);
    expect([client.unread, client.unseen, client.counts.by_category]).toEqual([1, 1, { orders: { unread: 1, unseen: 1 } }]);
    const orders2 = counts(2, 2, { orders: { unread: 2, unseen: 2 } });
    lastSocket().receive({ ...note(1), category: "orders", unread: 2, version: 5, counts: orders2 });
    expect(client.counts).toEqual(orders2);
    const afterRead = counts(1, 1, { orders: { unread: 1, unseen: 1 } });
    lastSocket().receive({ type: "read", ids: ["n1"], unread: 1, version: 7, counts: afterRead });
    // an older state frame leaves the newer counts alone
    lastSocket().receive({ type: "archived", ids: [], unread: 9, version: 6, counts: counts(9, 9) });
    expect(client.counts).toEqual(afterRead);
    expect(ev.unread.map((u) => u.counts)).toEqual([orders2, afterRead]);
    expect(ev.read).toEqual([{ ids: ["n1"], unread: 1, version: 7, counts: afterRead }]);
  });

  it("a seen frame marks held ones up to it seen, once, and takes its counts; read ones are seen, unread again they stay seen", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 1 });
    const seen: unknown[] = [];
    client.on("seen", (s) => seen.push(s));
    for (const seq of [1, 2, 3]) lastSocket().receive(note(seq));
    const frame = { type: "seen", up_to_seq: 2, unread: 3, version: 2, counts: counts(3, 1) };
    lastSocket().receive(frame);
    lastSocket().receive(frame);
    expect(seen).toEqual([{ upToSeq: 2, unread: 3, version: 2, counts: counts(3, 1) }]);
    const seenAt = () => Object.fromEntries(client.items().map((n) => [n.id, n.seen_at ?? null]));
    expect(seenAt()).toEqual({ n3: null, n2: expect.any(String), n1: expect.any(String) });
    expect([client.unread, client.unseen]).toEqual([3, 1]);

    lastSocket().receive({ type: "read", ids: ["n3"], unread: 2, version: 3, counts: counts(2, 0) });
    const n3 = client.items().find((n) => n.id === "n3")!;
    expect(n3.seen_at).toEqual(n3.read_at);
    lastSocket().receive({ type: "unread", ids: ["n3"], unread: 3, version: 4, counts: counts(3, 0) });
    const again = client.items().find((n) => n.id === "n3")!;
    expect([again.read_at, again.seen_at]).toEqual([null, n3.read_at]);
    expect([client.unread, client.unseen]).toEqual([3, 0]);
  });

  it("a muted frame takes its counts by version and is emitted", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 5, version: 3 });
    const muted: unknown[] = [];
    client.on("muted", (m) => muted.push(m));
    const after = counts(3, 2, { orders: { unread: 3, unseen: 2 } });
    lastSocket().receive({ type: "muted", muted: ["social"], unmuted: [], unread: 3, version: 4, counts: after });
    expect(client.counts).toEqual(after);
    expect(muted).toEqual([{ muted: ["social"], unmuted: [], unread: 3, version: 4, counts: after }]);
  });

  it("snoozed ones leave items() until unsnoozed; expired ones leave for good", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 1 });
    const events: string[] = [];
    for (const e of ["snoozed", "unsnoozed", "expired"] as const) client.on(e, (c) => events.push(e + ":" + c.ids.join()));
    for (const seq of [1, 2, 3]) lastSocket().receive(note(seq));
    const until = "2030-01-01T00:00:00Z";
    lastSocket().receive({ type: "snoozed", ids: ["n2"], until, unread: 2, version: 2, counts: counts(2, 2) });
    expect(client.items().map((n) => n.id)).toEqual(["n3", "n1"]);
    lastSocket().receive({ type: "expired", ids: ["n3"], unread: 1, version: 3, counts: counts(1, 1) });
    lastSocket().receive({ type: "archived", ids: ["n1"], unread: 0, version: 4, counts: counts(0, 0) });
    expect(client.items()).toEqual([]);
    lastSocket().receive({ type: "unsnoozed", ids: ["n2"], unread: 1, version: 5, counts: counts(1, 1) });
    expect(client.items().map((n) => [n.id, n.snoozed_until ?? null, n.seen_at ?? null])).toEqual([["n2", null, null]]);
    expect(events).toEqual(["snoozed:n2", "expired:n3", "unsnoozed:n2"]);
    expect([client.unread, client.version]).toEqual([1, 5]);
  });

  it("a trimmed frame drops held ones up to its seq, and a hello's trimmed_through does on reconnect", async () => {
    const { client } = await connected({}, { last_seq: 0, unread: 0, version: 1 });
    const trimmed: number[] = [];
    client.on("trimmed", (t) => trimmed.push(t.upToSeq));
    for (const seq of [1, 2, 3, 4, 5]) lastSocket().receive(live(seq, seq, seq + 1, { counts: counts(seq, seq) }));
    lastSocket().receive({ type: "trimmed", up_to_seq: 2, unread: 3, version: 7, counts: counts(3, 3) });
    expect(client.items().map((n) => n.seq)).toEqual([5, 4, 3]);
    expect([client.unread, client.version]).toEqual([3, 7]);
    // Away while more went: the hello says so.
    lastSocket().serverClose(1006);
    await nextTimer();
    expect(lastSocket().since).toBe("5");
    lastSocket().open();
    lastSocket().hello({ last_seq: 5, unread: 1, version: 9, counts: counts(1, 1), trimmed_through: 4 });
    expect(client.items().map((n) => n.seq)).toEqual([5]);
    expect([client.unread, client.version]).toEqual([1, 9]);
    // An older floor (a second gateway's frame late) changes nothing.
    lastSocket().receive({ type: "trimmed", up_to_seq: 3, unread: 1, version: 8, counts: counts(1, 1) });
    expect(client.items().map((n) => n.seq)).toEqual([5]);
    expect(trimmed).toEqual([2, 4]);
    expect(client.trimmedThrough).toBe(4);
    // 6 and 7 go before this client got them; 6, read from storage before
    // the deletion, comes after its frame: not shown.
    const shown: number[] = [];
    client.on("notification", (n) => shown.push(n.seq));
    lastSocket().receive({ type: "trimmed", up_to_seq: 7, unread: 1, version: 10, counts: counts(1, 1) });
    lastSocket().receive(note(6));
    lastSocket().receive(note(8));
    expect(shown).toEqual([8]);
    expect(client.items().map((n) => n.seq)).toEqual([8]);
    expect(client.trimmedThrough).toBe(7);
  });

  it("snooze() posts until and hides the item; unsnooze() brings it back", async () => {
    const { fetch, calls } = fakeFetch((call) => ({
      body: { ids: ["n1"], unread: 0, version: call.url.endsWith("/snooze") ? 5 : 6, counts: counts(0, 0) },
    }));
    const { client } = await connected({ fetch }, { last_seq: 0, unread: 1, version: 4 });
    lastSocket().receive(note(1));
    await client.snooze("n1", new Date("2030-01-01T00:00:00Z"));
    expect(calls[0].url).toMatch(/\/v1\/me\/notifications\/n1\/snooze$/);
    expect(JSON.parse(calls[0].body!)).toEqual({ until: "2030-01-01T00:00:00.000Z" });
    expect(client.items()).toEqual([]);
    await client.unsnooze("n1");
    expect(calls[1].url).toMatch(/\/n1\/unsnooze$/);
    expect(client.items().map((n) => n.id)).toEqual(["n1"]);
  });

  it("markSeen() posts the newest delivered seq (or the one given) and applies the answer", async () => {
    const answer = { ids: ["n1", "n2"], unread: 2, version: 9, counts: counts(2, 0) };
    const { fetch, calls } = fakeFetch(() => ({ body: answer }));
    const { client } = await connected({ fetch }, { last_seq: 0, unread: 2, version: 8 });
    for (const seq of [1, 2]) lastSocket().receive(note(seq));
    expect(await client.markSeen()).toEqual(answer);
    expect(calls[0].method).toBe("POST");
    expect(calls[0].url).toMatch(/\/v1\/me\/notifications\/seen$/);
    expect(JSON.parse(calls[0].body!)).toEqual({ up_to_seq: 2 });
    expect(client.items().every((n) => n.seen_at)).toBe(true);
    expect([client.unseen, client.version]).toEqual([0, 9]);
    await client.markSeen(1);
    expect(JSON.parse(calls[1].body!)).toEqual({ up_to_seq: 1 });
  });
});
