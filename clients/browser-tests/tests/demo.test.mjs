// The demo inbox in a real Chromium against the real services: what a user
// sees in two tabs, across a gateway restart, a reload, going offline, a
// language switch, and what a page on another origin cannot do.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { join } from "node:path";

import { launch } from "../lib/browser.mjs";
import { Stack, eventually, results } from "../lib/stack.mjs";

let stack;
let browser;

before(async () => {
  stack = await Stack.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const badge = (page) => page.locator('[data-herald="badge"]').getAttribute("data-count").then(Number);
const status = (page) => page.locator('[data-herald="status"]').textContent();
const delivered = (page) => page.evaluate(() => [...window.heraldDemo.delivered]);
const items = (page) =>
  page.$$eval('[data-herald="item"]', (nodes) =>
    nodes.map((node) => ({
      id: node.getAttribute("data-id"),
      seq: Number(node.getAttribute("data-seq")),
      read: node.getAttribute("data-read") === "true",
      title: node.querySelector('[data-herald="item-title"]')?.textContent ?? "",
    })),
  );

async function open(context, token) {
  const page = await context.newPage();
  await page.goto(stack.demoUrl(token));
  await eventually("connected", 10_000, async () => (await status(page)) === "connected");
  return page;
}

async function showsItem(page, id, ms = 10_000) {
  return eventually(`item ${id} shown`, ms, async () => (await items(page)).find((item) => item.id === id));
}

const screenshot = (page, name) => page.screenshot({ path: join(results, `${name}.png`) });

/** Seqs delivered as `notification` events: each once, consecutive. */
function assertGapless(seqs, what) {
  assert.deepEqual(new Set(seqs).size, seqs.length, `${what}: no duplicate in ${seqs}`);
  for (let i = 1; i < seqs.length; i++) {
    assert.equal(seqs[i], seqs[i - 1] + 1, `${what}: consecutive seqs ${seqs}`);
  }
}

describe("the demo inbox", () => {
  test("two tabs of one user: a notification appears in both within 1 s, and a read in one clears the other's badge", async () => {
    const context = await browser.newContext();
    const token = stack.token("ada");
    const [tabA, tabB] = [await open(context, token), await open(context, token)];
    assert.equal(await badge(tabA), 0);

    const sent = Date.now();
    const id = await stack.notify({ user_id: "ada", title: "Order shipped", body: "Your parcel left the warehouse", category: "orders" });
    await Promise.all([showsItem(tabA, id, 1_000), showsItem(tabB, id, 1_000)]);
    const shownWithin = Date.now() - sent;
    assert.ok(shownWithin <= 1_000, `shown in both tabs after ${shownWithin} ms`);
    await eventually("badge 1 in both tabs", 1_000, async () => (await badge(tabA)) === 1 && (await badge(tabB)) === 1);
    await screenshot(tabA, "two-tabs-new-notification");

    await tabA.locator(`[data-herald="item"][data-id="${id}"] [data-herald="mark-read"]`).click();
    await eventually("tab B's badge drops to 0 without a reload", 5_000, async () => (await badge(tabB)) === 0);
    const inB = (await items(tabB)).find((item) => item.id === id);
    assert.equal(inB.read, true, "tab B shows it read");
    assert.equal(await badge(tabA), 0);
    await context.close();
  });

  test("the gateway stopped with SIGTERM and started again while a notification is sent: shown once, no gap", async () => {
    const context = await browser.newContext();
    const page = await open(context, stack.token("bob"));
    const first = await stack.notify({ user_id: "bob", title: "Before the restart", body: "one" });
    await showsItem(page, first);

    await stack.stopService("ws-gateway");
    await eventually("the page notices", 10_000, async () => (await status(page)) !== "connected");
    const during = await stack.notify({ user_id: "bob", title: "During the restart", body: "two" });
    await stack.startService("ws-gateway");

    await showsItem(page, during, 45_000);
    const after = await stack.notify({ user_id: "bob", title: "After the restart", body: "three" });
    await showsItem(page, after);
    const seqs = await delivered(page);
    assert.deepEqual(seqs, [1, 2, 3], "each delivered once, in order");
    const shown = await items(page);
    assert.equal(shown.filter((item) => item.id === during).length, 1, "shown once");
    // The count may trail the items: ones sent from storage carry none, and the client asks once they stop coming.
    await eventually("badge 3", 5_000, async () => (await badge(page)) === 3);
    await context.close();
  });

  test("a reload resumes from the stored sequence: old items are not delivered again, what came meanwhile is", async () => {
    const context = await browser.newContext();
    const token = stack.token("cleo");
    const page = await open(context, token);
    for (const n of [1, 2]) {
      await showsItem(page, await stack.notify({ user_id: "cleo", title: `Item ${n}`, body: "b" }));
    }
    assert.deepEqual(await delivered(page), [1, 2]);

    await page.reload();
    await eventually("connected again", 10_000, async () => (await status(page)) === "connected");
    await eventually("the inbox lists both", 5_000, async () => (await items(page)).length === 2);
    assert.deepEqual(await delivered(page), [], "nothing replayed as new after the reload");
    const third = await stack.notify({ user_id: "cleo", title: "Item 3", body: "b" });
    await showsItem(page, third);
    assert.deepEqual(await delivered(page), [3]);
    // The count may trail the items: ones sent from storage carry none, and the client asks once they stop coming.
    await eventually("badge 3", 5_000, async () => (await badge(page)) === 3);

    // Away (the page closed) while one more is sent: opening the page again
    // resumes from the stored sequence, so exactly that one is delivered.
    await page.close();
    const fourth = await stack.notify({ user_id: "cleo", title: "Item 4", body: "sent while away" });
    const again = await open(context, token);
    await showsItem(again, fourth);
    assert.deepEqual(await delivered(again), [4], "the one sent while away, nothing older");
    // The count may trail the items: ones sent from storage carry none, and the client asks once they stop coming.
    await eventually("badge 4", 5_000, async () => (await badge(again)) === 4);
    await context.close();
  });

  test("offline while 5 are sent, then online: all 5 arrive, in order", async () => {
    const context = await browser.newContext();
    const page = await open(context, stack.token("dan"));
    await showsItem(page, await stack.notify({ user_id: "dan", title: "Online", body: "b" }));

    await context.setOffline(true);
    await eventually("status offline", 5_000, async () => (await status(page)) === "offline");
    const ids = [];
    for (let n = 1; n <= 5; n++) ids.push(await stack.notify({ user_id: "dan", title: `While offline ${n}`, body: "b" }));
    await screenshot(page, "offline");
    await context.setOffline(false);

    for (const id of ids) await showsItem(page, id, 15_000);
    const seqs = await delivered(page);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6], "the 5 follow the first, in order, once");
    assertGapless(seqs, "dan");
    // The count may trail the items: ones sent from storage carry none, and the client asks once they stop coming.
    await eventually("badge 6", 5_000, async () => (await badge(page)) === 6);
    await context.close();
  });

  test("switching the language renders a templated notification again", async () => {
    const context = await browser.newContext();
    const page = await open(context, stack.token("eve"));
    const id = await stack.notify({ user_id: "eve", template: "order_shipped", params: { count: 3, name: "Ada" } });
    const shown = await showsItem(page, id);
    assert.equal(shown.title, "Your order shipped");

    await page.locator('[data-herald="locale"]').selectOption("pl");
    await eventually("title in Polish", 5_000, async () => (await items(page)).find((item) => item.id === id)?.title === "Zamówienie wysłane");
    await page.locator('[data-herald="locale"]').selectOption("de");
    await eventually("title in German", 5_000, async () => (await items(page)).find((item) => item.id === id)?.title === "Ihre Bestellung wurde versandt");
    await screenshot(page, "demo-inbox");
    await context.close();
  });

  test("a page on another origin can neither open the socket nor read the inbox", async () => {
    const context = await browser.newContext();
    const token = stack.token("fay");
    await stack.notify({ user_id: "fay", title: "Private", body: "not for other sites" });
    const page = await context.newPage();
    await page.goto(stack.demoUrl(token, { origin: stack.otherOrigin }));

    const probe = await page.evaluate(
      async ({ gateway, token }) => {
        const rest = await fetch(`${gateway}/v1/me/notifications`, { headers: { authorization: `Bearer ${token}` } }).then(
          (response) => `read ${response.status}`,
          (err) => `blocked: ${err.name}`,
        );
        const socket = await new Promise((done) => {
          const ws = new WebSocket(`${gateway.replace("http", "ws")}/v1/ws`, ["herald.v1", `herald.token.${token}`]);
          ws.onopen = () => done("opened");
          ws.onclose = (event) => done(`closed ${event.code}`);
        });
        return { rest, socket };
      },
      { gateway: stack.gatewayUrl, token },
    );
    assert.equal(probe.rest, "blocked: TypeError", "the browser keeps the inbox from the page");
    assert.equal(probe.socket, "closed 1006", "the upgrade is refused");
    await eventually("the demo shows the error state", 10_000, async () => (await page.locator('[data-herald="error"]').count()) > 0);
    assert.notEqual(await status(page), "connected");
    assert.equal((await items(page)).length, 0);

    // The same token on the allowed origin works: it was the origin.
    const allowed = await open(context, token);
    await eventually("listed on the allowed origin", 5_000, async () => (await items(allowed)).length === 1);
    await context.close();
  });
});
