// Keeps the machine cards current by polling the API; no framework, no CDN.
(function () {
  const labels = {offline: "Offline", idle: "Free", in_use: "In use", busy: "Working",
                  printing: "Printing", locked: "Locked out"};
  async function refresh() {
    try {
      const res = await fetch("/api/v1/machines", {headers: {Accept: "application/json"}});
      if (!res.ok) return;
      for (const m of await res.json()) {
        const card = document.querySelector(`[data-code="${m.code}"]`);
        if (!card) continue;
        card.className = `card state-${m.state}`;
        const label = labels[m.state] || m.state;
        card.querySelector(".label").textContent =
          m.progress != null ? `${label} ${Math.round(m.progress)} %` : label;
        card.querySelector(".who").textContent = m.in_use_by || "";
      }
    } catch (e) { /* hub restarting: try again next time */ }
  }
  setInterval(refresh, 2000);
})();
