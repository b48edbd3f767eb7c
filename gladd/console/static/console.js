// gladd console: the live part of a page polls (hx-trigger "every 2s") only while the tab is
// visible, and refreshes at once when it comes back. Done here, not in an hx-trigger filter:
// htmx evaluates those as strings, which the console's Content-Security-Policy forbids.
document.addEventListener("htmx:beforeRequest", function (event) {
  if (document.visibilityState !== "visible" && event.detail.elt.id === "live") {
    event.preventDefault();
  }
});
document.addEventListener("visibilitychange", function () {
  if (document.visibilityState === "visible") {
    document.dispatchEvent(new Event("gladdvisible"));
  }
});
