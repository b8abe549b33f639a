// The console's own behaviour (no inline script: the Content-Security-Policy allows only files from /console/static).
// Sections switched by a select, the event-type picker (search, select-all per group, the count chosen).
"use strict";

function setUpSwitchers(root) {
  var selects = Array.prototype.slice.call(root.querySelectorAll("select.switcher"));
  var show = function () {
    selects.forEach(function (select) {
      root.querySelectorAll('[data-section="' + select.dataset.sections + '"]').forEach(function (section) {
        section.hidden = section.dataset.value !== select.value;
      });
    });
    // the inputs of hidden sections are not sent
    root.querySelectorAll("[data-section] input, [data-section] select, [data-section] textarea").forEach(function (input) {
      input.disabled = input.closest("[hidden]") !== null;
    });
  };
  selects.forEach(function (select) { select.addEventListener("change", show); });
  show();
}

function setUpTypePicker(root) {
  var picker = root.querySelector("#event-types");
  if (!picker) return;
  var boxes = Array.prototype.slice.call(picker.querySelectorAll('input[name="event_types"]'));
  var count = picker.querySelector("#chosen-count");
  var refresh = function () {
    count.textContent = boxes.filter(function (b) { return b.checked; }).length;
    picker.querySelectorAll("fieldset.group").forEach(function (group) {
      var mine = group.querySelectorAll('input[name="event_types"]');
      var on = group.querySelectorAll('input[name="event_types"]:checked').length;
      var all = group.querySelector("input.select-group");
      all.checked = on === mine.length;
      all.indeterminate = on > 0 && on < mine.length;
      group.querySelector(".group-count").textContent = on + "/" + mine.length;
    });
  };
  boxes.forEach(function (b) { b.addEventListener("change", refresh); });
  picker.querySelectorAll("input.select-group").forEach(function (all) {
    all.addEventListener("change", function () {
      all.closest("fieldset").querySelectorAll('input[name="event_types"]').forEach(function (b) {
        if (!b.closest("label").hidden) b.checked = all.checked;
      });
      refresh();
    });
  });
  var search = picker.querySelector("#type-search");
  search.addEventListener("input", function () {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    picker.querySelectorAll("label.type").forEach(function (label) {
      var text = label.dataset.search;
      label.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
    });
    picker.querySelectorAll("fieldset.group").forEach(function (group) {
      group.hidden = group.querySelectorAll("label.type:not([hidden])").length === 0;
    });
  });
  refresh();
}

document.addEventListener("DOMContentLoaded", function () {
  setUpSwitchers(document);
  setUpTypePicker(document);
});
