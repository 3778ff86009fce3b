// Follows a pending or running deployment: polls /deployments/{id}/events?after=SEQ every
// second, appends new log lines (as text, never as markup) and updates the state, progress
// and error, until the deployment is final and its log has drained.
(function () {
  "use strict";
  var body = document.body;
  var id = body.dataset.deployment;
  if (!id || body.dataset.final === "true") return;
  var after = Number(body.dataset.after || 0);
  var token = body.dataset.token || "";
  var log = document.getElementById("log");
  var timeline = document.getElementById("timeline");
  var quiet = 0;

  function byId(name) { return document.getElementById(name); }

  function eventsUrl() {
    var url = "/deployments/" + encodeURIComponent(id) + "/events?after=" + after;
    if (token) url += "&token=" + encodeURIComponent(token);
    return url;
  }

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function appendLine(entry) {
    var empty = byId("log-empty");
    if (empty) empty.remove();
    var line = document.createElement("span");
    line.className = "line live s-" + entry.stream;
    line.dataset.seq = String(entry.seq);
    var ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = entry.time;
    line.appendChild(ts);
    line.appendChild(document.createTextNode(entry.line + "\n"));
    log.appendChild(line);
    var step = entry.stream === "deploybot" && /^\[\s*(\d+)%\] ([^:]*)(?:: (.*))?$/.exec(entry.line);
    if (step && timeline) {
      var none = byId("timeline-empty");
      if (none) none.remove();
      var li = document.createElement("li");
      var pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = step[1] + "%";
      var phase = document.createElement("strong");
      phase.textContent = step[2];
      var at = document.createElement("time");
      at.textContent = entry.time;
      li.append(pct, " ", phase, " " + (step[3] || "") + " ", at);
      timeline.appendChild(li);
    }
  }

  function update(ev) {
    var state = byId("state");
    state.className = "badge s-" + ev.state;
    state.textContent = ev.label;
    document.title = ev.title + " — deploybot";
    var percent = Math.max(0, Math.min(100, ev.progress.percent));
    byId("progress").value = percent;
    byId("percent").textContent = percent + "%";
    var phase = byId("phase");
    phase.textContent = "";
    if (ev.waiting) {
      var waiting = document.createElement("span");
      waiting.className = "waiting";
      waiting.textContent = ev.waiting;
      phase.appendChild(waiting);
    } else if (ev.progress.phase || ev.progress.message) {
      var strong = document.createElement("strong");
      strong.textContent = ev.progress.phase;
      phase.appendChild(strong);
      if (ev.progress.message) phase.append(" — " + ev.progress.message);
    } else {
      phase.textContent = ev.state === "pending" ? "Waiting for a worker…" : "";
    }
    var error = byId("error");
    byId("error-label").textContent = ev.error_label;
    byId("error-text").textContent = ev.error;
    error.hidden = !ev.error;
    byId("started").textContent = ev.started;
    byId("finished").textContent = ev.finished;
    byId("took").textContent = ev.took;
    // A finished deployment can no longer be cancelled.
    var cancel = document.querySelector("form.cancel");
    if (cancel && ev.final) cancel.hidden = true;
  }

  function tick() {
    fetch(eventsUrl(), { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (ev) {
        var follow = atBottom();
        ev.lines.forEach(appendLine);
        if (ev.lines.length) after = ev.next_after;
        if (follow) log.scrollTop = log.scrollHeight;
        update(ev);
        byId("live").textContent = "● following live";
        // The last log lines may be written just after the final state: poll twice more.
        quiet = ev.final && !ev.lines.length ? quiet + 1 : 0;
        if (quiet >= 2) {
          byId("live").hidden = true;
          body.dataset.final = "true";
          return;
        }
        setTimeout(tick, ev.more ? 0 : 1000);
      })
      .catch(function () {
        byId("live").textContent = "● connection lost, retrying…";
        setTimeout(tick, 3000);
      });
  }

  setTimeout(tick, 1000);
})();
