// weft dashboard: live updates of a run page (server-sent events) and of the dashboard's
// counts. Served from /static/app.js under a Content-Security-Policy without inline script.
// Every value from the server is set with textContent or setAttribute, never as HTML.
"use strict";
(function () {
  var SVG_NS = "http://www.w3.org/2000/svg";

  function ready(f) {
    if (document.readyState !== "loading") f();
    else document.addEventListener("DOMContentLoaded", f);
  }

  function badge(state) {
    var s = document.createElement("span");
    s.className = "state s-" + String(state).toLowerCase();
    s.textContent = state;
    return s;
  }

  function cell(cls, text) {
    var td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    return td;
  }

  function paintNode(t) {
    var g = document.querySelector('#graph g[data-node="' + Number(t.node) + '"]');
    if (!g) return;
    g.querySelectorAll("rect").forEach(function (r) { r.setAttribute("fill", t.color); });
    var title = g.querySelector("title");
    if (!title) {
      title = document.createElementNS(SVG_NS, "title");
      g.insertBefore(title, g.firstChild);
    }
    title.textContent = t.state;
    g.setAttribute("data-state", t.state);
  }

  function taskRow(t) {
    var body = document.getElementById("tasks");
    if (!body) return null;
    var row = body.querySelector('tr[data-node="' + Number(t.node) + '"]');
    if (row) return row;
    row = document.createElement("tr");
    row.setAttribute("data-node", String(Number(t.node)));
    row.appendChild(cell("task", t.task));
    row.appendChild(cell("st", ""));
    row.appendChild(cell("num attempts", ""));
    row.appendChild(cell("num duration", ""));
    row.appendChild(cell("detail", ""));
    body.appendChild(row);
    return row;
  }

  function updateTask(t) {
    paintNode(t);
    var row = taskRow(t);
    if (!row) return;
    row.querySelector("td.st").replaceChildren(badge(t.state));
    row.querySelector("td.attempts").textContent = t.attempts;
    row.querySelector("td.duration").textContent = t.duration;
    row.querySelector("td.detail").textContent = t.detail;
    row.setAttribute("data-state", t.state);
  }

  function appendLog(l) {
    var body = document.getElementById("logs");
    if (!body) return;
    var none = document.getElementById("no-logs");
    if (none) none.remove();
    var row = document.createElement("tr");
    row.className = "lvl-" + String(l.level).toLowerCase();
    row.appendChild(cell("time", l.at));
    row.appendChild(cell("level", l.level));
    row.appendChild(cell("line", l.message));
    body.appendChild(row);
  }

  function updateRun(run, r) {
    var st = document.getElementById("run-state");
    if (st) st.replaceChildren(badge(r.state));
    var d = document.getElementById("run-duration");
    if (d) d.textContent = r.duration;
    var ended = document.getElementById("run-ended");
    if (ended) ended.textContent = r.ended;
    run.setAttribute("data-state", r.state);
  }

  function followRun(run) {
    var params = new URLSearchParams();
    var after = run.getAttribute("data-log-after");
    if (after) {
      params.set("after", after);
      var level = run.getAttribute("data-level");
      var task = run.getAttribute("data-task");
      if (level) params.set("level", level);
      if (task) params.set("task", task);
    }
    var url = "/api/runs/" + encodeURIComponent(run.getAttribute("data-run")) + "/events";
    var qs = params.toString();
    var es = new EventSource(qs ? url + "?" + qs : url);
    function on(name, f) {
      es.addEventListener(name, function (e) { f(JSON.parse(e.data)); });
    }
    on("task", updateTask);
    on("log", appendLog);
    on("run", function (r) { updateRun(run, r); });
    on("end", function () {
      es.close();
      run.setAttribute("data-live", "false");
      var cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    });
    es.addEventListener("error", function () {
      if (run.getAttribute("data-live") === "false") es.close();
    });
  }

  function refreshCounts(box) {
    var windowName = box.getAttribute("data-window") || "day";
    function apply(report) {
      box.querySelectorAll("[data-count]").forEach(function (el) {
        var parts = el.getAttribute("data-count").split(":");
        var counts = parts[0] === "flow" ? report.flow_runs : report.task_runs;
        var n = 0;
        if (parts[1] === "total") {
          Object.keys(counts).forEach(function (k) { n += counts[k]; });
        } else {
          n = counts[parts[1]] || 0;
        }
        el.textContent = String(n);
      });
    }
    setInterval(function () {
      fetch("/api/stats?window=" + encodeURIComponent(windowName), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (report) { if (report) apply(report); })
        .catch(function () {});
    }, 5000);
  }

  ready(function () {
    var run = document.getElementById("run");
    if (run && run.getAttribute("data-live") === "true") followRun(run);
    var counts = document.getElementById("counts");
    if (counts) refreshCounts(counts);
  });
})();
