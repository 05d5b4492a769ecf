/** What a {@link HeraldError} carries besides its message. */
export interface HeraldErrorInit {
  /** HTTP status of a failed REST call. */
  status?: number;
  /** The problem `type` slug of a failed REST call, e.g. `"unauthorized"`, `"invalid-request"`. */
  type?: string;
  /** The `code` of a WebSocket `error` frame, e.g. `"bad_token"`. */
  code?: string;
  /** The parsed problem+json body of a failed REST call, when there was one. */
  problem?: unknown;
  cause?: unknown;
}

/**
 * Every error the client throws or emits: failed REST calls (with `status`,
 * `type` and `problem`), `error` frames from the gateway (with `code`), and
 * failures of `getToken()` or of the network (with `cause`).
 */
export class HeraldError extends Error {
  declare readonly status?: number;
  declare readonly type?: string;
  declare readonly code?: string;
  declare readonly problem?: unknown;

  constructor(message: string, init: HeraldErrorInit = {}) {
    super(message, { cause: init.cause });
    this.name = "HeraldError";
    Object.assign(this, init);
  }
}

/** Builds a {@link HeraldError} from a failed response's problem+json body. */
export async function problemError(res: Response): Promise<HeraldError> {
  let problem: { type?: unknown; title?: unknown; detail?: unknown } | undefined;
  try {
    problem = await res.json();
  } catch {
    // not JSON: the status alone says what happened
  }
  const type = typeof problem?.type === "string" ? problem.type.split("/").pop() : undefined;
  const message = String(problem?.detail || problem?.title || `HTTP ${res.status}`);
  return new HeraldError(message, { status: res.status, type, problem });
}
