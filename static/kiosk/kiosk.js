// The kiosk page: one reception session over /ws/kiosk/, by voice (hands-free or push-to-talk)
// or by typing. Audio goes up as binary PCM16 24 kHz frames and comes back the same way.
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
  let microphone = "off"; // off | on | refused
  let talkHeld = false;
  let sessionId = null;
  let rated = false; // this session's visitor answered (or skipped) the satisfaction question

  function setStatus(text) { el("connection-status").textContent = text; }

  function setState(state) {
    el("voice-state").dataset.state = state;
    el("voice-state").textContent = strings.states[state] || "";
  }

  function setEnabled(enabled) {
    el("visitor-text").disabled = !enabled;
    el("send").disabled = !enabled;
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
    const finished = FINISHED.includes(visit.status);
    if (finished) resetTimer = setTimeout(restart, RESET_AFTER_MS);
    el("feedback").hidden = !finished || rated;
  }

  // The optional one-tap question at the end of a visit: only the number goes to the server.
  function rate(rating) {
    if (rated || !sessionId) return;
    rated = true;
    if (rating) send({ type: "feedback", session_id: sessionId, rating });
    el("feedback").querySelector(".feedback-choices").hidden = true;
    el("feedback-question").hidden = true;
    el("feedback-thanks").hidden = !rating;
    if (!rating) el("feedback").hidden = true;
  }

  function resetFeedback() {
    rated = false;
    el("feedback").hidden = true;
    el("feedback").querySelector(".feedback-choices").hidden = false;
    el("feedback-question").hidden = false;
    el("feedback-thanks").hidden = true;
  }

  function showMode(mode) {
    main.dataset.mode = mode;
    el("mode-badge").textContent = strings.modes[mode] || mode;
  }

  function clearScreen() {
    el("assistant-now").textContent = "";
    el("history").replaceChildren();
    showVisit({});
  }

  function idleState() { return microphone === "on" ? "listening" : "idle"; }

  const handlers = {
    "session.started": (message) => {
      if (message.session_id !== sessionId) resetFeedback();
      sessionId = message.session_id;
      sessionStorage.setItem(SESSION_KEY, message.session_id);
      showMode(message.mode);
    },
    "mode.changed": (message) => showMode(message.mode),
    "transcript": (message) => {
      if (message.role === "assistant") el("assistant-now").textContent = message.text;
      if (message.role === "visitor" && message.final) setState("thinking");
      if (message.final) addHistory(message.role, message.text);
    },
    "visit.updated": showVisit,
    "response.done": (message) => {
      if (message.status === "cancelled") KioskAudio.stop();
      if (!KioskAudio.isPlaying()) setState(idleState());
      setStatus(strings.connected);
      setEnabled(true);
    },
    "session.ended": (message) => {
      sessionStorage.removeItem(SESSION_KEY);
      // The visitor walked away: nothing of theirs stays on screen for the next person.
      if (message.reason === "idle") { forget(); reconnectOnClose(); }
    },
    "error": (message) => {
      if (message.code === "unauthorized") { setStatus(strings.unauthorized); return; }
      if (message.code === "session_forbidden") sessionStorage.removeItem(SESSION_KEY);
      if (message.code === "input_audio_empty") { setState(idleState()); return; }
      setStatus(strings.error);
      setEnabled(true);
    },
  };

  function onAudio(buffer) {
    setState("speaking");
    KioskAudio.play(buffer, () => setState(idleState()));
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  async function startMicrophone() {
    if (microphone !== "off") return;
    try {
      await KioskAudio.startCapture((frame) => {
        const handsFree = el("hands-free").checked;
        if ((handsFree || talkHeld) && socket && socket.readyState === WebSocket.OPEN) socket.send(frame);
      });
      microphone = "on";
      el("talk").hidden = false;
      el("hands-free-label").hidden = false;
      setState("listening");
    } catch (error) {
      microphone = "refused";
      el("mic-message").hidden = false;
      el("mic-message").textContent = error.name === "NotAllowedError" ? strings.mic_refused : strings.mic_missing;
      setState("idle");
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/kiosk/");
    socket.binaryType = "arraybuffer";
    setStatus(strings.connecting);
    socket.addEventListener("open", () => {
      retryDelay = 1000;
      const start = { type: "session.start", language, voice: true };
      const previous = sessionStorage.getItem(SESSION_KEY);
      if (previous) start.session_id = previous;  // a reload or reconnect continues the same visit
      socket.send(JSON.stringify(start));
      startMicrophone();
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data !== "string") { onAudio(event.data); return; }
      const message = JSON.parse(event.data);
      (handlers[message.type] || (() => {}))(message);
    });
    socket.addEventListener("close", (event) => {
      setEnabled(false);
      if (event.code === 4401) { setStatus(strings.unauthorized); return; }
      if (event.code === 1000 || event.code === 4409) return;  // 4409: a newer screen of this kiosk took over
      setStatus(strings.reconnecting);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  function forget() {
    clearTimeout(resetTimer);
    KioskAudio.stop();
    sessionStorage.removeItem(SESSION_KEY);
    el("visitor-text").value = "";
    clearScreen();
    resetFeedback();
  }

  // The server closes the ended session; then a fresh one starts on a new connection.
  function reconnectOnClose() {
    socket.addEventListener("close", () => setTimeout(connect, 100), { once: true });
  }

  function restart() {
    forget();
    if (socket && socket.readyState === WebSocket.OPEN) {
      send({ type: "session.end" });
      reconnectOnClose();
    } else {
      connect();
    }
  }

  el("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el("visitor-text").value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (KioskAudio.isPlaying()) { KioskAudio.stop(); send({ type: "response.cancel" }); }
    send({ type: "input_text", text });
    el("visitor-text").value = "";
    setEnabled(false);
    setState("thinking");
    setStatus(strings.thinking);
  });

  const talk = el("talk");
  talk.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    talkHeld = true;
    talk.classList.add("held");
    if (KioskAudio.isPlaying()) { KioskAudio.stop(); send({ type: "response.cancel" }); }
    setState("listening");
  });
  const release = () => {
    if (!talkHeld) return;
    talkHeld = false;
    talk.classList.remove("held");
    if (!el("hands-free").checked) send({ type: "input_audio.commit" });
  };
  talk.addEventListener("pointerup", release);
  talk.addEventListener("pointerleave", release);
  el("restart").addEventListener("click", restart);
  for (const button of document.querySelectorAll("#feedback .rating")) {
    button.addEventListener("click", () => rate(Number(button.dataset.rating)));
  }
  el("feedback-skip").addEventListener("click", () => rate(0));

  connect();
})();
