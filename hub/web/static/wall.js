// The wall display (templates/wall.html): keeps the board current from the hub's event
// stream. When the stream drops (the hub restarts, the network goes), a banner says since
// when the board is stale; the page asks the hub every few seconds and reloads once it
// answers, so a screen nobody touches comes back by itself. No inline script: the
// Content-Security-Policy (deploy/nginx) allows scripts from /static only.
(() => {
  const wall = document.getElementById("wall");
  if (!wall) return;
  const banner = document.getElementById("lost");
  const QUIET_MS = 15000; // the hub says "alive" every few seconds: silence this long is a drop
  const RETRY_MS = 3000;
  // A page that loads but whose stream fails at once (the hub refuses more walls) must not
  // reload every 3 s for ever: each drop without a board in between waits twice as long, up
  // to a minute. The count lives in the tab's sessionStorage, across the reloads.
  const DROPS = "atelier-wall-drops";
  const drops = Number(window.sessionStorage.getItem(DROPS) || 0);
  const waitMs = Math.min(RETRY_MS * 2 ** drops, 60000);
  let lastAt = wall.dataset.at;
  let source = null;
  let watchdog = null;
  let lost = false;

  function retry() {
    fetch(window.location.href, { cache: "no-store" }).then(
      (answer) => {
        // 200: back; 403: revoked meanwhile, the reload shows the refusal. Else keep trying.
        if (answer.status === 200 || answer.status === 403) window.location.reload();
        else window.setTimeout(retry, waitMs);
      },
      () => window.setTimeout(retry, waitMs),
    );
  }

  function connectionLost() {
    if (lost) return;
    lost = true;
    window.clearTimeout(watchdog);
    if (source) source.close();
    banner.querySelector(".message").textContent = banner.dataset.template.replace("{time}", lastAt);
    banner.hidden = false;
    document.body.classList.add("stale");
    window.sessionStorage.setItem(DROPS, String(drops + 1));
    window.setTimeout(retry, waitMs);
  }

  function heard(event) {
    if (event && event.lastEventId) lastAt = event.lastEventId;
    window.clearTimeout(watchdog);
    watchdog = window.setTimeout(connectionLost, QUIET_MS);
  }

  function connect() {
    source = new EventSource(wall.dataset.stream);
    source.addEventListener("board", (event) => {
      heard(event);
      window.sessionStorage.removeItem(DROPS);
      document.getElementById("board").innerHTML = event.data;
    });
    source.addEventListener("alive", heard);
    // The hub ends each connection after a few minutes: open the next one, no banner.
    source.addEventListener("bye", () => {
      source.close();
      connect();
    });
    source.addEventListener("revoked", () => window.location.reload());
    source.addEventListener("error", connectionLost);
  }

  heard(null);
  connect();
})();
