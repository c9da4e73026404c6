// Reads what report.html shows, as a release manager's browser lays it out,
// and leaves it as JSON in the embedding page, for --dump-dom.
(function () {
  const firstScreen = (el) => !!el && el.getBoundingClientRect().bottom <= window.innerHeight;
  const text = (el) => (el ? el.textContent.replace(/\s+/g, " ").trim() : null);
  const charts = Array.from(document.querySelectorAll("svg.chart")).map((svg) => ({
    caption: text(svg.closest("figure") && svg.closest("figure").querySelector("figcaption")),
    x_ticks: svg.querySelectorAll("g.axis.x text").length,
    y_ticks: svg.querySelectorAll("g.axis.y text").length,
    limits: Array.from(svg.querySelectorAll("g.limit text")).map(text),
    bars: svg.querySelectorAll("rect.bar").length,
    bad_bars: svg.querySelectorAll("rect.bar.bad").length,
    width: svg.getBoundingClientRect().width,
  }));
  const failures = Array.from(document.querySelectorAll("#failures li"));
  const probe = {
    errors: window.__preflightErrors || [],
    viewport: [window.innerWidth, window.innerHeight],
    scroll_width: document.documentElement.scrollWidth,
    verdict: text(document.querySelector("#verdict h1")),
    verdict_on_first_screen: firstScreen(document.querySelector("#verdict h1")),
    baseline: text(document.querySelector("#baseline")),
    baseline_on_first_screen: firstScreen(document.querySelector("#baseline")),
    failures: failures.map(text),
    failures_on_first_screen: failures.every(firstScreen),
    changes: document.querySelectorAll("#changes table.figures tbody tr").length,
    // Each row of "What changed": model, figure, baseline, now, change, limit, verdict.
    change_rows: Array.from(document.querySelectorAll("#changes table.figures tbody tr")).map(
      (tr) => Array.from(tr.querySelectorAll("td")).map(text),
    ),
    charts: charts,
    scripts: document.querySelectorAll("script").length,
    external: Array.from(document.querySelectorAll("[src],link[href]")).length,
  };
  const pre = parent.document.createElement("pre");
  pre.id = "preflight-probe";
  pre.textContent = JSON.stringify(probe);
  parent.document.body.appendChild(pre);
})();
