// Ordinary frontend code against the types generated from /openapi.json (openapi-typescript +
// openapi-fetch): it must type-check under `strict` as written, then run the whole flow against
// a live server. Usage: node dist/flow.js BASE_URL USER_ID TOKEN; exit code 0 means every
// check passed, and the last line on stdout is a JSON summary.
import assert from "node:assert/strict";
import createClient from "openapi-fetch";
import type { paths } from "./generated/schema.js";

const [baseUrl, userId, token] = process.argv.slice(2);
if (!baseUrl || !userId || !token) {
  throw new Error("usage: node dist/flow.js BASE_URL USER_ID TOKEN");
}
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
// As a browser gives it: Intl.DateTimeFormat().resolvedOptions().timeZone is a plain string.
const timeZone: string = "Europe/Paris";
const user = { user_id: userId };

function nextCursor(link: string | null): string | undefined {
  const next = /<([^>]*)>\s*;\s*rel="next"/.exec(link ?? "");
  if (next?.[1] === undefined) return undefined;
  return new URL(next[1], baseUrl).searchParams.get("cursor") ?? undefined;
}

const created = await client.POST("/api/{user_id}/tasks", {
  params: { path: user },
  body: { title: "x" },
});
assert.equal(created.response.status, 201);
assert.ok(created.data, "create returned no task");
assert.equal(created.data.title, "x");
assert.equal(created.data.completed, false);
const etag = created.response.headers.get("ETag");
assert.equal(etag, `"${created.data.version}"`);
assert.equal(created.response.headers.get("Location"), `/api/${userId}/tasks/${created.data.id}`);
assert.ok(created.response.headers.get("X-Request-ID"), "no X-Request-ID on the create");
const task = { ...user, task_id: created.data.id };

const ids = [created.data.id];
for (const title of ["two", "three", "four"]) {
  const more = await client.POST("/api/{user_id}/tasks", { params: { path: user }, body: { title } });
  assert.equal(more.response.status, 201);
  assert.ok(more.data);
  ids.push(more.data.id);
}

const listed: number[] = [];
const links: (string | null)[] = [];
let cursor: string | undefined;
do {
  const page = await client.GET("/api/{user_id}/tasks", {
    params: { path: user, query: { overdue: false, tz: timeZone, limit: 2, cursor } },
  });
  assert.equal(page.response.status, 200);
  assert.ok(page.data);
  listed.push(...page.data.map((row) => row.id));
  links.push(page.response.headers.get("Link"));
  cursor = nextCursor(page.response.headers.get("Link"));
} while (cursor !== undefined && links.length < 5);
assert.equal(links.length, 2, `four tasks in pages of two are two pages, got ${links.length}`);
assert.deepEqual([...listed].sort((a, b) => a - b), [...ids].sort((a, b) => a - b));

const urgent = await client.POST("/api/{user_id}/tasks", {
  params: { path: user },
  body: { title: "urgent", priority: "high", tags: ["work"] },
});
assert.equal(urgent.response.status, 201);
assert.ok(urgent.data);
// List filters are arrays in the generated types: sent as ?priority=high&priority=low.
const filtered = await client.GET("/api/{user_id}/tasks", {
  params: { path: user, query: { priority: ["high", "low"], tag: ["work"] } },
});
assert.equal(filtered.response.status, 200);
assert.deepEqual(filtered.data?.map((row) => row.id), [urgent.data.id]);
assert.ok(Date.now() - Date.parse(urgent.data.created_at) < 600_000, urgent.data.created_at);

const updated = await client.PUT("/api/{user_id}/tasks/{task_id}", {
  params: { path: task, header: { "if-match": etag } },
  body: { title: "y" },
});
assert.equal(updated.response.status, 200);
assert.equal(updated.data?.title, "y");

const stale = await client.PUT("/api/{user_id}/tasks/{task_id}", {
  params: { path: task, header: { "if-match": etag } },
  body: { title: "lost" },
});
assert.equal(stale.response.status, 412);
assert.equal(stale.response.headers.get("Content-Type"), "application/problem+json");
assert.equal(stale.error?.status, 412);
assert.equal(stale.error?.type, "/problems/version-conflict");
assert.equal(stale.error?.request_id, stale.response.headers.get("X-Request-ID"));

const toggled = await client.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
  params: { path: task },
});
assert.equal(toggled.response.status, 200);
assert.equal(toggled.data?.completed, true);

const reopened = await client.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
  params: { path: task },
  body: { completed: false },
});
assert.equal(reopened.response.status, 200);
assert.equal(reopened.data?.completed, false);
const latest = reopened.response.headers.get("ETag");
assert.ok(latest, "no ETag on the completion");

const deleted = await client.DELETE("/api/{user_id}/tasks/{task_id}", {
  params: { path: task, header: { "if-match": latest } },
});
assert.equal(deleted.response.status, 204);
const gone = await client.GET("/api/{user_id}/tasks/{task_id}", { params: { path: task } });
assert.equal(gone.response.status, 404);

console.log(JSON.stringify({ created: created.data.id, listed, links, deleted: true }));
