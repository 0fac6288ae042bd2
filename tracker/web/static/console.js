// Baton console: progressive enhancement only. Every form works without this file.
(function () {
  "use strict";

  // Forms with data-confirm (close a case, release a party, revoke a key, rotate a status link)
  // ask before they submit.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // The overdue queue reloads itself every data-autorefresh seconds (0: the user turned it off with
  // the page's "Stop reloading" link). Without scripts a <noscript> meta refresh does the same.
  // A reload never throws away what the user is typing: while a field has focus or was changed, it waits.
  var marker = document.querySelector("[data-autorefresh]");
  var seconds = marker ? parseInt(marker.getAttribute("data-autorefresh"), 10) : 0;
  if (seconds > 0) {
    var edited = false;
    document.addEventListener("input", function () { edited = true; });
    var busy = function () {
      var active = document.activeElement;
      return edited || (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
    };
    var tick = function () {
      if (busy()) {
        window.setTimeout(tick, seconds * 1000);
      } else {
        window.location.reload();
      }
    };
    window.setTimeout(tick, seconds * 1000);
  }

  // Drag and drop onto an upload form puts the file in its file input; the plain input works without this.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-drop]"), function (form) {
    var input = form.querySelector("input[type=file]");
    if (!input) { return; }
    ["dragenter", "dragover"].forEach(function (name) {
      form.addEventListener(name, function (event) { event.preventDefault(); form.classList.add("dropping"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      form.addEventListener(name, function () { form.classList.remove("dropping"); });
    });
    form.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) { input.files = event.dataTransfer.files; }
    });
  });
})();
