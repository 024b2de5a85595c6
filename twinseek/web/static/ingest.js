// The ingest page: upload with a progress bar, server-side folders, and job progress polled from the server.
(function () {
  "use strict";
  const base = document.body.dataset.base || "";
  const jobs = document.getElementById("jobs");
  const stats = document.getElementById("stats");
  const uploadForm = document.getElementById("upload-form");
  const uploadBar = document.getElementById("upload-bar");
  const uploadStatus = document.getElementById("upload-status");
  const folderForm = document.getElementById("folder-form");
  const folderStatus = document.getElementById("folder-status");
  let polling = null;

  async function refresh() {
    const [j, s] = await Promise.all([fetch(jobs.dataset.url), fetch(stats.dataset.url)]);
    if (j.ok) jobs.innerHTML = await j.text();  // fragments rendered (and escaped) by the server
    if (s.ok) stats.innerHTML = await s.text();
    const active = jobs.querySelector(".jobs") && jobs.querySelector(".jobs").dataset.active === "true";
    if (!active && polling) {
      clearInterval(polling);
      polling = null;
    }
    return active;
  }

  function poll() {
    if (!polling) polling = setInterval(refresh, 1000);
    refresh();
  }

  function detail(text, fallback) {
    try {
      const body = JSON.parse(text);
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) {
      return fallback;
    }
  }

  uploadForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const files = document.getElementById("files").files;
    if (!files.length) return;
    const body = new FormData();
    for (const f of files) body.append("files", f, f.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", base + "/api/ingest");
    uploadBar.hidden = false;
    uploadBar.firstElementChild.style.width = "0%";
    uploadStatus.classList.remove("error");
    uploadStatus.textContent = "uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) uploadBar.firstElementChild.style.width = (100 * e.loaded / e.total).toFixed(1) + "%";
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 202) {
        const job = JSON.parse(xhr.responseText);
        uploadStatus.textContent = "uploaded " + job.files.length + " file(s); ingesting in the background";
        uploadForm.reset();
        poll();
      } else {
        uploadStatus.classList.add("error");
        uploadStatus.textContent = "refused (" + xhr.status + "): " + detail(xhr.responseText, xhr.statusText);
      }
      uploadBar.hidden = true;
    });
    xhr.addEventListener("error", function () {
      uploadStatus.classList.add("error");
      uploadStatus.textContent = "the upload failed (connection lost or refused by the server)";
      uploadBar.hidden = true;
    });
    xhr.send(body);
  });

  folderForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    folderStatus.classList.remove("error");
    const response = await fetch(base + "/api/ingest/folder", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({path: document.getElementById("folder").value}),
    });
    const text = await response.text();
    if (response.status === 202) {
      folderStatus.textContent = "queued " + JSON.parse(text).files.length + " file(s)";
      poll();
    } else {
      folderStatus.classList.add("error");
      folderStatus.textContent = "refused (" + response.status + "): " + detail(text, response.statusText);
    }
  });

  if (jobs.querySelector(".jobs") && jobs.querySelector(".jobs").dataset.active === "true") poll();
})();
