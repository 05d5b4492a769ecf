import { act } from "react";
import { afterEach, describe, expect, it } from "vitest";
import type { InboxPage } from "@herald/client";
import { useNotifications, type UseNotificationsOptions, type UseNotificationsResult } from "../src/index.js";
import { FakeClient, note, notes, counts } from "./fake.js";
import { mount, settle, type Mounted } from "./render.js";

let mounted: Mounted | null = null;
afterEach(() => {
  mounted?.unmount();
  mounted = null;
});

/** Renders the hook; `result.current` is its latest answer. */
async function renderHook(client: FakeClient, options?: UseNotificationsOptions) {
  const result: { current: UseNotificationsResult | null } = { current: null };
  function Probe(props: { options?: UseNotificationsOptions }) {
    result.current = useNotifications(props.options);
    return null;
  }
  mounted = await mount(client, <Probe options={options} />);
  await settle();
  return {
    get current(): UseNotificationsResult {
      if (result.current === null) throw new Error("not rendered");
      return result.current;
    },
  };
}

const seqs = (r: UseNotificationsResult) => r.items.map((n) => n.seq);

describe("useNotifications", () => {
  it("loads the first page", async () => {
    const client = new FakeClient();
    client.queuePage(notes(11, 20), 11);
    const hook = await renderHook(client, { pageSize: 10, render: "current" });
    expect(client.listCalls).toEqual([{ limit: 10, render: "current" }]);
    expect(seqs(hook.current)).toEqual([20, 19, 18, 17, 16, 15, 14, 13, 12, 11]);
    expect(hook.current.loading).toBe(false);
    expect(hook.current.error).toBeNull();
    expect(hook.current.hasMore).toBe(true);
  });

  it("prepends a live notification, once", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 3));
    const hook = await renderHook(client);
    act(() => client.emit("notification", note(4)));
    expect(seqs(hook.current)).toEqual([4, 3, 2, 1]);
    act(() => client.emit("notification", note(4)));
    expect(seqs(hook.current)).toEqual([4, 3, 2, 1]);
  });

  it("keeps live notifications that arrive while the first page loads", async () => {
    const client = new FakeClient();
    let answer: (p: InboxPage) => void = () => {};
    client.listImpl = () => new Promise((resolve) => (answer = resolve));
    const hook = await renderHook(client);
    expect(hook.current.loading).toBe(true);
    act(() => client.emit("notification", note(3)));
    await act(async () => answer({ items: notes(1, 2), next_before: null }));
    expect(seqs(hook.current)).toEqual([3, 2, 1]);
  });

  it("adds only live notifications that match the filter", async () => {
    const client = new FakeClient();
    client.queuePage([note(1, { category: "orders" })]);
    const hook = await renderHook(client, { category: "orders", unread: true });
    expect(client.listCalls).toEqual([{ unread: true, category: "orders" }]);
    act(() => {
      client.emit("notification", note(2, { category: "social" }));
      client.emit("notification", note(3, { category: "orders", read_at: "2026-01-01T00:00:00Z" }));
      client.emit("notification", note(4, { category: "orders" }));
    });
    expect(seqs(hook.current)).toEqual([4, 1]);
  });

  it("applies read and archived events", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 3));
    const hook = await renderHook(client);
    act(() => client.emit("read", { ids: ["n2", "n3"], unread: 1, version: 5, counts: counts(1) }));
    expect(hook.current.items.map((n) => [n.seq, n.read_at !== undefined])).toEqual([
      [3, true],
      [2, true],
      [1, false],
    ]);
    act(() => client.emit("archived", { ids: ["n2"], unread: 1, version: 6, counts: counts(1) }));
    expect(seqs(hook.current)).toEqual([3, 1]);
    // An archived one delivered again (a resume) stays out.
    act(() => client.emit("notification", note(2)));
    expect(seqs(hook.current)).toEqual([3, 1]);
  });

  it("applies unread and unarchived events", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 3));
    const hook = await renderHook(client);
    act(() => client.emit("read", { ids: ["n2", "n3"], unread: 1, version: 5, counts: counts(1) }));
    act(() => client.emit("archived", { ids: ["n1"], unread: 0, version: 6, counts: counts(0) }));
    act(() => client.emit("markedUnread", { ids: ["n3"], unread: 1, version: 7, counts: counts(1) }));
    expect(hook.current.items.map((n) => [n.seq, !!n.read_at])).toEqual([
      [3, false],
      [2, true],
    ]);
    // A page listed before the unread change reached the server, answered
    // after its event: it says n3 is read, the latest event says unread.
    client.queuePage([
      note(3, { read_at: "2026-01-01T00:00:00Z" }),
      note(2, { read_at: "2026-01-01T00:00:00Z" }),
      note(1),
    ]);
    await act(async () => client.emit("unarchived", { ids: ["n1"], unread: 2, version: 8, counts: counts(2) }));
    await settle();
    expect(client.listCalls).toHaveLength(2);
    expect(hook.current.items.map((n) => [n.seq, !!n.read_at])).toEqual([
      [3, false],
      [2, true],
      [1, false],
    ]);
    // Read again later: the newest event wins over the page and the unread.
    act(() => client.emit("read", { ids: ["n3"], unread: 1, version: 9, counts: counts(1) }));
    client.queuePage([note(3), note(2, { read_at: "2026-01-01T00:00:00Z" }), note(1)]);
    await act(async () => client.emit("unsnoozed", { ids: ["n9"], unread: 1, version: 10, counts: counts(1) }));
    await settle();
    expect(hook.current.items.map((n) => [n.seq, !!n.read_at])).toEqual([
      [3, true],
      [2, true],
      [1, false],
    ]);
  });

  it("drops snoozed and expired ones, and lists again when snoozed ones come back", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 4));
    const hook = await renderHook(client);
    act(() => client.emit("snoozed", { ids: ["n2"], unread: 3, version: 5, counts: counts(3) }));
    act(() => client.emit("expired", { ids: ["n4"], unread: 2, version: 6, counts: counts(2) }));
    expect(seqs(hook.current)).toEqual([3, 1]);
    client.queuePage([note(3), note(2), note(1)]);
    await act(async () => client.emit("unsnoozed", { ids: ["n2"], unread: 3, version: 7, counts: counts(3) }));
    await settle();
    expect(client.listCalls).toHaveLength(2);
    expect(seqs(hook.current)).toEqual([3, 2, 1]);
  });

  it("drops every item up to a trimmed event's seq", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 5));
    const hook = await renderHook(client);
    act(() => client.emit("trimmed", { upToSeq: 3 }));
    expect(seqs(hook.current)).toEqual([5, 4]);
    act(() => client.emit("trimmed", { upToSeq: 2 }));
    expect(seqs(hook.current)).toEqual([5, 4]);
    expect(client.listCalls).toHaveLength(1);
    // A page read before the deletion and answered after it.
    client.trimmedThrough = 3;
    client.queuePage(notes(1, 6));
    await act(async () => client.emit("unsnoozed", { ids: ["n6"], unread: 3, version: 7, counts: counts(3) }));
    await settle();
    expect(seqs(hook.current)).toEqual([6, 5, 4]);
  });

  it("lists the unread-only view again when one it does not hold is marked unread", async () => {
    const client = new FakeClient();
    client.queuePage(notes(2, 2));
    const hook = await renderHook(client, { unread: true });
    client.queuePage(notes(1, 2));
    await act(async () => client.emit("markedUnread", { ids: ["n1"], unread: 2, version: 7, counts: counts(2) }));
    await settle();
    expect(client.listCalls).toEqual([{ unread: true }, { unread: true }]);
    expect(seqs(hook.current)).toEqual([2, 1]);
  });

  it("keeps read items in the unread-only view until refresh", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 2));
    const hook = await renderHook(client, { unread: true });
    act(() => client.emit("read", { ids: ["n2"], unread: 1, version: 5, counts: counts(1) }));
    expect(seqs(hook.current)).toEqual([2, 1]);
    expect(hook.current.items[0]!.read_at).toBeDefined();
    client.queuePage([note(1)]);
    await act(() => hook.current.refresh());
    expect(seqs(hook.current)).toEqual([1]);
    expect(client.listCalls).toEqual([{ unread: true }, { unread: true }]);
  });

  it("loadMore asks for the page before next_before and appends it", async () => {
    const client = new FakeClient();
    client.queuePage(notes(4, 5), 4);
    client.queuePage(notes(2, 3), 2);
    client.queuePage(notes(1, 1), null);
    const hook = await renderHook(client, { pageSize: 2 });
    await act(() => hook.current.loadMore());
    expect(client.listCalls[1]).toEqual({ limit: 2, before: 4 });
    expect(seqs(hook.current)).toEqual([5, 4, 3, 2]);
    expect(hook.current.hasMore).toBe(true);
    await act(() => hook.current.loadMore());
    expect(client.listCalls[2]).toEqual({ limit: 2, before: 2 });
    expect(seqs(hook.current)).toEqual([5, 4, 3, 2, 1]);
    expect(hook.current.hasMore).toBe(false);
    await act(() => hook.current.loadMore());
    expect(client.listCalls).toHaveLength(3);
  });

  it("loadMore twice at once fetches one page", async () => {
    const client = new FakeClient();
    client.queuePage(notes(3, 4), 3);
    client.queuePage(notes(1, 2), null);
    const hook = await renderHook(client);
    await act(() => Promise.all([hook.current.loadMore(), hook.current.loadMore()]));
    expect(client.listCalls).toHaveLength(2);
    expect(seqs(hook.current)).toEqual([4, 3, 2, 1]);
  });

  it("a page fetched before a read event does not bring the old state back", async () => {
    const client = new FakeClient();
    client.queuePage(notes(3, 4), 3);
    let answer: (p: InboxPage) => void = () => {};
    const hook = await renderHook(client);
    client.listImpl = () => new Promise((resolve) => (answer = resolve));
    let more: Promise<void> = Promise.resolve();
    act(() => {
      more = hook.current.loadMore();
    });
    act(() => client.emit("read", { ids: ["n2"], unread: 3, version: 9, counts: counts(3) }));
    await act(async () => {
      answer({ items: notes(1, 2), next_before: null });
      await more;
    });
    expect(hook.current.items.find((n) => n.id === "n2")!.read_at).toBeDefined();
    expect(hook.current.items.find((n) => n.id === "n1")!.read_at).toBeUndefined();
  });

  it("markRead marks at once and undoes it when the request fails", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 2));
    const hook = await renderHook(client);
    await act(() => hook.current.markRead("n2"));
    expect(client.markReadCalls).toEqual([["n2"]]);
    expect(hook.current.items[0]!.read_at).toBeDefined();
    // Already read: no request.
    await act(() => hook.current.markRead(["n2"]));
    expect(client.markReadCalls).toHaveLength(1);

    client.failMarkRead = true;
    let failed = false;
    await act(() => hook.current.markRead("n1").catch(() => void (failed = true)));
    expect(failed).toBe(true);
    expect(hook.current.items[1]!.read_at).toBeUndefined();
  });

  it("archive removes the item and markAllRead marks everything", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 3));
    const hook = await renderHook(client);
    await act(() => hook.current.archive("n2"));
    expect(client.archiveCalls).toEqual(["n2"]);
    expect(seqs(hook.current)).toEqual([3, 1]);
    await act(() => hook.current.markAllRead());
    expect(client.markAllReadCalls).toBe(1);
    expect(hook.current.items.every((n) => n.read_at !== undefined)).toBe(true);
  });

  it("shows a failed first page as an error and recovers on refresh", async () => {
    const client = new FakeClient();
    client.queueFailure(new Error("503"));
    const hook = await renderHook(client);
    expect(hook.current.error?.message).toBe("503");
    expect(hook.current.loading).toBe(false);
    client.queuePage(notes(1, 1));
    await act(() => hook.current.refresh());
    expect(hook.current.error).toBeNull();
    expect(seqs(hook.current)).toEqual([1]);
  });

  it("lists again after a reconnect (read changes are not resumed)", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 2));
    const hook = await renderHook(client);
    client.queuePage([note(2), note(1, { read_at: "2026-01-01T00:00:00Z" })]);
    act(() => client.emit("status", "reconnecting"));
    await act(async () => {
      client.emit("status", "connected");
    });
    await settle();
    expect(client.listCalls).toHaveLength(2);
    expect(hook.current.items[1]!.read_at).toBe("2026-01-01T00:00:00Z");
  });
});
