// The console's router: one view at a time, chosen by the URL hash, with the tab's session.

import { session, signIn, signOut } from "./api.js";
import { h, notice } from "./dom.js";
import { playgroundView } from "./playground.js";
import { taskView } from "./task.js";
import { tasksView } from "./tasks.js";

const view = document.getElementById("view");
let dispose = () => {};

function signInView(container) {
  const message = h("div", { class: "notice", hidden: true });
  const form = h(
    "form",
    { class: "signin card", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Use your account's OAuth client id and secret, as printed by: eobatch accounts create NAME"),
    h("label", {}, "Client id", h("input", { name: "clientId", required: true, autocomplete: "username" })),
    h(
      "label",
      {},
      "Client secret",
      h("input", { name: "clientSecret", type: "password", required: true, autocomplete: "current-password" }),
    ),
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await signIn(data.get("clientId").trim(), data.get("clientSecret").trim());
      window.location.hash = "#/tasks";
    } catch (error) {
      notice(message, error.message);
    }
  });
  container.append(form);
  return () => {};
}

function route() {
  dispose();
  view.replaceChildren();
  const signedIn = session();
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? signedIn.clientId : "";
  const [, page, id] = window.location.hash.split("/");
  if (!signedIn || page === "signin") {
    dispose = signInView(view);
  } else if (page === "tasks" && id) {
    dispose = taskView(view, decodeURIComponent(id));
  } else if (page === "playground") {
    dispose = playgroundView(view);
  } else {
    dispose = tasksView(view);
  }
}

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  window.location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
