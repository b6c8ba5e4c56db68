// Small DOM helpers: elements from tags, attributes and children; formatting of values.

// Children may be strings, nodes, arrays of them, or null/undefined/false (left out).
function nodes(children) {
  return children
    .flat(Infinity)
    .filter((child) => child !== undefined && child !== null && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
}

// Replace an element's children (see `nodes`).
export function fill(element, ...children) {
  element.replaceChildren(...nodes(children));
}

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...nodes(children));
  return element;
}

export function pu(value) {
  return value === undefined || value === null ? "–" : `${Number(value).toFixed(3)} PU`;
}

export function when(iso) {
  return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–";
}

// A task's description: sentinelhub-py and the API keep it in the request.
export function description(task) {
  return task.description || (task.request && task.request.description) || "";
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

// A message area: errors from the API (with their violations) or information.
export function notice(element, text, kind = "error") {
  element.replaceChildren();
  element.className = `notice ${kind}`;
  element.hidden = !text;
  if (text) element.append(h("pre", {}, text));
}
