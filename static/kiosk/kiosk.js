// The kiosk page: one reception session over /ws/kiosk/, typed input for now.
"use strict";

(() => {
  const strings = JSON.parse(document.getElementById("kiosk-strings").textContent);
  const main = document.querySelector("main.kiosk");
  const language = main.dataset.language;
  const el = (id) => document.getElementById(id);
  const FINISHED = ["host_notified", "sent_to_desk", "declined", "delivery_guided"];
  const RESET_AFTER_MS = 30000;
  const SESSION_KEY = "reception-session";

  let socket = null;
  let resetTimer = null;
  let retryDelay = 1000;

  function setStatus(text) { el("connection-status").textContent = text; }

  function setEnabled(enabled) {
    el("visitor-text").disabled = !enabled;
    el("send").disabled = !enabled;
    if (enabled) el("visitor-text").focus();
  }

  function addHistory(role, text) {
    const item = document.createElement("li");
    item.className = role;
    item.textContent = text;
    el("history").appendChild(item);
    el("history").scrollTop = el("history").scrollHeight;
  }

  function showVisit(visit) {
    for (const name of ["visitor_name", "company_name", "purpose", "host_name"]) {
      el("field-" + name).textContent = visit[name] || "—";
    }
    el("field-status").textContent = strings.statuses[visit.status] || visit.status || "—";
    clearTimeout(resetTimer);
    if (FINISHED.includes(visit.status)) resetTimer = setTimeout(restart, RESET_AFTER_MS);
  }

  function clearScreen() {
    el("assistant-now").textContent = "";
    el("history").replaceChildren();
    showVisit({});
  }

  const handlers = {
    "session.started": (message) => {
      sessionStorage.setItem(SESSION_KEY, message.session_id);
      main.dataset.mode = message.mode;
    },
    "transcript": (message) => {
      if (message.role === "assistant") el("assistant-now").textContent = message.text;
      if (message.final) addHistory(message.role, message.text);
    },
    "visit.updated": showVisit,
    "response.done": () => { setStatus(strings.connected); setEnabled(true); },
    "mode.changed": (message) => { main.dataset.mode = message.mode; },
    "session.ended": () => { sessionStorage.removeItem(SESSION_KEY); },
    "error": (message) => {
      if (message.code === "unauthorized") { setStatus(strings.unauthorized); return; }
      if (message.code === "session_forbidden") sessionStorage.removeItem(SESSION_KEY);
      setStatus(strings.error);
      setEnabled(true);
    },
  };

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/kiosk/");
    setStatus(strings.connecting);
    socket.addEventListener("open", () => {
      retryDelay = 1000;
      const start = { type: "session.start", language };
      const previous = sessionStorage.getItem(SESSION_KEY);
      if (previous) start.session_id = previous;  // a reload or reconnect continues the same visit
      socket.send(JSON.stringify(start));
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") return;
      const message = JSON.parse(event.data);
      (handlers[message.type] || (() => {}))(message);
    });
    socket.addEventListener("close", (event) => {
      setEnabled(false);
      if (event.code === 4401) { setStatus(strings.unauthorized); return; }
      if (event.code === 1000) return;
      setStatus(strings.reconnecting);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  function restart() {
    clearTimeout(resetTimer);
    sessionStorage.removeItem(SESSION_KEY);
    clearScreen();
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "session.end" }));  // the server closes; we open a fresh session
      socket.addEventListener("close", () => setTimeout(connect, 100), { once: true });
    } else {
      connect();
    }
  }

  el("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el("visitor-text").value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: "input_text", text }));
    el("visitor-text").value = "";
    setEnabled(false);
    setStatus(strings.thinking);
  });
  el("restart").addEventListener("click", restart);

  connect();
})();
