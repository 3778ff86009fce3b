// The sandbox page's live updates: asks `?since=VERSION` about once a second and, when the
// content changed, swaps it in, keeping open <details> open and closed ones closed.
(() => {
  'use strict';
  const body = document.body;
  const live = body.dataset.live;
  if (!live || !window.fetch) {
    return;
  }
  const QUICK = 1000;
  const SLOW = 5000;

  // Each <details> keyed by the nearest element with an id and its place inside it.
  const detailsByKey = (root) => {
    const seen = new Map();
    const keyed = new Map();
    for (const details of root.querySelectorAll('details')) {
      const owner = details.parentElement.closest('[id]');
      const id = owner ? owner.id : '';
      const n = (seen.get(id) || 0) + 1;
      seen.set(id, n);
      keyed.set(`${id}/${n}`, details);
    }
    return keyed;
  };

  const apply = (data) => {
    const content = document.getElementById('content');
    const wasOpen = new Map();
    for (const [key, details] of detailsByKey(content)) {
      wasOpen.set(key, details.open);
    }
    content.innerHTML = data.html;
    for (const [key, details] of detailsByKey(content)) {
      if (wasOpen.has(key)) {
        details.open = wasOpen.get(key);
      }
    }
    body.dataset.version = String(data.version);
    if (data.title) {
      document.title = data.title;
    }
  };

  const poll = async () => {
    let delay = QUICK;
    try {
      const url = `${live}?since=${encodeURIComponent(body.dataset.version)}`;
      const answer = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
      if (answer.status === 200) {
        apply(await answer.json());
      } else if (answer.status !== 204) {
        delay = SLOW;
      }
    } catch (_) {
      delay = SLOW;
    }
    setTimeout(poll, delay);
  };
  setTimeout(poll, QUICK);
})();
