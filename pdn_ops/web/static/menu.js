// The collapsing menu on a phone. Without JavaScript the menu is simply always open.
(function () {
  "use strict";
  var button = document.getElementById("menu-toggle");
  var menu = document.getElementById("menu");
  if (!button || !menu) { return; }
  document.documentElement.classList.add("js-menu");
  button.hidden = false;
  button.addEventListener("click", function () {
    var open = menu.classList.toggle("open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
}());
