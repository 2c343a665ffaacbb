// Tidings dashboard: the live overview (server-sent events), the retry-all progress,
// "select all" on the dead letters. Hand-written, no build step, no dependency; every
// page works without it (forms post as usual), this only adds live updates.
"use strict";
(function () {
  function fmt(n) {
    if (n === null || n === undefined) return "—";
    return n >= 100 ? n.toFixed(0) : n.toFixed(1);
  }
  function age(s) {
    if (s === null || s === undefined) return "—";
    if (s < 120) return s.toFixed(0) + " s";
    if (s < 7200) return (s / 60).toFixed(0) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function set(name, text) {
    document.querySelectorAll('[data-fig="' + name + '"]').forEach(function (el) {
      el.textContent = text;
    });
  }
  function cell(row, text, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
  }
  function showOverview(o) {
    set("events_per_s", fmt(o.events_per_s));
    var outs = Object.keys(o.out_per_s);
    var total = outs.reduce(function (t, k) { return t + o.out_per_s[k]; }, 0);
    set("out_total", o.events_per_s === null ? "—" : fmt(total));
    var list = document.querySelector('[data-fig="out_per_s"]');
    if (list) {
      list.textContent = "";
      if (!outs.length) {
        var li = document.createElement("li");
        li.textContent = o.events_per_s === null ? "measuring…" : "no attempt just now";
        list.appendChild(li);
      }
      outs.forEach(function (k) {
        var li = document.createElement("li");
        li.textContent = k + ": " + fmt(o.out_per_s[k]) + "/s";
        list.appendChild(li);
      });
    }
    set("backlog", String(o.backlog));
    set("oldest_age", age(o.oldest_age_s));
    set("dead", o.dead + (o.dead_capped ? "+" : ""));
    set("paused_count", String(o.paused.length));
    set("paused", o.paused.join(", ") || "none");
    set("destinations", String(o.destinations));
    set("events_total", String(o.events_total));
    var body = document.querySelector("#latest tbody");
    if (body) {
      body.textContent = "";
      o.latest.forEach(function (e) {
        var tr = document.createElement("tr");
        tr.dataset.event = e.id;
        cell(tr, e.id, "/ui/events/" + encodeURIComponent(e.id));
        cell(tr, e.topic);
        cell(tr, e.key);
        cell(tr, e.received_at);
        body.appendChild(tr);
      });
      if (!o.latest.length) {
        var tr = document.createElement("tr");
        var td = document.createElement("td");
        td.colSpan = 4;
        td.textContent = "No event yet: publish one with POST /v1/events.";
        tr.appendChild(td);
        body.appendChild(tr);
      }
      var empty = document.querySelector("[data-empty]");
      if (empty && o.latest.length) empty.remove();
    }
  }
  function live() {
    var status = document.getElementById("live");
    if (!status || !window.EventSource) return;
    var source = new EventSource(status.dataset.stream);
    source.addEventListener("overview", function (msg) {
      status.className = "live on";
      status.textContent = "Live: updated " + new Date().toLocaleTimeString();
      showOverview(JSON.parse(msg.data));
    });
    source.addEventListener("signedout", function () {
      source.close();
      window.location.href = "/ui/signin";
    });
    source.onerror = function () {
      status.className = "live off";
      status.textContent = "Live updates lost; reconnecting…";
      // Closed for good (a 401: the session ended): reload, which signs in again.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(function () { window.location.reload(); }, 3000);
      }
    };
  }
  function job() {
    var box = document.getElementById("job");
    if (!box) return;
    var bar = document.getElementById("job-progress");
    var text = box.querySelector("[data-job-text]");
    var polls = 0;
    function poll() {
      polls += 1;
      fetch(box.dataset.job, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          text.textContent = j.done + " queued again" + (j.skipped ? ", " + j.skipped + " skipped" : "") +
            (j.finished ? ", done" : "…") + (j.error ? "; stopped: " + j.error : "");
          if (j.finished) {
            bar.max = 1;
            bar.value = 1;
          } else if (polls < 3600) {
            setTimeout(poll, 500);
          }
        })
        .catch(function () { text.textContent = "progress unknown; reload the page"; });
    }
    poll();
  }
  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll('#dead input[name="id"]').forEach(function (box) {
        box.checked = all.checked;
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    live();
    job();
    selectAll();
  });
})();
