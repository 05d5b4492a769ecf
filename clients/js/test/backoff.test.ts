import { describe, expect, it, vi } from "vitest";
import { backoffDelay, drainDelay, FLOOR_MS } from "../src/backoff.js";
import { lastSocket, nextTimer, setup, sockets, tick } from "./helpers.js";

const ALMOST_ONE = 1 - 1e-9;

describe("backoffDelay", () => {
  it("stays within [floor, min(cap, base * 2^attempt)]", () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const window = Math.min(30_000, 500 * 2 ** attempt);
      expect(backoffDelay(attempt, 500, 30_000, () => 0)).toBe(FLOOR_MS);
      expect(backoffDelay(attempt, 500, 30_000, () => ALMOST_ONE)).toBeCloseTo(window, 3);
      const mid = backoffDelay(attempt, 500, 30_000, () => 0.5);
      expect(mid).toBeGreaterThanOrEqual(FLOOR_MS);
      expect(mid).toBeLessThanOrEqual(window);
    }
  });

  it("never goes below the floor, even with a tiny base", () => {
    expect(backoffDelay(0, 10, 30_000, () => 0.5)).toBe(FLOOR_MS);
    expect(backoffDelay(0, 0, 0, () => ALMOST_ONE)).toBe(FLOOR_MS);
  });

  it("does not overflow for huge attempt counts", () => {
    expect(backoffDelay(5000, 500, 30_000, () => ALMOST_ONE)).toBeCloseTo(30_000, 3);
  });

  it("spreads a drain (1012) over [floor, 2 s]", () => {
    expect(drainDelay(() => 0)).toBe(FLOOR_MS);
    expect(drainDelay(() => ALMOST_ONE)).toBeCloseTo(2000, 3);
  });
});

describe("reconnect backoff", () => {
  /** Closes the current socket before it opens (network down) and measures the wait for the next one. */
  async function failAndMeasure(): Promise<number> {
    const before = sockets().length;
    lastSocket().serverClose(1006);
    const delay = await nextTimer();
    expect(sockets().length).toBe(before + 1);
    return delay;
  }

  it("grows exponentially up to the cap with random ~1", async () => {
    setup({ random: () => ALMOST_ONE });
    await tick();
    const delays: number[] = [];
    for (let i = 0; i < 9; i++) delays.push(await failAndMeasure());
    const expected = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
    delays.forEach((d, i) => expect(Math.abs(d - expected[i])).toBeLessThanOrEqual(1));
  });

  it("honours baseMs and capMs", async () => {
    setup({ random: () => ALMOST_ONE, reconnect: { baseMs: 1000, capMs: 3000 } });
    await tick();
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) delays.push(await failAndMeasure());
    [1000, 2000, 3000, 3000].forEach((e, i) => expect(Math.abs(delays[i] - e)).toBeLessThanOrEqual(1));
  });

  it("waits the floor with random 0, never less", async () => {
    setup({ random: () => 0 });
    await tick();
    for (let i = 0; i < 5; i++) expect(await failAndMeasure()).toBe(FLOOR_MS);
  });

  it("says reconnecting while it waits, with since once a seq is known", async () => {
    const { client } = setup();
    await tick();
    lastSocket().open();
    lastSocket().hello({ last_seq: 7 });
    lastSocket().serverClose(1006);
    expect(client.status).toBe("reconnecting");
    await nextTimer();
    expect(lastSocket().since).toBe("7");
    expect(client.status).toBe("reconnecting");
    lastSocket().open();
    expect(client.status).toBe("connected");
  });

  it("resets the attempt counter only after a connection stayed up 10 s", async () => {
    setup({ random: () => ALMOST_ONE });
    await tick();
    for (let i = 0; i < 4; i++) await failAndMeasure(); // attempt is now 4 (next window 8000)

    // up for 9 s: not stable, the window keeps growing
    lastSocket().open();
    await vi.advanceTimersByTimeAsync(9_000);
    expect(Math.abs((await failAndMeasure()) - 8000)).toBeLessThanOrEqual(1);

    // up for 10 s: stable, back to the base window
    lastSocket().open();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(Math.abs((await failAndMeasure()) - 500)).toBeLessThanOrEqual(1);
  });

  it.each([
    ["random 0: one connection per floor at most", () => 0, 60_000 / FLOOR_MS + 1],
    ["random 0.5: the window grows", () => 0.5, 15],
    ["Math.random", Math.random, 40],
  ])("never loops tightly when the server accepts and closes at once (%s)", async (_, random, max) => {
    const { client } = setup({ random });
    await tick();
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      const s = lastSocket();
      s.open();
      s.serverClose(1008);
      await nextTimer();
    }
    expect(sockets().length).toBeLessThanOrEqual(max);
    client.close();
  });
});
