import { act } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { HeraldProvider, Inbox } from "../src/index.js";
import { FakeClient, note, notes, counts } from "./fake.js";
import { $, $$, click, mount, settle, type Mounted } from "./render.js";

let mounted: Mounted | null = null;
afterEach(() => {
  mounted?.unmount();
  mounted = null;
});

const items = (m: Mounted) => $$(m.container, '[data-herald="item"]');

describe("Inbox", () => {
  it("shows the empty state", async () => {
    const client = new FakeClient();
    client.queuePage([]);
    mounted = await mount(client, <Inbox />);
    await settle();
    expect($(mounted.container, '[data-herald="empty"]').textContent).toMatch(/caught up/);
    expect(items(mounted)).toHaveLength(0);
    expect(mounted.container.querySelector('[data-herald="load-more"]')).toBeNull();
  });

  it("shows the error state and retries", async () => {
    const client = new FakeClient();
    client.queueFailure(new Error("503"));
    mounted = await mount(client, <Inbox />);
    await settle();
    const error = $(mounted.container, '[data-herald="error"]');
    expect(error.getAttribute("role")).toBe("alert");
    client.queuePage(notes(1, 2));
    await click($(error, "button"));
    await settle();
    expect(mounted.container.querySelector('[data-herald="error"]')).toBeNull();
    expect(items(mounted).map((el) => el.dataset.seq)).toEqual(["2", "1"]);
  });

  it("renders items with the contract attributes", async () => {
    const client = new FakeClient();
    client.queuePage([note(2, { title: "Order shipped", body: "It left" }), note(1, { read_at: "2026-01-01T00:00:00Z" })]);
    mounted = await mount(client, <Inbox locale="en" />);
    await settle();
    const [first, second] = items(mounted);
    expect(first!.dataset.id).toBe("n2");
    expect(first!.dataset.seq).toBe("2");
    expect(first!.dataset.read).toBe("false");
    expect(second!.dataset.read).toBe("true");
    expect(first!.tabIndex).toBe(0);
    expect($(first!, '[data-herald="item-title"]').textContent).toBe("Order shipped");
    expect($(first!, '[data-herald="item-body"]').textContent).toBe("It left");
    expect($(first!, '[data-herald="item-title"]').getAttribute("dir")).toBe("auto");
    expect($(first!, "time").textContent).toBe("5 minutes ago");
    expect(first!.querySelector('[data-herald="mark-read"]')).not.toBeNull();
    expect(second!.querySelector('[data-herald="mark-read"]')).toBeNull();
    expect(second!.querySelector('[data-herald="archive"]')).not.toBeNull();
  });

  it("marks an item read when it is clicked or opened with Enter", async () => {
    const client = new FakeClient();
    client.counts = counts(2);
    client.queuePage(notes(1, 2));
    const opened: string[] = [];
    mounted = await mount(client, <Inbox onOpen={(n) => opened.push(n.id)} />);
    await settle();
    await click($(items(mounted)[0]!, '[data-herald="item-body"]'));
    await settle();
    expect(client.markReadCalls).toEqual([["n2"]]);
    expect(items(mounted)[0]!.dataset.read).toBe("true");

    await act(async () => {
      items(mounted!)[1]!.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    });
    await settle();
    expect(client.markReadCalls).toEqual([["n2"], ["n1"]]);
    expect(opened).toEqual(["n2", "n1"]);

    // Opening a read item does not call markRead again.
    await click(items(mounted)[0]!);
    expect(client.markReadCalls).toHaveLength(2);
  });

  it("has per-item mark-read and archive buttons and mark-all-read", async () => {
    const client = new FakeClient();
    client.counts = counts(3);
    client.queuePage(notes(1, 3));
    mounted = await mount(client, <Inbox />);
    await settle();
    await click($(items(mounted)[1]!, '[data-herald="mark-read"]'));
    await settle();
    expect(client.markReadCalls).toEqual([["n2"]]);
    await click($(items(mounted)[0]!, '[data-herald="archive"]'));
    await settle();
    expect(client.archiveCalls).toEqual(["n3"]);
    expect(client.markReadCalls).toHaveLength(1); // the archive click did not open the item
    expect(items(mounted).map((el) => el.dataset.id)).toEqual(["n2", "n1"]);
    await click($(mounted.container, '[data-herald="mark-all-read"]'));
    await settle();
    expect(client.markAllReadCalls).toBe(1);
    expect(items(mounted).map((el) => el.dataset.read)).toEqual(["true", "true"]);
  });

  it("shows a failed action without losing the list", async () => {
    const client = new FakeClient();
    client.failMarkRead = true;
    client.queuePage(notes(1, 1));
    mounted = await mount(client, <Inbox />);
    await settle();
    await click(items(mounted)[0]!);
    await settle();
    expect(mounted.container.querySelector('[data-herald="action-error"]')).not.toBeNull();
    expect(items(mounted)[0]!.dataset.read).toBe("false");
  });

  it("filters unread only and by category", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 2));
    mounted = await mount(client, <Inbox categories={["orders", { value: "social", label: "Social" }]} />);
    await settle();
    const filter = $(mounted.container, '[data-herald="unread-filter"]');
    expect(filter.getAttribute("aria-pressed")).toBe("false");
    client.queuePage([note(2)]);
    await click(filter);
    await settle();
    expect(filter.getAttribute("aria-pressed")).toBe("true");
    expect(client.listCalls.at(-1)).toEqual({ unread: true });

    const tabs = $$(mounted.container, '[role="tab"]');
    expect(tabs.map((t) => t.textContent)).toEqual(["All", "orders", "Social"]);
    expect(tabs[0]!.getAttribute("aria-selected")).toBe("true");
    client.queuePage([]);
    await click(tabs[2]!);
    await settle();
    expect(client.listCalls.at(-1)).toEqual({ unread: true, category: "social" });
    expect(tabs[2]!.getAttribute("aria-selected")).toBe("true");
    expect($(mounted.container, '[data-herald="empty"]').textContent).toMatch(/No unread/);
  });

  it("loads more with the button", async () => {
    const client = new FakeClient();
    client.queuePage(notes(3, 4), 3);
    client.queuePage(notes(1, 2), null);
    mounted = await mount(client, <Inbox pageSize={2} />);
    await settle();
    await click($(mounted.container, '[data-herald="load-more"]'));
    await settle();
    expect(client.listCalls.at(-1)).toEqual({ limit: 2, before: 3 });
    expect(items(mounted).map((el) => el.dataset.seq)).toEqual(["4", "3", "2", "1"]);
    expect(mounted.container.querySelector('[data-herald="load-more"]')).toBeNull();
  });

  it("shows a failed older page below the list and retries it", async () => {
    const client = new FakeClient();
    client.queuePage(notes(3, 4), 3);
    client.queueFailure(new Error("503"));
    client.queuePage(notes(1, 2), null);
    mounted = await mount(client, <Inbox />);
    await settle();
    await click($(mounted.container, '[data-herald="load-more"]'));
    await settle();
    const error = $(mounted.container, '[data-herald="error"]');
    expect(items(mounted)).toHaveLength(2);
    await click($(error, "button"));
    await settle();
    expect(client.listCalls.slice(1)).toEqual([{ before: 3 }, { before: 3 }]);
    expect(items(mounted).map((el) => el.dataset.seq)).toEqual(["4", "3", "2", "1"]);
    expect(mounted.container.querySelector('[data-herald="error"]')).toBeNull();
  });

  it("prepends live notifications", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 1));
    mounted = await mount(client, <Inbox />);
    await settle();
    act(() => client.emit("notification", note(2, { title: "Live" })));
    expect(items(mounted).map((el) => el.dataset.seq)).toEqual(["2", "1"]);
    expect($(items(mounted)[0]!, '[data-herald="item-title"]').textContent).toBe("Live");
  });

  it("lists again when the locale changes with render current", async () => {
    const client = new FakeClient();
    client.queuePage(notes(1, 1));
    mounted = await mount(client, <Inbox render="current" locale="en" />);
    await settle();
    client.queuePage([note(1, { title: "Titel 1" })]);
    await act(async () => {
      mounted!.root.render(
        <HeraldProvider client={client}>
          <Inbox render="current" locale="de" />
        </HeraldProvider>,
      );
    });
    await settle();
    expect(client.listCalls).toEqual([{ render: "current" }, { render: "current" }]);
    expect($(mounted.container, '[data-herald="item-title"]').textContent).toBe("Titel 1");
  });
});
