// backburner dashboard: bulk selection, confirmations, live numbers and the
// realtime graph. Loaded as a file because the Content-Security-Policy
// allows no inline script. Job data is only ever written with textContent.
"use strict";

(function () {
  const body = document.body;
  const base = body.dataset.base || "";
  const pollMs = Math.max(500, parseInt(body.dataset.pollMs || "2000", 10));
  const maxSamples = 60;
  const samples = [];
  let previous = null;

  function setupBulk(form) {
    const boxes = Array.from(form.querySelectorAll('input[type="checkbox"][name="ids"]'));
    const all = form.querySelector("[data-select-all]");
    const buttons = Array.from(form.querySelectorAll("[data-needs-selection]"));
    const counter = form.querySelector("[data-selection-count]");

    function refresh() {
      const selected = boxes.filter((box) => box.checked).length;
      buttons.forEach((button) => { button.disabled = selected === 0; });
      if (counter) {
        counter.textContent = selected ? selected + " selected" : "";
      }
      if (all) {
        all.checked = selected > 0 && selected === boxes.length;
        all.indeterminate = selected > 0 && selected < boxes.length;
      }
    }

    if (all) {
      all.addEventListener("change", () => {
        boxes.forEach((box) => { box.checked = all.checked; });
        refresh();
      });
    }
    boxes.forEach((box) => box.addEventListener("change", refresh));
    refresh();
  }

  function setupConfirm(button) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  // Own properties only, so a queue named "constructor" or "__proto__" reads as a queue.
  function own(value, key) {
    return value != null && Object.prototype.hasOwnProperty.call(value, key) ? value[key] : undefined;
  }

  function lookup(data, path) {
    // A queue name may contain dots, so everything after "queues." is one key.
    if (path.startsWith("queues.")) {
      return own(data.queues, path.slice("queues.".length));
    }
    return path.split(".").reduce(own, data);
  }

  function updateNumbers(data) {
    document.querySelectorAll("[data-stat]").forEach((element) => {
      const value = lookup(data, element.dataset.stat);
      if (element.dataset.stat.startsWith("queues.") && value === undefined) {
        element.textContent = "0";
      } else if (value !== undefined && value !== null) {
        element.textContent = String(value);
      }
    });
  }

  function recordSample(data) {
    const current = { at: data.now, succeeded: data.totals.succeeded, failed: data.totals.failed };
    if (previous && current.at > previous.at) {
      const seconds = current.at - previous.at;
      samples.push({
        succeeded: Math.max(0, current.succeeded - previous.succeeded) / seconds,
        failed: Math.max(0, current.failed - previous.failed) / seconds,
      });
      if (samples.length > maxSamples) {
        samples.shift();
      }
    }
    previous = current;
  }

  function drawLiveChart(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const style = getComputedStyle(document.documentElement);
    const left = 44;
    const top = 8;
    const plotWidth = width - left - 8;
    const plotHeight = height - top - 20;
    const peak = Math.max(1, ...samples.map((s) => Math.max(s.succeeded, s.failed)));

    context.strokeStyle = "#eef0f3";
    context.fillStyle = style.getPropertyValue("--muted").trim() || "#6b7385";
    context.font = "12px system-ui, sans-serif";
    context.textAlign = "right";
    [0, 0.5, 1].forEach((fraction) => {
      const y = top + plotHeight * (1 - fraction);
      context.beginPath();
      context.moveTo(left, y);
      context.lineTo(left + plotWidth, y);
      context.stroke();
      context.fillText((peak * fraction).toFixed(peak < 10 ? 1 : 0), left - 6, y + 4);
    });

    function line(key, color) {
      if (samples.length < 2) {
        return;
      }
      context.strokeStyle = color;
      context.lineWidth = 2.2;
      context.lineJoin = "round";
      context.beginPath();
      samples.forEach((sample, index) => {
        const x = left + plotWidth * (index + maxSamples - samples.length) / (maxSamples - 1);
        const y = top + plotHeight * (1 - sample[key] / peak);
        if (index === 0) {
          context.moveTo(x, y);
        } else {
          context.lineTo(x, y);
        }
      });
      context.stroke();
    }

    line("succeeded", style.getPropertyValue("--succeeded").trim() || "#1f9d55");
    line("failed", style.getPropertyValue("--failed").trim() || "#d33a3a");
  }

  function setStatus(ok) {
    const dot = document.querySelector("[data-live-status]");
    if (dot) {
      dot.classList.toggle("ok", ok);
      dot.classList.toggle("error", !ok);
      dot.title = ok ? "Live numbers are up to date" : "Live numbers could not be refreshed";
    }
  }

  async function poll() {
    try {
      const response = await fetch(base + "/api/stats", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      updateNumbers(data);
      recordSample(data);
      const canvas = document.getElementById("live-chart");
      if (canvas) {
        drawLiveChart(canvas);
        const note = document.querySelector("[data-live-note]");
        if (note && samples.length >= 2) {
          note.textContent = "Jobs per second over the last " +
            Math.round(samples.length * pollMs / 1000) + " s, refreshed every " +
            pollMs / 1000 + " s.";
        }
      }
      setStatus(true);
    } catch (error) {
      setStatus(false);
    } finally {
      window.setTimeout(poll, pollMs);
    }
  }

  document.querySelectorAll("form[data-bulk]").forEach(setupBulk);
  document.querySelectorAll("button[data-confirm]").forEach(setupConfirm);
  const canvas = document.getElementById("live-chart");
  if (canvas) {
    drawLiveChart(canvas);
    window.addEventListener("resize", () => drawLiveChart(canvas));
  }
  poll();
}());
