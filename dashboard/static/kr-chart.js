// Draws a KR's daily history, expected path and forecast with the vendored uPlot.
"use strict";
(function () {
  var holder = document.getElementById("kr-chart");
  var source = document.getElementById("kr-chart-data");
  if (!holder || !source || typeof uPlot === "undefined") { return; }
  // The data arrives as a JSON data block (never executed), so no inline script is needed.
  var chart = JSON.parse(source.textContent);
  var unit = chart.unit;
  function format(value) {
    if (value === null || value === undefined) { return "—"; }
    if (unit === "ratio") { return (value * 100).toFixed(1) + " %"; }
    if (unit === "currency") { return Math.round(value).toLocaleString("en"); }
    return value.toFixed(1);
  }
  var target = chart.x.map(function () { return chart.target; });
  // Check-ins as markers on the day their value was measured (a JSON block of the KR page).
  var marks = document.getElementById("kr-checkins-data");
  var byDay = {};
  (marks ? JSON.parse(marks.textContent) : []).forEach(function (m) { byDay[m.x] = m.value; });
  var checkIns = chart.x.map(function (x) { return x in byDay ? byDay[x] : null; });
  var options = {
    width: Math.max(holder.clientWidth, 280),
    height: 320,
    scales: { x: { time: true } },
    series: [
      {},
      { label: "Value", stroke: "#0b57a4", width: 2.5, value: function (u, v) { return format(v); } },
      { label: "Expected", stroke: "#1a1a1a", width: 1.5, dash: [6, 4], value: function (u, v) { return format(v); } },
      { label: "Forecast", stroke: "#b45309", width: 2, dash: [2, 4], value: function (u, v) { return format(v); } },
      { label: "Target", stroke: "#1e7a45", width: 1.5, value: function (u, v) { return format(v); } },
      { label: "Check-in", stroke: "#7b2d8e", width: 0, paths: function () { return null; },
        points: { show: true, size: 9, fill: "#7b2d8e" }, value: function (u, v) { return format(v); } }
    ],
    axes: [{}, { size: 70, values: function (u, ticks) { return ticks.map(format); } }]
  };
  var plot = new uPlot(options, [chart.x, chart.value, chart.expected, chart.forecast, target, checkIns], holder);
  holder.setAttribute("data-drawn", "true");
  window.addEventListener("resize", function () {
    plot.setSize({ width: Math.max(holder.clientWidth, 280), height: 320 });
  });
})();
