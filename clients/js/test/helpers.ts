import { vi } from "vitest";
import { createHeraldClient, type HeraldClientOptions, type SeqStorage, type WebSocketLike } from "../src/index.js";

/** A scripted WebSocket: records what the client does, the test plays the server. */
export class FakeWebSocket implements WebSocketLike {
  static instances: FakeWebSocket[] = [];
  readyState = 0;
  protocol = "";
  sent: string[] = [];
  /** Like the gateway, answer `{"type":"ping"}` with `{"type":"pong"}` (a half-open socket does not). */
  answersPings = true;
  closedWith: { code?: number; reason?: string } | null = null;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeWebSocket.instances.push(this);
  }
  send(data: string) {
    this.sent.push(data);
    if (this.answersPings && this.readyState === 1 && JSON.parse(data).type === "ping") {
      this.receive({ type: "pong" });
    }
  }
  close(code?: number, reason?: string) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The server accepts (and selects herald.v1). */
  open() {
    this.readyState = 1;
    this.protocol = "herald.v1";
    this.onopen?.({});
  }
  receive(frame: object | string) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  hello(h: { last_seq?: number; unread?: number; version?: number; counts?: object; trimmed_through?: number; epoch?: number } = {}) {
    this.receive({ type: "hello", user_id: "alice", last_seq: 0, unread: 0, version: 0, ...h });
  }
  /** The server (or the network) closes the socket. */
  serverClose(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** What the client sent, keep-alive pings left out. */
  get frames(): Array<Record<string, unknown>> {
    return this.sent.map((s) => JSON.parse(s)).filter((f) => f.type !== "ping");
  }
  get pings(): number {
    return this.sent.filter((s) => JSON.parse(s).type === "ping").length;
  }
  get since(): string | null {
    return new URL(this.url).searchParams.get("since");
  }
  get epoch(): string | null {
    return new URL(this.url).searchParams.get("epoch");
  }
}

export const sockets = () => FakeWebSocket.instances;
export const lastSocket = () => FakeWebSocket.instances[FakeWebSocket.instances.length - 1];

/** An unsigned JWT with these claims. */
export function jwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2ln`;
}

export const nowSecs = () => Math.floor(Date.now() / 1000);

/** A getToken() that returns a new token on every call, valid `ttlSecs` from then. */
export function tokenSource(ttlSecs = 3600, sub = "alice") {
  let n = 0;
  return vi.fn(() => jwt({ sub, exp: nowSecs() + ttlSecs, n: ++n }));
}

export function memoryStorage(): SeqStorage & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return { map, getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) };
}

/** Lets pending promises (getToken(), fetch) settle. */
export const tick = () => vi.advanceTimersByTimeAsync(0);

/** Advances fake time to the next timer; answers how long that was. */
export async function nextTimer(): Promise<number> {
  const before = Date.now();
  await vi.advanceTimersToNextTimerAsync();
  await tick();
  return Date.now() - before;
}

/** A live notification frame: it carries the user's count right after it was stored. */
export function live(seq: number, unread: number, version: number, extra: Record<string, unknown> = {}) {
  return note(seq, { unread, version, ...extra });
}

/** A notification frame as sent from storage (no counts). */
export function note(seq: number, extra: Record<string, unknown> = {}) {
  return {
    type: "notification",
    id: `n${seq}`,
    user_id: "alice",
    seq,
    title: `title ${seq}`,
    body: "body",
    priority: "normal",
    category: null,
    data: null,
    created_at: "2026-11-28T00:11:46.123456Z",
    expires_at: null,
    ...extra,
  };
}

export function setup(opts: Partial<HeraldClientOptions> = {}) {
  const getToken = tokenSource();
  const client = createHeraldClient({
    url: "http://gw.test",
    getToken,
    WebSocket: FakeWebSocket,
    storage: null,
    random: () => 0.5,
    ...opts,
  });
  return { client, getToken: (opts.getToken as typeof getToken | undefined) ?? getToken };
}

/** Sets up a client, lets it open its socket and plays open + hello. */
export async function connected(opts: Partial<HeraldClientOptions> = {}, hello: Parameters<FakeWebSocket["hello"]>[0] = {}) {
  const h = setup(opts);
  await tick();
  lastSocket().open();
  lastSocket().hello(hello);
  return h;
}

export interface FetchCall {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** A fetch that records calls and answers from `answer` (JSON body, problem+json for errors). */
export function fakeFetch(answer: (call: FetchCall) => { status?: number; body?: unknown; raw?: string }) {
  const calls: FetchCall[] = [];
  const fn = vi.fn(async (url: string | URL | Request, init?: RequestInit) => {
    const call: FetchCall = {
      method: init?.method ?? "GET",
      url: String(url),
      headers: { ...(init?.headers as Record<string, string>) },
      body: init?.body as string | undefined,
    };
    calls.push(call);
    const { status = 200, body, raw } = answer(call);
    const type = status >= 400 ? "application/problem+json" : "application/json";
    return new Response(raw ?? JSON.stringify(body ?? {}), { status, headers: { "content-type": type } });
  });
  return { fetch: fn as unknown as typeof fetch, calls };
}

/** The counts a client derives from a frame without `counts` (a gateway older than them): all unread ones unseen. */
export const legacy = (unread: number) => ({ unread, unseen: unread, by_category: {} });
