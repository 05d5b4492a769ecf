// The real services for the browser tests: a database and a Redis key prefix
// of their own on the machine's PostgreSQL and Redis, the three binaries
// built by cargo (target/debug), and the built demo served by vite preview
// on an allowed origin and on one that is not.

import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { preview } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../../..");
export const results = join(repo, "clients/browser-tests/results");
const binDir = process.env.HERALD_BIN_DIR ?? join(repo, "target/debug");
const pgServer = process.env.HERALD_TEST_PG ?? "postgres://postgres@127.0.0.1:5432";
const redisUrl = process.env.HERALD_TEST_REDIS ?? "redis://127.0.0.1:6379";

export async function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

function binary(name) {
  const path = join(binDir, name);
  if (!existsSync(path)) {
    throw new Error(`${path} not found: build the services first (cargo build --workspace --bins, as make test does)`);
  }
  return path;
}

/** Polls `check` until it returns a truthy value; fails after `ms`. */
export async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ""}`);
    }
    await sleep(100);
  }
}

export class Stack {
  /** Starts everything; `stop()` undoes it. */
  static async start() {
    const stack = new Stack();
    try {
      await stack.#start();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  #children = new Map();
  #servers = [];
  id = randomBytes(4).toString("hex");
  database = `herald_browser_${this.id}`;
  prefix = `test-browser-${this.id}`;
  logs = join(results, "logs");

  async #start() {
    mkdirSync(this.logs, { recursive: true });
    this.ports = { ingest: await freePort(), worker: await freePort(), gateway: await freePort() };
    this.demoPort = await freePort();
    this.otherPort = await freePort();
    this.demoOrigin = `http://127.0.0.1:${this.demoPort}`;
    this.otherOrigin = `http://127.0.0.1:${this.otherPort}`;
    this.gatewayUrl = `http://127.0.0.1:${this.ports.gateway}`;
    this.ingestUrl = `http://127.0.0.1:${this.ports.ingest}`;

    execFileSync("psql", [`${pgServer}/postgres`, "-qc", `CREATE DATABASE ${this.database}`]);
    this.created = true;
    this.env = {
      ...process.env,
      HERALD__DATABASE__URL: `${pgServer}/${this.database}`,
      HERALD__REDIS__URL: redisUrl,
      HERALD__REDIS__KEY_PREFIX: this.prefix,
      HERALD__AUTH__JWT_SECRET: randomBytes(32).toString("hex"),
      HERALD__TEMPLATES__DIR: join(repo, "templates"),
      HERALD__GATEWAY__ALLOWED_ORIGINS: this.demoOrigin,
      HERALD__HTTP__HOST: "127.0.0.1",
      HERALD__LOG__FORMAT: "json",
      RUST_LOG: process.env.RUST_LOG ?? "info",
    };
    execFileSync(binary("stream-worker"), ["migrate"], { env: this.env, stdio: "ignore" });
    this.apiKey = execFileSync(binary("ingest-api"), ["keys", "create", "--name", "browser"], {
      env: this.env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();

    await Promise.all([
      this.startService("ingest-api"),
      this.startService("stream-worker"),
      this.startService("ws-gateway"),
    ]);
    const root = join(repo, "clients/demo");
    for (const port of [this.demoPort, this.otherPort]) {
      this.#servers.push(
        await preview({
          root,
          logLevel: "warn",
          preview: { host: "127.0.0.1", port, strictPort: true, open: false },
        }),
      );
    }
  }

  /** Starts one service (again, after stopService) on its port; resolves when ready. */
  async startService(name) {
    const port = { "ingest-api": this.ports.ingest, "stream-worker": this.ports.worker, "ws-gateway": this.ports.gateway }[name];
    const log = createWriteStream(join(this.logs, `${this.id}-${name}.log`), { flags: "a" });
    const child = spawn(binary(name), [], {
      env: { ...this.env, HERALD__HTTP__PORT: String(port), HERALD__WORKER__CONSUMER_NAME: `browser-${this.id}` },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr.pipe(log);
    this.#children.set(name, child);
    await eventually(`${name} ready`, 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
      // A connection the server closes before answering can leave a fetch
      // pending forever: give each poll a deadline.
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) });
      return response.ok;
    });
  }

  /** Sends SIGTERM and waits until the process has drained and exited. */
  async stopService(name) {
    const child = this.#children.get(name);
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill("SIGTERM");
    await exited;
    this.#children.delete(name);
  }

  token(user, ttlSecs = 3600) {
    return execFileSync(binary("ws-gateway"), ["token", "--user", user, "--ttl", String(ttlSecs)], {
      env: this.env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  }

  /** The demo's URL for a user, on the allowed origin or another one. */
  demoUrl(token, { origin = this.demoOrigin } = {}) {
    return `${origin}/#token=${token}&gateway=${encodeURIComponent(this.gatewayUrl)}`;
  }

  /** POST /v1/notifications; resolves to the accepted id. */
  async notify(body) {
    const response = await fetch(`${this.ingestUrl}/v1/notifications`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": this.apiKey },
      body: JSON.stringify(body),
    });
    if (response.status !== 202) throw new Error(`notify: ${response.status} ${await response.text()}`);
    return (await response.json()).id;
  }

  async stop() {
    for (const server of this.#servers) await server.close();
    await Promise.all([...this.#children.keys()].map((name) => this.stopService(name)));
    if (this.created) {
      execFileSync("psql", [`${pgServer}/postgres`, "-qc", `DROP DATABASE IF EXISTS ${this.database} WITH (FORCE)`]);
    }
    const keys = execFileSync("redis-cli", ["-u", redisUrl, "--scan", "--pattern", `${this.prefix}*`], {
      encoding: "utf8",
    })
      .split("\n")
      .filter(Boolean);
    for (let i = 0; i < keys.length; i += 500) {
      execFileSync("redis-cli", ["-u", redisUrl, "DEL", ...keys.slice(i, i + 500)], { stdio: "ignore" });
    }
  }
}
