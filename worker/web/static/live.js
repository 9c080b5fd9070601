// worker-queue pages: live updates by Server-Sent Events, and the task page's actions.
// No build step; every fragment it inserts was rendered (and escaped) by the server.
(function () {
  "use strict";

  function setLive(on) {
    var status = document.getElementById("live-status");
    if (status) {
      status.dataset.live = on ? "on" : "off";
      status.textContent = on ? "live" : "reconnecting";
    }
  }

  function playing() {
    var players = document.querySelectorAll("audio");
    for (var i = 0; i < players.length; i++) {
      if (!players[i].paused) return true;
    }
    return false;
  }

  function showTask(message) {
    var article = document.getElementById("task");
    var live = document.getElementById("task-live");
    if (!article || !live || article.dataset.taskId !== message.task.id) return;
    article.dataset.state = message.task.state;
    if (!playing()) live.innerHTML = message.html;  // a playing audio element is not cut off
  }

  function listen(url) {
    var source = new EventSource(url);
    source.onopen = function () { setLive(true); };
    source.onerror = function () { setLive(false); };  // EventSource reconnects by itself
    source.addEventListener("overview", function (event) {
      var live = document.getElementById("overview-live");
      if (live) live.innerHTML = event.data;
    });
    source.addEventListener("task", function (event) { showTask(JSON.parse(event.data)); });
    source.addEventListener("gone", function () {
      var article = document.getElementById("task");
      if (article) article.dataset.state = "gone";
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function act(button) {
    var root = document.body.dataset.root || "";
    var token = document.querySelector('meta[name="csrf-token"]');
    var result = document.getElementById("action-result");
    button.disabled = true;
    fetch(root + "/api/tasks/" + encodeURIComponent(button.dataset.task) + "/" + button.dataset.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRF-Token": token ? token.content : ""
      },
      body: "{}"
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!result) return;
        if (response.ok) {
          result.textContent = body.cancel_pending ? "asked to stop" : body.state;
        } else {
          result.textContent = body.detail || response.statusText;
          button.disabled = false;
        }
      });
    }).catch(function (error) {
      if (result) result.textContent = String(error);
      button.disabled = false;
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (button) act(button);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var url = document.body.dataset.stream;
    if (url && window.EventSource) listen(url);
  });
})();
