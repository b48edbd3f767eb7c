// gladd console: refresh the live part at once when the tab comes back; while it is hidden
// the pages' polling (hx-trigger "every 2s [document.visibilityState === 'visible']") pauses.
document.addEventListener("visibilitychange", function () {
  if (document.visibilityState === "visible") {
    document.dispatchEvent(new Event("gladdvisible"));
  }
});
