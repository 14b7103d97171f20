// Reactor's web UI: live updates over Server-Sent Events, the run graph's zoom, the task
// panel, the log tail and keyboard shortcuts. No build step; htmx does the forms.
"use strict";

(function () {
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function label(status) {
    return status.replace(/_/g, " ");
  }

  // Forms answer 4xx with an error fragment for the form: show it instead of ignoring it.
  document.addEventListener("htmx:beforeSwap", (e) => {
    const status = e.detail.xhr.status;
    if (status >= 400 && status < 600) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
    }
  });

  // Times are sent in UTC; they are shown in the browser's time zone (UTC in the tooltip).
  const LOCAL = new Intl.DateTimeFormat("sv-SE", {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  function localTimes(root) {
    for (const t of $$("time[datetime]:not([data-local])", root)) {
      const moment = new Date(t.getAttribute("datetime"));
      if (isNaN(moment)) continue;
      t.title = t.textContent + " UTC";
      t.textContent = LOCAL.format(moment);
      t.dataset.local = "";
    }
  }
  document.addEventListener("htmx:afterSettle", (e) => localTimes(e.detail.elt));

  function stream(url, handlers) {
    const source = new EventSource(url);
    for (const [kind, handle] of Object.entries(handlers)) {
      source.addEventListener(kind, (e) => handle(JSON.parse(e.data)));
    }
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  // Lists of runs (pipelines, runs): refetched when a run changes, at most once a second.
  function liveLists() {
    if (!$("[data-live-runs]")) return;
    const refresh = debounce(() => {
      const target = $("[data-live-runs]");
      if (target && window.htmx) htmx.trigger(target, "refresh");
    }, 700);
    stream("/ui/stream/runs", { run: refresh });
  }

  // The run page.
  function runPage() {
    const page = $(".run-page");
    if (!page) return;
    const runId = page.dataset.run;
    const nodes = new Map($$("svg.graph .node").map((n) => [n.dataset.task, n]));
    // Rows come and go (a big run lists its first tasks until asked for all).
    const rowOf = (taskId) => $(`#tasks-table tr[data-task="${CSS.escape(taskId)}"]`);
    const panel = $("#panel");
    let openTask = null;
    const refreshTimeline = debounce(() => htmx.trigger("#timeline", "refresh"), 1000);
    const refreshHeader = debounce(() => htmx.trigger("#run-header", "refresh"), 400);
    const refreshPanel = debounce(() => openTask && showTask(openTask, false), 500);

    function applyTask(t) {
      const node = nodes.get(t.task_id);
      if (node) {
        node.dataset.status = t.status;
        node.setAttribute("aria-label", `task ${t.task_id}: ${label(t.status)}`);
        const title = $("title", node);
        if (title) title.textContent = title.textContent.replace(/: [a-z ]+$/, ": " + label(t.status));
      }
      const row = rowOf(t.task_id);
      if (row) {
        row.dataset.status = t.status;
        const badge = $(".st .badge", row);
        badge.dataset.status = t.status;
        badge.textContent = label(t.status);
        const attempts = $(".at", row);
        if (attempts && attempts.firstChild) attempts.firstChild.textContent = String(t.attempts);
        const error = $(".error-cell", row);
        if (error) error.textContent = t.error ? t.error.slice(0, 160) : "";
      }
      if (t.task_id === openTask) refreshPanel();
    }

    stream(page.dataset.stream, {
      snapshot: (s) => {
        s.tasks.forEach(applyTask);
        if ($("#run-header").dataset.runStatus !== s.run.status) refreshHeader();
      },
      task: (t) => {
        applyTask(t);
        refreshTimeline();
        refreshHeader();
      },
      run: () => {
        refreshHeader();
        refreshTimeline();
      },
    });

    // The task panel: opened from the graph, the table or the address (?task=).
    let tail = null;
    function showTask(taskId, push) {
      openTask = taskId;
      nodes.forEach((n) => n.classList.toggle("selected", n.dataset.task === taskId));
      const url = `/runs/${encodeURIComponent(runId)}/tasks/${encodeURIComponent(taskId)}`;
      htmx.ajax("GET", url, { target: "#panel", swap: "innerHTML" }).then(() => {
        panel.hidden = false;
        startTail();
      });
      if (push) {
        const address = new URL(window.location.href);
        address.searchParams.set("task", taskId);
        history.replaceState(null, "", address);
      }
    }
    function closeTask() {
      openTask = null;
      if (tail) tail.close();
      panel.hidden = true;
      panel.innerHTML = "";
      nodes.forEach((n) => n.classList.remove("selected"));
      const address = new URL(window.location.href);
      address.searchParams.delete("task");
      history.replaceState(null, "", address);
    }
    function startTail() {
      if (tail) tail.close();
      tail = null;
      const log = $("pre.log[data-tail]", panel);
      if (!log) return;
      tail = stream(log.dataset.tail, {
        lines: (lines) => {
          const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
          const part = document.createDocumentFragment();
          for (const l of lines) {
            const span = document.createElement("span");
            span.className = "line";
            span.dataset.stream = l.stream;
            const ts = document.createElement("span");
            ts.className = "ts";
            ts.textContent = l.time.slice(11, 19);
            span.append(ts);
            if (l.attempt > 1) {
              const at = document.createElement("span");
              at.className = "at";
              at.textContent = "#" + l.attempt;
              span.append(at);
            }
            span.append(" " + l.line + "\n");
            part.append(span);
          }
          log.append(part);
          if (atBottom) log.scrollTop = log.scrollHeight;
        },
        end: () => {
          tail.close();
          tail = null;
          refreshPanel();
        },
      });
    }
    page.addEventListener("click", (e) => {
      const link = e.target.closest("[data-task-link]");
      if (link && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
        e.preventDefault();
        showTask(link.dataset.taskLink, true);
        return;
      }
      if (e.target.closest("[data-close-panel]")) closeTask();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && openTask && !$("dialog[open]")) closeTask();
    });
    if (page.dataset.openTask) showTask(page.dataset.openTask, false);

    graph($("svg.graph"), (taskId) => showTask(taskId, true));
  }

  // Zoom and pan on the graph's viewBox; a click on a node opens its task.
  function graph(svg, open) {
    if (!svg) return;
    const full = { x: 0, y: 0, w: +svg.dataset.width, h: +svg.dataset.height };
    let box = Object.assign({}, full);
    function set() {
      svg.setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
    }
    function zoom(factor, cx, cy) {
      touched = true;
      const w = Math.min(Math.max(box.w * factor, 60), full.w * 4 + 400);
      const h = box.h * (w / box.w);
      const fx = cx === undefined ? 0.5 : cx;
      const fy = cy === undefined ? 0.5 : cy;
      box = { x: box.x + (box.w - w) * fx, y: box.y + (box.h - h) * fy, w, h };
      set();
    }
    // The drawing is never enlarged past its natural size: a small graph stays small.
    let rect = svg.getBoundingClientRect();
    if (rect.height > full.h + 24) {
      svg.style.height = full.h + 24 + "px";
      rect = svg.getBoundingClientRect();
    }
    function fit() {
      const w = Math.max(full.w, rect.width);
      const h = Math.max(full.h, rect.height);
      const scale = Math.max(w / rect.width, h / rect.height);
      const bw = rect.width * scale;
      const bh = rect.height * scale;
      box = { x: (full.w - bw) / 2, y: (full.h - bh) / 2, w: bw, h: bh };
      set();
    }
    // Until the reader zooms or pans, the first view follows the graph's size on screen
    // (it narrows when the task panel opens).
    let touched = false;
    function first() {
      fit();
      // A big graph opens at a readable size, its roots in view; "Fit" shows it whole.
      if (rect.width && full.w / rect.width > 2.5) {
        const w = rect.width * 1.2;
        box = { x: 0, y: 0, w, h: w * (rect.height / rect.width) };
        set();
      }
    }
    first();
    new ResizeObserver(() => {
      const now = svg.getBoundingClientRect();
      if (!now.width || (now.width === rect.width && now.height === rect.height)) return;
      rect = now;
      if (!touched) first();
    }).observe(svg);
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = svg.getBoundingClientRect();
      zoom(e.deltaY > 0 ? 1.15 : 1 / 1.15, (e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height);
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY, box: Object.assign({}, box), moved: false };
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!drag.moved) svg.setPointerCapture(e.pointerId);
      drag.moved = true;
      touched = true;
      const r = svg.getBoundingClientRect();
      const scale = Math.max(box.w / r.width, box.h / r.height);
      box = Object.assign({}, drag.box, { x: drag.box.x - dx * scale, y: drag.box.y - dy * scale });
      set();
    });
    svg.addEventListener("pointerup", (e) => {
      const moved = drag && drag.moved;
      drag = null;
      if (moved) return;
      const node = e.target.closest(".node");
      if (node) open(node.dataset.task);
    });
    svg.addEventListener("keydown", (e) => {
      const node = e.target.closest(".node");
      if (node && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        open(node.dataset.task);
      }
    });
    $$("[data-zoom]").forEach((b) =>
      b.addEventListener("click", () => {
        const how = b.dataset.zoom;
        if (how === "fit") fit();
        else zoom(how === "in" ? 1 / 1.25 : 1.25);
      })
    );
    document.addEventListener("keydown", (e) => {
      if (typing(e)) return;
      if (e.key === "+" || e.key === "=") zoom(1 / 1.25);
      else if (e.key === "-") zoom(1.25);
      else if (e.key === "0") fit();
    });
  }

  // The asset graph: zoomed like a run's; a node opens its asset's or pipeline's page.
  function assetsPage() {
    const svg = $("svg.graph[data-links]");
    if (!svg) return;
    const hrefs = new Map($$(".node", svg).map((n) => [n.dataset.task, n.dataset.href]));
    graph(svg, (id) => {
      if (hrefs.has(id)) window.location.href = hrefs.get(id);
    });
  }

  // The events page: rows arrive as they are decided, newest on top.
  function eventsPage() {
    const body = $("#events-body[data-stream]");
    if (!body) return;
    stream(body.dataset.stream, {
      event: (e) => {
        const template = document.createElement("template");
        template.innerHTML = e.html.trim();
        const row = template.content.firstElementChild;
        if (!row) return;
        localTimes(row);
        // A row already shown (stored before it was decided) takes the newer outcome.
        const shown = document.getElementById(row.id);
        if (shown) {
          shown.replaceWith(row);
          return;
        }
        body.prepend(row);
        const empty = $("[data-empty]");
        if (empty) empty.remove();
        while (body.children.length > 500) body.lastElementChild.remove();
      },
    });
  }

  // Keyboard: g then a letter goes to a page, / focuses the filter, j/k move in tables.
  function typing(e) {
    const t = e.target;
    return e.ctrlKey || e.metaKey || e.altKey || t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName);
  }
  function keyboard() {
    const pages = { p: "/", r: "/runs", e: "/events", s: "/sensors", a: "/assets" };
    let pending = false;
    let cursor = -1;
    document.addEventListener("keydown", (e) => {
      if (typing(e)) return;
      if (pending) {
        pending = false;
        if (pages[e.key]) {
          e.preventDefault();
          window.location.href = pages[e.key];
        }
        return;
      }
      if (e.key === "g") {
        pending = true;
        setTimeout(() => (pending = false), 1500);
      } else if (e.key === "?") {
        e.preventDefault();
        $("#keys").showModal();
      } else if (e.key === "/") {
        const filter = $("[data-filter]");
        if (filter) {
          e.preventDefault();
          filter.focus();
        }
      } else if (e.key === "j" || e.key === "k") {
        const rows = $$("table[data-rows] tbody tr");
        if (!rows.length) return;
        rows.forEach((r) => r.classList.remove("cursor"));
        cursor = Math.min(Math.max(cursor + (e.key === "j" ? 1 : -1), 0), rows.length - 1);
        const row = rows[cursor];
        row.classList.add("cursor");
        const link = $("a", row);
        if (link) link.focus();
        row.scrollIntoView({ block: "nearest" });
      }
    });
    const open = $("[data-open-keys]");
    if (open) open.addEventListener("click", () => $("#keys").showModal());
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    keyboard();
    liveLists();
    runPage();
    assetsPage();
    eventsPage();
  });
})();
