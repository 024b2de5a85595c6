// The video page: the masks of the current frame laid over the playing video, and the timeline that seeks.
// Opened on a moment (?start=&end=, from a search hit), the player starts at it and the masks shown are those of
// the moment's sampled frames (none outside it).
(function () {
  "use strict";
  const base = document.body.dataset.base || "";
  const data = JSON.parse(document.getElementById("player-data").textContent);
  const video = document.getElementById("video");
  const layer = document.getElementById("mask-layer");
  const toggle = document.getElementById("show-masks");
  const label = document.getElementById("frame-label");
  let selected = data.tracks.slice();
  let cache = new Map();
  let shown = null;
  const moment = data.moment || null;
  // the frames whose masks are laid over the video: the moment's, when the page shows one
  const frames = moment ? data.frames.filter(function (f) { return moment.frames.includes(f); }) : data.frames;
  const startFrame = moment ? Math.round(moment.start * data.fps) : null;
  const endFrame = moment ? Math.round(moment.end * data.fps) : null;

  function url(frame) {
    return base + "/api/videos/" + encodeURIComponent(data.video_id) + "/frames/" + frame +
      "/masks.png?tracks=" + selected.join(",");
  }

  function preload() {
    cache = new Map();
    if (!selected.length) return;
    for (const f of frames) {
      const img = new Image();
      img.src = url(f);
      cache.set(f, img);
    }
  }

  // Masks exist on the sampled frames only: show the nearest one.
  function nearest(frame) {
    if (moment && (frame < startFrame || frame >= endFrame)) return null;  // outside the moment: no masks
    let best = null;
    for (const f of frames) {
      if (best === null || Math.abs(f - frame) < Math.abs(best - frame)) best = f;
    }
    return best;
  }

  function show(frame) {
    const f = nearest(frame);
    if (f === null || !selected.length || !toggle.checked) {
      layer.hidden = true;
      shown = null;
    } else {
      if (f !== shown) {
        layer.src = url(f);
        layer.dataset.frame = String(f);
        shown = f;
      }
      layer.hidden = false;
    }
    label.textContent = "frame " + frame + (f === null ? "" : " · masks of sampled frame " + f);
    for (const b of document.querySelectorAll(".frame-strip button")) {
      b.classList.toggle("active", Number(b.dataset.frame) === f);
    }
  }

  function current() {
    return video ? Math.round(video.currentTime * data.fps) : (data.frames[0] || 0);
  }

  function seek(frame) {
    if (video) {
      video.pause();
      video.currentTime = (frame + 0.5) / data.fps;
    }
    show(frame);
  }

  if (video) {
    // a file the browser cannot decode: the animated overlay of the key frames instead
    video.addEventListener("error", function () {
      const still = document.createElement("img");
      still.className = "still";
      still.alt = "mask overlay of " + data.video_id;
      still.src = base + "/api/videos/" + encodeURIComponent(data.video_id) + "/overlay.gif";
      video.replaceWith(still);
      toggle.checked = false;
      toggle.disabled = true;
      layer.hidden = true;
    });
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      const onFrame = function (now, meta) {
        show(Math.round(meta.mediaTime * data.fps));
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    video.addEventListener("timeupdate", function () { show(current()); });
    video.addEventListener("seeked", function () { show(current()); });
  }
  toggle.addEventListener("change", function () { show(current()); });
  for (const box of document.querySelectorAll(".track-toggle")) {
    box.addEventListener("change", function () {
      selected = Array.from(document.querySelectorAll(".track-toggle:checked")).map(function (b) { return b.value; });
      shown = null;
      preload();
      show(current());
    });
  }
  for (const b of document.querySelectorAll(".frame-strip button")) {
    b.addEventListener("click", function () { seek(Number(b.dataset.frame)); });
  }
  for (const seg of document.querySelectorAll(".timeline .seg")) {
    seg.addEventListener("click", function () { seek(Number(seg.dataset.start)); });
  }
  preload();
  if (moment && video) {
    // the media fragment (#t=start,end) already starts there; set it too for browsers that ignore fragments
    const toStart = function () {
      if (Math.abs(video.currentTime - moment.start) > 0.5 / data.fps) video.currentTime = moment.start;
    };
    if (video.readyState >= 1) toStart(); else video.addEventListener("loadedmetadata", toStart, { once: true });
  }
  show(moment ? startFrame : (data.frames.length ? data.frames[0] : 0));
  document.body.dataset.playerReady = "true";
})();
