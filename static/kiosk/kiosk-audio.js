// Kiosk audio: microphone capture at 24 kHz through an AudioWorklet, and interruptible playback
// of the assistant's PCM16 24 kHz audio. Exposes window.KioskAudio.
"use strict";

window.KioskAudio = (() => {
  const SAMPLE_RATE = 24000;
  let context = null;
  let playhead = 0;
  let playedSeconds = 0;  // how much of the assistant's voice this page has played (shown to tests)
  const playing = new Set();

  function ensureContext() {
    if (!context) context = new AudioContext({ sampleRate: SAMPLE_RATE });
    if (context.state === "suspended") context.resume();
    return context;
  }

  // Start the microphone; onFrame receives ArrayBuffers of PCM16. Rejects with the browser's
  // error (NotAllowedError when refused, NotFoundError when there is no microphone).
  async function startCapture(onFrame) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const error = new Error("getUserMedia unavailable");
      error.name = "NotSupportedError";
      throw error;
    }
    const ctx = ensureContext();
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await ctx.audioWorklet.addModule(document.body.dataset.captureWorklet);
    const source = ctx.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(ctx, "pcm-capture");
    capture.port.onmessage = (event) => onFrame(event.data);
    source.connect(capture);
    return { sampleRate: ctx.sampleRate };
  }

  // Queue one chunk of the assistant's voice right after the previous one.
  function play(buffer, onEnded) {
    const ctx = ensureContext();
    const pcm = new Int16Array(buffer);
    const audio = ctx.createBuffer(1, pcm.length, SAMPLE_RATE);
    const channel = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 0x8000;
    const node = ctx.createBufferSource();
    node.buffer = audio;
    node.connect(ctx.destination);
    playhead = Math.max(playhead, ctx.currentTime + 0.02);
    node.start(playhead);
    playhead += audio.duration;
    playedSeconds += audio.duration;
    playing.add(node);
    node.onended = () => {
      playing.delete(node);
      if (playing.size === 0 && onEnded) onEnded();
    };
  }

  // Barge-in: silence everything queued, at once.
  function stop() {
    for (const node of playing) {
      node.onended = null;
      node.stop();
    }
    playing.clear();
    playhead = 0;
  }

  return { startCapture, play, stop, isPlaying: () => playing.size > 0, playedSeconds: () => playedSeconds };
})();
