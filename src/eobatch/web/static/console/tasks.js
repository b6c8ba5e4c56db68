// The task list: status, progress, cost, creation time and description, with search, paging and
// the analyse / start / stop actions (the API decides whether an action is allowed).

import { call } from "./api.js";
import { description, fill, h, notice, pu, statusBadge, when } from "./dom.js";

const PAGE_SIZE = 20;
const ACTIVE = new Set(["ANALYSING", "PROCESSING"]);
const FINAL = new Set(["DONE", "FAILED", "STOPPED"]);

// Whether the controller may be about to change the task (its status or a recent action).
export function busy(task) {
  if (ACTIVE.has(task.status)) return true;
  const recent = task.userActionUpdated && Date.now() - new Date(task.userActionUpdated) < 60_000;
  return Boolean(recent) && !(task.userAction === "STOP" && FINAL.has(task.status));
}

// Record a user action and report the API's answer in `message`.
export async function act(taskId, action, message) {
  try {
    await call(`/api/v2/batch/process/${taskId}/${action}`, { method: "POST" });
    notice(message, `${action} recorded for task ${taskId}.`, "info");
    return true;
  } catch (error) {
    notice(message, `Could not ${action} task ${taskId}: ${error.details}`);
    return false;
  }
}

export function actionButtons(task, message, after) {
  return ["analyse", "start", "stop"].map((action) =>
    h(
      "button",
      {
        type: "button",
        class: `action action-${action}`,
        onclick: async () => {
          await act(task.id, action, message);
          after();
        },
      },
      action[0].toUpperCase() + action.slice(1),
    ),
  );
}

export function progressBar(percentage) {
  const value = Math.max(0, Math.min(100, Number(percentage) || 0));
  return h(
    "div",
    { class: "progress", title: `${value.toFixed(1)} %` },
    h("div", { class: "progress-fill", style: `width: ${value}%` }),
    h("span", {}, `${value.toFixed(0)} %`),
  );
}

export function tasksView(container) {
  let viewtoken = "";
  let search = "";
  let timer = null;
  let disposed = false;

  const message = h("div", { class: "notice", hidden: true });
  const body = h("tbody");
  const previous = h("button", { type: "button", disabled: true }, "‹ Previous");
  const next = h("button", { type: "button", disabled: true }, "Next ›");
  const searchBox = h("input", {
    type: "search",
    id: "task-search",
    placeholder: "Search descriptions and ids (a|b: either, a&b: both)",
  });
  let debounce = null;
  searchBox.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      search = searchBox.value.trim();
      viewtoken = "";
      load();
    }, 300);
  });

  container.append(
    h(
      "section",
      { class: "card" },
      h("div", { class: "row" }, h("h1", {}, "Batch tasks"), h("span", { class: "spacer" }), searchBox),
      message,
      h(
        "table",
        { class: "tasks", id: "tasks" },
        h(
          "thead",
          {},
          h("tr", {}, ["Task", "Status", "Progress", "Cost", "Created", "Actions"].map((t) => h("th", {}, t))),
        ),
        body,
      ),
      h("div", { class: "row pager" }, previous, next),
    ),
  );

  function row(task) {
    const link = h("a", { href: `#/tasks/${task.id}` }, description(task) || h("i", {}, "no description"));
    return h(
      "tr",
      { dataset: { taskId: task.id, status: task.status } },
      h("td", {}, link, h("div", { class: "muted mono" }, task.id)),
      h("td", {}, statusBadge(task.status), task.error ? h("div", { class: "muted" }, task.error) : null),
      h("td", {}, progressBar(task.completionPercentage)),
      h("td", { class: "num" }, pu(task.costPU)),
      h("td", {}, when(task.created)),
      h("td", { class: "actions" }, actionButtons(task, message, load)),
    );
  }

  async function load() {
    clearTimeout(timer);
    const query = new URLSearchParams({ count: PAGE_SIZE });
    if (viewtoken) query.set("viewtoken", viewtoken);
    if (search) query.set("search", search);
    try {
      const page = await call(`/api/v2/batch/process?${query}`);
      if (disposed) return;
      fill(body, ...page.data.map(row));
      if (!page.data.length) {
        body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, search ? "No task matches." : "No tasks yet.")));
      }
      const links = page.links || {};
      previous.disabled = links.previousToken === undefined;
      next.disabled = links.nextToken === undefined;
      previous.onclick = () => ((viewtoken = links.previousToken), load());
      next.onclick = () => ((viewtoken = links.nextToken), load());
      // Follow tasks closely while some are being worked on (or an action may be waiting).
      timer = setTimeout(load, page.data.some(busy) ? 2000 : 10000);
    } catch (error) {
      if (!disposed) notice(message, error.details);
    }
  }

  load();
  return () => {
    disposed = true;
    clearTimeout(timer);
    clearTimeout(debounce);
  };
}
