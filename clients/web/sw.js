// The demo's service worker: shows the push notifications Parley sends
// while the page is hidden or closed (docs/push.md), and opens the matter
// when one is clicked. A push's data is the JSON Parley's Web Push provider
// encrypts: {title, body, tag, badge, matter_id, message_id, sender_id, sender_name}.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let p = {};
  try {
    p = event.data ? event.data.json() : {};
  } catch {
    p = { title: 'New message', body: event.data ? event.data.text() : '' };
  }
  event.waitUntil(self.registration.showNotification(p.title || 'New message', {
    body: p.body || '',
    tag: p.tag, // one notification per matter: a newer push replaces it
    renotify: Boolean(p.tag),
    data: { matterId: p.matter_id, messageId: p.message_id, badge: p.badge },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const matter = event.notification.data && event.notification.data.matterId;
  event.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of wins) {
      if ('focus' in w) return w.focus();
    }
    const url = new URL(self.registration.scope);
    if (matter) url.searchParams.set('matter', String(matter));
    return self.clients.openWindow(url.href);
  })());
});
