import { act } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { NotificationBell, useConnectionStatus } from "../src/index.js";
import { FakeClient } from "./fake.js";
import { $, click, mount, type Mounted } from "./render.js";

let mounted: Mounted | null = null;
afterEach(() => {
  mounted?.unmount();
  mounted = null;
});

describe("NotificationBell", () => {
  it("shows the unread count and follows unread events", async () => {
    const client = new FakeClient();
    client.unread = 3;
    mounted = await mount(client, <NotificationBell />);
    const button = $(mounted.container, "button");
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.getAttribute("data-count")).toBe("3");
    expect(badge.textContent).toBe("3");
    expect(badge.hidden).toBe(false);
    expect(button.getAttribute("aria-label")).toBe("Notifications, 3 unread");

    act(() => client.emit("unread", { unread: 7, version: 2 }));
    expect(badge.getAttribute("data-count")).toBe("7");
    expect(badge.textContent).toBe("7");
    expect(button.getAttribute("aria-label")).toBe("Notifications, 7 unread");
  });

  it("caps the badge at 99+ but keeps the exact count in data-count and the label", async () => {
    const client = new FakeClient();
    client.unread = 99;
    mounted = await mount(client, <NotificationBell />);
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.textContent).toBe("99");
    act(() => client.emit("unread", { unread: 150, version: 2 }));
    expect(badge.textContent).toBe("99+");
    expect(badge.getAttribute("data-count")).toBe("150");
    expect($(mounted.container, "button").getAttribute("aria-label")).toBe("Notifications, 150 unread");
  });

  it("keeps a hidden badge with data-count 0 in the DOM", async () => {
    const client = new FakeClient();
    client.unread = 2;
    mounted = await mount(client, <NotificationBell />);
    act(() => client.emit("unread", { unread: 0, version: 2 }));
    const badge = $(mounted.container, '[data-herald="badge"]');
    expect(badge.getAttribute("data-count")).toBe("0");
    expect(badge.hidden).toBe(true);
    expect($(mounted.container, "button").getAttribute("aria-label")).toBe("Notifications");
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
