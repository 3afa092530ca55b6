// Draws the operations dashboard's charts from the JSON the page embeds (Chart.js is vendored, no CDN).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("metrics-chart-data").textContent);
  const paths = ["realtime", "legacy"];
  const colors = { realtime: "#417690", legacy: "#c77700" };
  const opts = { responsive: true, maintainAspectRatio: false, animation: false };
  const val = (x) => (x === null || x === undefined ? 0 : Number(x));
  const make = (id, config) => new Chart(document.getElementById(id), { ...config, options: { ...opts, ...(config.options || {}) } });

  make("chart-sessions", {
    type: "bar",
    data: {
      labels: ["started", "ended", "completed", "errors", "fell back"],
      datasets: paths.map((p) => ({
        label: p, backgroundColor: colors[p],
        data: ["started", "ended", "completed", "errors", "fell_back"].map((k) => val(data.paths[p][k])),
      })),
    },
  });
  make("chart-latency", {
    type: "bar",
    data: {
      labels: ["TTFA p50", "TTFA p95", "upstream p50", "upstream p95", "server p50", "server p95"],
      datasets: paths.map((p) => ({
        label: p, backgroundColor: colors[p],
        data: ["ttfa_p50_ms", "ttfa_p95_ms", "upstream_p50_ms", "upstream_p95_ms", "server_p50_ms", "server_p95_ms"]
          .map((k) => val(data.paths[p][k])),
      })),
    },
  });
  make("chart-cost", {
    type: "line",
    data: {
      labels: data.cost.labels,
      datasets: paths.map((p) => ({ label: p, borderColor: colors[p], backgroundColor: colors[p], data: data.cost[p], tension: 0.2 })),
    },
  });
  make("chart-rates", {
    type: "bar",
    data: {
      labels: ["session success", "session errors", "turn errors"],
      datasets: paths.map((p) => ({
        label: p, backgroundColor: colors[p],
        data: [val(data.paths[p].success_rate), val(data.paths[p].error_rate), val(data.paths[p].turn_error_rate)],
      })),
    },
    options: { scales: { y: { min: 0, max: 1 } } },
  });
  const reasons = Object.keys(data.fallbacks);
  make("chart-fallbacks", {
    type: "bar",
    data: { labels: reasons.length ? reasons : ["none"], datasets: [{ label: "fallbacks", backgroundColor: "#ba2121", data: reasons.length ? reasons.map((r) => data.fallbacks[r]) : [0] }] },
  });
  document.body.dataset.chartsDrawn = "true";
})();
