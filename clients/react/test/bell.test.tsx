import { act } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { NotificationBell, useConnectionStatus } from "../src/index.js";
import { FakeClient, counts } from "./fake.js";
import { $, click, mount, type Mounted } from "./render.js";

let mounted: Mounted | null = null;
afterEach(() => {
  mounted?.unmount();
  mounted = null;
});

describe("NotificationBell", () => {
  it("shows the unread count and follows unread events", async () => {
    const client = new FakeClient();
    client.counts = counts(3);
    mounted = await mount(client, <NotificationBell />);
    const button = $(mounted.container, "button");
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.getAttribute("data-count")).toBe("3");
    expect(badge.textContent).toBe("3");
    expect(badge.hidden).toBe(false);
    expect(button.getAttribute("aria-label")).toBe("Notifications, 3 unread");

    act(() => client.emit("unread", { unread: 7, version: 2, counts: counts(7) }));
    expect(badge.getAttribute("data-count")).toBe("7");
    expect(badge.textContent).toBe("7");
    expect(button.getAttribute("aria-label")).toBe("Notifications, 7 unread");
  });

  it("caps the badge at 99+ but keeps the exact count in data-count and the label", async () => {
    const client = new FakeClient();
    client.counts = counts(99);
    mounted = await mount(client, <NotificationBell />);
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.textContent).toBe("99");
    act(() => client.emit("unread", { unread: 150, version: 2, counts: counts(150) }));
    expect(badge.textContent).toBe("99+");
    expect(badge.getAttribute("data-count")).toBe("150");
    expect($(mounted.container, "button").getAttribute("aria-label")).toBe("Notifications, 150 unread");
  });

  it("keeps a hidden badge with data-count 0 in the DOM", async () => {
    const client = new FakeClient();
    client.counts = counts(2);
    mounted = await mount(client, <NotificationBell />);
    act(() => client.emit("unread", { unread: 0, version: 2, counts: counts(0) }));
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.getAttribute("data-count")).toBe("0");
    expect(badge.hidden).toBe(true);
    expect($(mounted.container, "button").getAttribute("aria-label")).toBe("Notifications");
  });

  it("counts unseen ones, or one category, when asked", async () => {
    const client = new FakeClient();
    client.counts = { unread: 5, unseen: 2, by_category: { orders: { unread: 3, unseen: 1 } } };
    mounted = await mount(
      client,
      <>
        <NotificationBell badge="unseen" id="all" />
        <NotificationBell category="orders" id="orders" />
        <NotificationBell category="social" id="social" />
      </>,
    );
    const count = (id: string) => $(mounted!.container, `#${id} [data-herald="badge"]`).getAttribute("data-count");
    expect([count("all"), count("orders"), count("social")]).toEqual(["2", "3", "0"]);
    expect($(mounted.container, "#all").getAttribute("aria-label")).toBe("Notifications, 2 new");
    // The client emits "unread" for every change of the counts (a seen frame's too).
    act(() => client.emit("unread", { unread: 5, version: 3, counts: { unread: 5, unseen: 0, by_category: { orders: { unread: 3, unseen: 0 } } } }));
    expect([count("all"), count("orders")]).toEqual(["0", "3"]);
    act(() => client.emit("unread", { unread: 4, version: 4, counts: { unread: 4, unseen: 0, by_category: { orders: { unread: 2, unseen: 0 } } } }));
    expect(count("orders")).toBe("2");
  });

  it("passes aria-expanded, aria-controls and onClick", async () => {
    const client = new FakeClient();
    let clicks = 0;
    mounted = await mount(client, <NotificationBell expanded={false} controls="panel" onClick={() => clicks++} />);
    const button = $(mounted.container, "button");
    expect(button.getAttribute("aria-expanded")).toBe("false");
    expect(button.getAttribute("aria-controls")).toBe("panel");
    await click(button);
    expect(clicks).toBe(1);
  });

  it("unsubscribes on unmount", async () => {
    const client = new FakeClient();
    mounted = await mount(client, <NotificationBell />);
    expect(client.listenerCount("unread")).toBe(1);
    mounted.unmount();
    mounted = null;
    expect(client.listenerCount("unread")).toBe(0);
  });
});

describe("useConnectionStatus", () => {
  it("follows status events", async () => {
    const client = new FakeClient();
    client.status = "connecting";
    function Status() {
      return <span>{useConnectionStatus()}</span>;
    }
    mounted = await mount(client, <Status />);
    expect(mounted.container.textContent).toBe("connecting");
    act(() => client.emit("status", "connected"));
    expect(mounted.container.textContent).toBe("connected");
    act(() => client.emit("status", "reconnecting"));
    expect(mounted.container.textContent).toBe("reconnecting");
  });
});
