// Progressive enhancements only: every page works without JavaScript.
"use strict";
document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
  select.addEventListener("change", function () { select.form.submit(); });
});
if (document.body.classList.contains("print-view")) {
  window.addEventListener("load", function () { window.print(); });
}
