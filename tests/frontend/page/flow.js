// A frontend's use of the Tasks API from another origin, with nothing but fetch: create, read
// the ETag and Location, update with If-Match, walk pages through Link, complete, delete.
// Every step's outcome (or the error that stopped the flow) is POSTed to /report on this page's
// own server, where the test reads and checks it; the page decides nothing itself.

const config = await (await fetch("/config.json")).json();
const auth = { Authorization: `Bearer ${config.token}` };
const json = { "Content-Type": "application/json" };
const tasks = new URL(`/api/${encodeURIComponent(config.user)}/tasks`, config.api);

// What a script on this origin can see of a response: only exposed headers are readable.
async function call(url, { method = "GET", headers = {}, body } = {}) {
  const response = await fetch(url, {
    method,
    headers: { ...auth, ...(body === undefined ? {} : json), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  return {
    status: response.status,
    etag: response.headers.get("ETag"),
    location: response.headers.get("Location"),
    link: response.headers.get("Link"),
    requestId: response.headers.get("X-Request-ID"),
    replayed: response.headers.get("Idempotent-Replayed"),
    contentType: response.headers.get("Content-Type"),
    body: text ? JSON.parse(text) : null,
  };
}

function nextPage(link) {
  const next = /<([^>]*)>\s*;\s*rel="next"/.exec(link ?? "");
  return next === null ? null : new URL(next[1], config.api);
}

const steps = {};
let step = "create";
try {
  steps.create = await call(tasks, {
    method: "POST",
    headers: { "X-Request-ID": "browser-create" },
    body: { title: "written in a browser" },
  });
  const task = new URL(steps.create.location, config.api);

  step = "read";
  steps.read = await call(task);
  step = "not_modified";
  steps.not_modified = await call(task, { headers: { "If-None-Match": steps.read.etag } });

  step = "update";
  steps.update = await call(task, {
    method: "PUT",
    headers: { "If-Match": steps.create.etag },
    body: { title: "renamed in a browser" },
  });
  step = "stale_update";
  steps.stale_update = await call(task, {
    method: "PUT",
    headers: { "If-Match": steps.create.etag },
    body: { title: "lost update" },
  });
  // A problem's type is a URI reference: resolved against the API, it documents the problem.
  step = "problem_type";
  steps.problem_type = await call(new URL(steps.stale_update.body.type, config.api));

  const complete = new URL(`${task.pathname}/complete`, config.api);
  step = "toggle";
  steps.toggle = await call(complete, { method: "PATCH" });
  const reopen = {
    method: "PATCH",
    headers: { "Idempotency-Key": `reopen-${config.user}` },
    body: { completed: false },
  };
  step = "reopen";
  steps.reopen = await call(complete, reopen);
  step = "reopen_again";
  steps.reopen_again = await call(complete, reopen);

  step = "create_more";
  for (const title of ["second", "third", "fourth", "fifth"]) {
    await call(tasks, { method: "POST", body: { title } });
  }
  step = "pages";
  steps.pages = [];
  let page = new URL(`${tasks}?limit=2`);
  // Bounded: five tasks in pages of two are three pages; a loop past that is a failure.
  while (page !== null && steps.pages.length < 5) {
    const got = await call(page);
    steps.pages.push({ status: got.status, link: got.link, ids: got.body.map((t) => t.id) });
    page = nextPage(got.link);
  }

  step = "delete";
  steps.delete = await call(task, {
    method: "DELETE",
    headers: { "If-Match": steps.reopen.etag },
  });
  step = "done";
} catch (error) {
  steps.error = { step, name: error.name, message: error.message };
}

document.getElementById("status").textContent = step;
document.getElementById("summary").textContent = JSON.stringify(steps, null, 2);
await fetch("/report", { method: "POST", headers: json, body: JSON.stringify(steps) });
