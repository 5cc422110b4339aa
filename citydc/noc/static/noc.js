// The NOC wall page: asks /api/noc (served from the server's cache) every few seconds and redraws.
// Text only (textContent), never HTML from data; charts are SVG drawn here. No external asset.
"use strict";
(function () {
  const STATUS = {
    ok: ["OK", "正常"], warning: ["WARNING", "警告"], critical: ["CRITICAL", "嚴重"],
    stale: ["STALE", "資料過時"], nodata: ["NO DATA", "無資料"],
  };
  const SEV = { critical: ["CRITICAL", "嚴重"], warning: ["WARNING", "警告"], info: ["INFO", "資訊"] };
  const SVGNS = "http://www.w3.org/2000/svg";
  let refreshMs = 10000, staleMs = 120000, lastOk = 0, timer = null, tz = "Asia/Taipei", lastData = null;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function fmtTime(sec) {
    if (sec === null || sec === undefined) return "—";
    return new Date(sec * 1000).toLocaleString("zh-TW", { timeZone: tz, hour12: false });
  }
  function fmtAge(sec) {
    if (sec === null || sec === undefined) return "never 從未";
    if (sec < 120) return Math.round(sec) + " s";
    if (sec < 7200) return Math.round(sec / 60) + " min";
    if (sec < 172800) return (sec / 3600).toFixed(1) + " h";
    return (sec / 86400).toFixed(1) + " d";
  }
  function fmtBits(b) {
    if (b === null || b === undefined) return "";
    const units = [["Tb/s", 1e12], ["Gb/s", 1e9], ["Mb/s", 1e6], ["kb/s", 1e3]];
    for (const [u, f] of units) if (b >= f) return (b / f).toFixed(2) + " " + u;
    return b.toFixed(0) + " b/s";
  }
  function siteName(data, id) {
    const s = data.sites.find((x) => x.id === id);
    return s ? s.name : (id || "all 全部");
  }
  function statusCell(site, tier, cell, forceStale) {
    const status = forceStale && cell.status !== "critical" ? "stale" : cell.status;
    const td = el("td", { class: "st-" + status, "data-site": site, "data-tier": tier, "data-status": status });
    td.appendChild(document.createTextNode(STATUS[status][0] + " " + STATUS[status][1]));
    const why = forceStale ? "NOC server unreachable 無法連線" : (cell.reason || (cell.alerts ? cell.alerts + " alert(s)" : ""));
    if (why) td.appendChild(el("span", { class: "why" }, why));
    return td;
  }

  function drawCounts(data) {
    const box = document.getElementById("counts");
    clear(box);
    for (const site of data.sites) {
      const c = data.alert_counts[site.id] || {};
      const div = el("div", { class: "site-counts", "data-site": site.id });
      div.appendChild(el("h3", {}, site.name));
      for (const sev of ["critical", "warning", "info"]) {
        const n = c[sev] || 0;
        div.appendChild(el("span", { class: "count " + (n ? "sev-" + sev : "zero"), "data-severity": sev,
          "data-count": n }, n + " " + SEV[sev][0] + " " + SEV[sev][1]));
      }
      box.appendChild(div);
    }
  }

  function drawMatrix(data, forceStale) {
    const table = document.getElementById("matrix");
    const head = table.tHead, body = table.tBodies[0];
    clear(head); clear(body);
    const hr = el("tr");
    hr.appendChild(el("th", {}, ""));
    for (const t of data.tiers) hr.appendChild(el("th", { "data-tier": t.id }, t.zh + " " + t.en));
    head.appendChild(hr);
    for (const site of data.sites) {
      const tr = el("tr", { "data-site": site.id });
      tr.appendChild(el("th", {}, site.name));
      for (const t of data.tiers) tr.appendChild(statusCell(site.id, t.id, data.matrix[site.id][t.id], forceStale));
      body.appendChild(tr);
    }
  }

  function drawAlerts(data) {
    const list = document.getElementById("alerts");
    clear(list);
    for (const a of data.alerts) {
      const li = el("li", { "data-fingerprint": a.fingerprint, "data-alertname": a.alertname,
        "data-severity": a.severity, "data-site": a.site });
      li.appendChild(el("span", { class: "sev sev-" + a.severity }, SEV[a.severity][0] + " " + SEV[a.severity][1]));
      li.appendChild(el("span", { class: "site" }, siteName(data, a.site)));
      li.appendChild(el("span", { class: "what" }, a.alertname + (a.summary ? ": " + a.summary : "")));
      li.appendChild(el("span", { class: "since" }, fmtTime(Date.parse(a.startsAt) / 1000)));
      list.appendChild(li);
    }
    document.getElementById("no-alerts").hidden = data.alerts.length > 0;
  }

  function drawLinks(data) {
    const box = document.getElementById("links");
    clear(box);
    const W = 400, H = 70;
    const t1 = data.sources.links.fetched_at || 0;
    box.setAttribute("data-at", t1);
    for (const l of data.links) {
      const div = el("div", { class: "link", "data-site": l.site, "data-device": l.device, "data-ifname": l.ifName,
        "data-direction": l.direction, "data-value": l.utilisation_ratio === null ? "" : l.utilisation_ratio,
        "data-bits": l.bits_per_second === null ? "" : l.bits_per_second });
      const dir = l.direction === "in" ? "in 入" : "out 出";
      div.appendChild(el("div", { class: "name" }, siteName(data, l.site) + " · " + l.device + " " + l.ifName + " " + dir
        + (l.ifAlias ? " · " + l.ifAlias : "")));
      const pct = l.utilisation_ratio === null ? "—" : (l.utilisation_ratio * 100).toFixed(1) + " %";
      div.appendChild(el("span", { class: "now" + (l.utilisation_ratio >= 0.8 ? " hot" : "") }, pct));
      div.appendChild(el("span", { class: "bits" }, "  " + fmtBits(l.bits_per_second)));
      const s = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img",
        "aria-label": l.device + " " + l.ifName + " " + dir + " " + pct });
      for (const f of [0.5, 0.8]) s.appendChild(svg("line", { class: "grid", x1: 0, x2: W, y1: H - f * H, y2: H - f * H }));
      const pts = l.series.filter((p) => p[1] !== null);
      if (pts.length) {
        const t0 = t1 - (data.chart_seconds || 3600);
        const xy = pts.map((p) => {
          const x = ((p[0] - t0) / Math.max(1, t1 - t0)) * W;
          const y = H - Math.min(1, Math.max(0, p[1])) * H;
          return x.toFixed(1) + "," + y.toFixed(1);
        });
        const line = svg("polyline", { class: "line", points: xy.join(" "), "data-last": pts[pts.length - 1][1] });
        s.appendChild(line);
      }
      div.appendChild(s);
      box.appendChild(div);
    }
    if (!data.links.length) box.appendChild(el("p", { class: "quiet" }, "no link data 無鏈路資料"));
  }

  function drawBackups(data) {
    const body = document.getElementById("backups").tBodies[0];
    clear(body);
    for (const b of data.backups) {
      const tr = el("tr", { "data-site": b.site, "data-job": b.job, "data-repo": b.repo, "data-step": b.step,
        "data-overdue": b.overdue });
      tr.appendChild(el("td", {}, siteName(data, b.site)));
      tr.appendChild(el("td", {}, b.job + " · " + b.repo + " · " + b.step));
      tr.appendChild(el("td", { class: "age " + (b.overdue ? "bad" : "good") },
        (b.overdue ? "LATE 逾時 " : "OK 正常 ") + fmtAge(b.age_seconds)));
      body.appendChild(tr);
    }
    if (!data.backups.length) body.appendChild(el("tr")).appendChild(el("td", {}, "no backup metrics 無備份資料"));
  }

  function drawAudit(data) {
    const body = document.getElementById("audit").tBodies[0];
    clear(body);
    for (const a of data.audit) {
      const tr = el("tr", { "data-site": a.site, "data-source": a.source });
      tr.appendChild(el("td", {}, siteName(data, a.site) + " · " + a.source));
      const f = a.findings || {};
      const parts = Object.keys(f).filter((k) => f[k]).map((k) => k + " " + f[k]);
      const bad = (f.critical || 0) + (f.high || 0) > 0;
      tr.appendChild(el("td", { class: "age " + (bad ? "bad" : "good") }, parts.length ? parts.join(", ") : "0 findings 無發現"));
      tr.appendChild(el("td", {}, a.top_rules.map((r) => r.rule + " " + r.count).join(", ")));
      tr.appendChild(el("td", {}, fmtTime(a.last_success)));
      body.appendChild(tr);
    }
    if (!data.audit.length) body.appendChild(el("tr")).appendChild(el("td", {}, "no audit metrics 無稽核資料"));
  }

  function drawBanner(data, unreachable) {
    const banner = document.getElementById("banner");
    const stale = Object.entries(data ? data.sources : {}).filter(([, s]) => s.stale).map(([n]) => n);
    let text = "";
    if (unreachable) text = "STALE 資料過時 — NOC server unreachable 無法連線 NOC 伺服器";
    else if (stale.length) text = "STALE 資料過時: " + stale.join(", ");
    banner.textContent = text;
    banner.hidden = !text;
    document.body.setAttribute("data-stale", text ? "true" : "false");
  }

  function draw(data, unreachable) {
    tz = data.timezone || tz;
    drawBanner(data, unreachable);
    drawCounts(data);
    drawMatrix(data, unreachable);
    drawAlerts(data);
    drawLinks(data);
    drawBackups(data);
    drawAudit(data);
    const wd = document.getElementById("watchdog");
    wd.textContent = data.watchdog === true ? "alert pipeline OK 告警管線正常"
      : "Watchdog missing: alert pipeline broken? 告警管線異常";
    wd.className = "watchdog" + (data.watchdog === true ? "" : " bad");
    document.getElementById("updated").textContent = fmtTime(data.polled_at);
    document.body.setAttribute("data-polls", data.polls);
  }

  async function tick() {
    try {
      const resp = await fetch("/api/noc", { cache: "no-store", credentials: "same-origin" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const data = await resp.json();
      refreshMs = Math.max(1000, (data.refresh_seconds || 10) * 1000);
      staleMs = (data.stale_after_seconds || 120) * 1000;
      lastOk = Date.now();
      lastData = data;
      draw(data, false);
    } catch (e) {
      if (lastData && Date.now() - lastOk > staleMs) draw(lastData, true);
      else if (!lastData) drawBanner(null, true);
    }
    document.getElementById("clock").textContent = fmtTime(Date.now() / 1000);
    timer = setTimeout(tick, refreshMs);
  }
  document.addEventListener("DOMContentLoaded", tick);
})();
