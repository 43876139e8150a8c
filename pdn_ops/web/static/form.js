// Checks a photo's size in the browser before the upload, so nobody waits for 10 MB to be refused.
// The server checks again; without JavaScript only that check runs.
(function () {
  "use strict";
  var input = document.getElementById("photo");
  var note = document.getElementById("photo-check");
  if (!input || !note) { return; }
  var max = parseInt(input.getAttribute("data-max-bytes"), 10);
  input.addEventListener("change", function () {
    var big = Array.prototype.filter.call(input.files || [], function (f) { return f.size > max; });
    if (big.length) {
      note.textContent = input.getAttribute("data-too-big") + " " + big.map(function (f) { return f.name; }).join(", ");
      input.setAttribute("aria-invalid", "true");
      input.setCustomValidity(note.textContent);
    } else {
      note.textContent = "";
      input.removeAttribute("aria-invalid");
      input.setCustomValidity("");
    }
  });
}());
