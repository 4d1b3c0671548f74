// A live page that has not been rewritten for long says so: its run may have been stopped
// (a killed run cannot rewrite it), and its reload would only show the same page again.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var age = Date.now() / 1000 - Number(live.getAttribute("data-written"));
  if (age > Number(live.getAttribute("data-stale"))) {
    live.textContent = "not updated for " + Math.round(age / 60) + " min: the run may have " +
      "stopped (dreamteam resume " + live.getAttribute("data-run") + ")";
    live.className = "live stale";
  }
})();
// Sortable tables and expand/collapse for the candidate sections; the page works without it.
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    var key = cell.getAttribute("data-sort");
    var text = key !== null ? key : cell.textContent.trim();
    var number = parseFloat(text);
    return isNaN(number) || !/^[-+0-9.eE]/.test(text) ? text.toLowerCase() : number;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead;
    if (!head) { return; }
    Array.prototype.forEach.call(head.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () {
        var ascending = !th.classList.contains("asc");
        Array.prototype.forEach.call(head.rows[0].cells, function (other) {
          other.classList.remove("asc", "desc");
        });
        th.classList.add(ascending ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  function setAll(open) {
    document.querySelectorAll("details.cand").forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) { expand.addEventListener("click", function () { setAll(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { setAll(false); }); }
  // a link to a candidate opens its section
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[href^='#c-']") : null;
    if (!link) { return; }
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (target && target.tagName === "DETAILS") { target.open = true; }
  });
})();
