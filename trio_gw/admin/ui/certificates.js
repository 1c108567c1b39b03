// The certificate inventory page: loads GET /certificates/inventory (same origin, relative URL so a path
// prefix in front of the Admin API keeps working) and renders the timeline and the table.  Every value
// from the JSON goes into the page as text (textContent), never as markup: subjects and names come from
// certificates, which anyone can write.
"use strict";

(function () {
  const DAY = 86400;
  const ROLE_LABELS = {
    server: "server", acme: "ACME", upstream_client: "upstream client", ca: "CA", consumer: "consumer",
  };
  const STATUS_LABELS = {
    ok: "ok", warning: "expiring", critical: "expiring soon", expired: "expired", not_yet_valid: "not yet valid",
  };
  const roleFilter = document.getElementById("role-filter");
  const expiringFilter = document.getElementById("expiring-filter");
  let generation = 0;
  let now = 0; // the server's clock, from the answer

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function isoDay(seconds) {
    return new Date(seconds * 1000).toISOString().slice(0, 10);
  }

  function isoMinute(seconds) {
    return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // What people call a certificate: its common name, else its first name, else its subject.
  function displayName(item) {
    const names = [...item.sans.dns, ...item.sans.ip, ...item.sans.uri, ...item.sans.email];
    return item.common_names[0] || names[0] || item.subject || "(no subject)";
  }

  function query() {
    const params = new URLSearchParams();
    if (roleFilter.value) params.set("role", roleFilter.value);
    if (expiringFilter.value) params.set("expiring_within", expiringFilter.value);
    return params.toString();
  }

  function readLocation() {
    const params = new URLSearchParams(window.location.search);
    for (const [select, name] of [[roleFilter, "role"], [expiringFilter, "expiring_within"]]) {
      const value = params.get(name) || "";
      if ([...select.options].some((o) => o.value === value)) select.value = value;
    }
  }

  async function load() {
    const mine = ++generation;
    const qs = query();
    const url = "../certificates/inventory" + (qs ? "?" + qs : "");
    const link = document.getElementById("json-link");
    link.href = url;
    link.textContent = "GET /certificates/inventory" + (qs ? "?" + qs : "");
    window.history.replaceState(null, "", qs ? "?" + qs : window.location.pathname);
    const error = document.getElementById("error");
    try {
      const answer = await fetch(url, { headers: { accept: "application/json" }, cache: "no-store" });
      const body = await answer.json();
      if (!answer.ok) throw new Error(body.message || "HTTP " + answer.status);
      if (mine !== generation) return; // a newer filter change is already loading
      error.hidden = true;
      render(body);
    } catch (exc) {
      if (mine !== generation) return;
      error.textContent = "The inventory could not be loaded: " + exc.message;
      error.hidden = false;
    }
    document.body.dataset.loadedQuery = qs;
  }

  function render(body) {
    now = body.generated_at;
    const counts = body.counts.by_status;
    const summary = [body.counts.total + " certificate" + (body.counts.total === 1 ? "" : "s")];
    if (counts.expired) summary.push(counts.expired + " expired");
    if (counts.critical) summary.push(counts.critical + " within " + body.thresholds.critical_days + " days");
    if (counts.warning) summary.push(counts.warning + " within " + body.thresholds.warning_days + " days");
    document.getElementById("summary").textContent = summary.join(" · ");
    renderTimeline(body.timeline, body.data);
    renderTable(body.data);
  }

  function renderTimeline(timeline, data) {
    const expired = document.getElementById("timeline-expired");
    expired.textContent = timeline.expired + " expired";
    expired.dataset.count = timeline.expired;
    const bars = document.getElementById("timeline-bars");
    const axis = document.getElementById("timeline-axis");
    bars.replaceChildren();
    axis.replaceChildren();
    const most = Math.max(1, ...timeline.buckets.map((b) => b.count));
    timeline.buckets.forEach((bucket, index) => {
      const bar = el("div", "bar" + (bucket.count ? " has" : "") + (index === 0 ? " soon" : ""));
      bar.dataset.count = bucket.count;
      bar.dataset.start = bucket.start;
      bar.title = isoDay(bucket.start) + " to " + isoDay(bucket.end) + ": " +
        (bucket.count ? bucket.keys.join(", ") : "nothing expires");
      if (bucket.count) bar.append(el("span", "count", bucket.count));
      const fill = el("div", "fill");
      fill.style.height = (bucket.count / most) * 85 + "%";
      bar.append(fill);
      bars.append(bar);
      axis.append(el("span", null, isoDay(bucket.start).slice(5)));
    });
    const strip = document.getElementById("timeline-strip");
    strip.replaceChildren();
    const span = timeline.end - timeline.start;
    for (const item of data) {
      if (item.not_after < timeline.start || item.not_after >= timeline.end) continue;
      const dot = el("span", "dot status-" + item.status);
      dot.dataset.key = item.key;
      dot.style.left = ((item.not_after - timeline.start) / span) * 100 + "%";
      dot.title = displayName(item) + " (" + (ROLE_LABELS[item.role] || item.role) +
        "): " + isoMinute(item.not_after);
      strip.append(dot);
    }
  }

  function renderTable(data) {
    const tbody = document.querySelector("#inventory tbody");
    tbody.replaceChildren(...data.map(row));
    document.getElementById("empty").hidden = data.length > 0;
  }

  function row(item) {
    const tr = el("tr");
    tr.dataset.key = item.key;
    tr.dataset.role = item.role;
    tr.dataset.status = item.status;
    tr.dataset.days = item.days_to_expiry;

    const days = el("td", "days-cell");
    const pill = el("span", "days status-" + item.status,
      item.expired ? "expired" : item.days_to_expiry + " d");
    pill.title = STATUS_LABELS[item.status] || item.status;
    days.append(pill);
    if (item.expired) days.append(el("div", "small", Math.floor((now - item.not_after) / DAY) + " d ago"));

    const role = el("td", "role", ROLE_LABELS[item.role] || item.role);

    const subject = el("td", "subject");
    subject.append(el("div", "cn", displayName(item)));
    subject.append(el("div", "dn", item.subject));
    const names = [...item.sans.dns, ...item.sans.ip, ...item.sans.uri, ...item.sans.email];
    const sans = el("div", "sans");
    for (const name of names) sans.append(el("span", "chip san", name));
    if (names.length) subject.append(sans);

    const issuer = el("td", "issuer", item.issuer);
    const fingerprint = el("td", "fingerprint", item.fingerprint);
    const notAfter = el("td", "not-after", isoMinute(item.not_after));

    const users = el("td", "used-by");
    for (const user of item.used_by) {
      const chip = el("span", "chip kind-" + user.kind, user.kind + " " + (user.name || user.id));
      chip.title = user.kind + " " + user.id;
      users.append(chip);
    }
    if (!item.used_by.length) users.append(el("span", "small", "nothing references it"));

    const revocation = el("td", "revocation");
    if (item.revocation) {
      const known = item.revocation;
      const text = el("span", "rev-" + known.status, known.status + " (" + known.source.toUpperCase() + ")");
      text.title = "checked " + isoMinute(known.checked_at) + (known.reason ? ": " + known.reason : "");
      revocation.append(text);
    } else {
      revocation.append(el("span", "rev-unknown", "—"));
    }

    const source = el("td", "source small", item.source);
    tr.append(days, role, subject, issuer, fingerprint, notAfter, users, revocation, source);
    return tr;
  }

  readLocation();
  roleFilter.addEventListener("change", load);
  expiringFilter.addEventListener("change", load);
  load();
})();
