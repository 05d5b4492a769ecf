export type * from "./wire.js";
export type * from "./types.js";
export { HeraldError } from "./errors.js";
export type { HeraldErrorInit } from "./errors.js";
export { createHeraldClient } from "./client.js";
