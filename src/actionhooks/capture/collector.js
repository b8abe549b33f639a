/* actionhooks site pixel and popup collector (docs/capture.md#site-pixel-and-popups). No build step.
 *
 *   <script src="https://hooks.example.com/t/collector.js" data-token="<site token>" async></script>
 *
 * On load it sends `pixel_open` (the page's url, referrer and utm_* parameters). Popups report their
 * interactions with  actionhooks.popup("popup_open", {popup_id: 3, popup_name: "Welcome"})  — the type is one of
 * popup_open, popup_click, popup_post, popup_close, popup_error, popup_bounce, popup_custom. Elements carrying
 * data-ah-popup="<popup_id>" report popup_click when clicked (data-ah-element names what was clicked).
 * The script loads async: a page that reports before it has loaded defines the queueing stub first,
 *   window.actionhooks = window.actionhooks || {q: [], popup: function () { this.q.push(arguments); }};
 * and the queued calls are sent once the script runs.
 * A visitor id is kept in localStorage so the service can rate-limit per visitor. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.token) { return; }
  var endpoint = new URL("collect/" + script.dataset.token, script.src).href;
  var visitor;
  try {
    visitor = window.localStorage.getItem("actionhooks_visitor");
    if (!visitor) {
      visitor = Math.random().toString(36).slice(2) + Date.now().toString(36);
      window.localStorage.setItem("actionhooks_visitor", visitor);
    }
  } catch (e) {
    visitor = Math.random().toString(36).slice(2);
  }

  function send(body) {
    body.visitor_id = visitor;
    var text = JSON.stringify(body);
    // text/plain keeps the request "simple": no CORS preflight
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([text], {type: "text/plain"}))) {
      return;
    }
    fetch(endpoint, {method: "POST", body: text, keepalive: true, mode: "cors",
                     headers: {"Content-Type": "text/plain"}}).catch(function () {});
  }

  function pageParams() {
    var out = {};
    new URL(window.location.href).searchParams.forEach(function (value, key) {
      if (key.indexOf("utm_") === 0) { out[key] = value; }
    });
    return out;
  }

  function popup(type, data) {
    var body = {event_type: type, url: window.location.href};
    for (var k in data) { if (Object.prototype.hasOwnProperty.call(data, k)) { body[k] = data[k]; } }
    send(body);
  }

  var queued = (window.actionhooks && window.actionhooks.q) || [];
  window.actionhooks = {popup: popup};
  send({event_type: "pixel_open", url: window.location.href, referrer: document.referrer || undefined,
        params: pageParams()});
  for (var i = 0; i < queued.length; i++) { popup(queued[i][0], queued[i][1]); }
  document.addEventListener("click", function (ev) {
    var el = ev.target && ev.target.closest ? ev.target.closest("[data-ah-popup]") : null;
    if (el) {
      popup("popup_click", {popup_id: parseInt(el.getAttribute("data-ah-popup"), 10),
                            element: el.getAttribute("data-ah-element") || el.tagName.toLowerCase()});
    }
  });
})();
