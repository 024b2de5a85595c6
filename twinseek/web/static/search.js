// The search page: /?q=... runs the search on load and streams its progress (server-sent events).
// Text from the server goes in with textContent; the hits arrive as HTML rendered (and escaped) by the server.
(function () {
  "use strict";
  const base = document.body.dataset.base || "";
  const form = document.getElementById("search-form");
  const progress = document.getElementById("progress");
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const results = document.getElementById("results");
  const failure = document.getElementById("search-error");

  function params() {
    const p = new URLSearchParams();
    p.set("q", form.elements.q.value.trim());
    p.set("k", form.elements.k.value || "10");
    if (form.elements.tau.value !== "") p.set("tau", form.elements.tau.value);
    for (const name of ["lr", "jit", "qd", "ca"]) p.set(name, form.elements[name].checked ? "true" : "false");
    p.set("tool", form.elements.tool.value);
    return p;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!form.elements.q.value.trim()) return;
    window.location.assign(base + "/?" + params().toString());  // a URL that can be shared
  });

  function line(text) {
    const li = document.createElement("li");
    li.textContent = text;
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }

  function step(node) {
    return progress.querySelector('li[data-node="' + CSS.escape(node) + '"]');
  }

  function describe(data) {
    const parts = [];
    for (const [key, value] of Object.entries(data)) {
      if (key === "node") continue;
      parts.push(key + " " + (Array.isArray(value) ? value.join(", ") : typeof value === "number" ? value.toFixed(3).replace(/\.?0+$/, "") : String(value)));
    }
    return parts.join(" · ");
  }

  function run(query) {
    progress.hidden = false;
    failure.hidden = true;
    results.replaceChildren();
    document.body.classList.add("searching");
    const started = performance.now();
    let finished = false;
    const timer = setInterval(function () {
      status.textContent = "searching… " + ((performance.now() - started) / 1000).toFixed(1) + " s";
    }, 100);
    const source = new EventSource(base + "/api/search/stream?" + query.toString());

    function stop(message) {
      finished = true;
      clearInterval(timer);
      source.close();
      document.body.classList.remove("searching");
      if (message) status.textContent = message;
    }

    source.addEventListener("node", function (event) {
      const msg = JSON.parse(event.data);
      const li = step(msg.node);
      if (li) {
        li.classList.remove("running");
        li.classList.add("done");
        const secs = (msg.data.timings || {})[msg.node];
        if (secs !== undefined) li.querySelector(".secs").textContent = secs.toFixed(2) + " s";
      }
      for (const text of msg.data.trace || []) line(text);
    });
    source.addEventListener("progress", function (event) {
      const msg = JSON.parse(event.data);
      const li = msg.node && step(msg.node);
      if (li && !li.classList.contains("done")) li.classList.add("running");
      line((msg.node || "") + ": " + describe(msg.data));
    });
    source.addEventListener("result", function (event) {
      const msg = JSON.parse(event.data);
      results.innerHTML = msg.html;  // rendered by the server's templates (autoescaped)
      for (const img of results.querySelectorAll("img.overlay-img")) {
        img.addEventListener("error", function () {
          const note = document.createElement("span");
          note.className = "no-overlay";
          note.textContent = "no object masks";
          img.replaceWith(note);
        });
      }
      for (const li of progress.querySelectorAll("li[data-node]")) {
        if (!msg.result.path.includes(li.dataset.node)) li.classList.add("skipped");
      }
      stop(msg.result.hits.length + " hits in " + (msg.result.timings.total || 0).toFixed(2) + " s");
      document.body.dataset.searchDone = "true";
    });
    source.addEventListener("failure", function (event) {
      const msg = JSON.parse(event.data);
      failure.textContent = msg.message;
      failure.hidden = false;
      stop("failed");
      document.body.dataset.searchDone = "true";
    });
    source.addEventListener("error", function () {
      if (finished) return;
      failure.textContent = "The connection to the server was lost.";
      failure.hidden = false;
      stop("disconnected");
    });
  }

  if (form.dataset.run === "true") run(params());
})();
