// What the push tests share: an FCM HTTP v1 stand-in on 127.0.0.1 for a
// real `parley serve` (PARLEY_FCM_ENDPOINT and the service account's
// token_uri point at it). It issues any token and records each push; the Go
// tests (push/pushtest) check the protocol itself.
import crypto from 'node:crypto';
import http from 'node:http';

/** An FCM HTTP v1 stand-in on 127.0.0.1: a token endpoint and messages:send, recording pushes. */
export async function fcmStandIn() {
  const pushes = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.url === '/token') {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ access_token: 'ya29.stand-in', token_type: 'Bearer', expires_in: 3600 }));
        return;
      }
      const m = JSON.parse(body).message;
      pushes.push({ token: m.token, messageId: Number(m.data.message_id), badge: m.android.notification.notification_count, body: m.notification.body });
      res.setHeader('Content-Type', 'application/json');
      res.end('{"name":"projects/p/messages/1"}');
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${srv.address().port}`;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const creds = {
    type: 'service_account', project_id: 'p', private_key_id: 'k1', client_id: '1',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), client_email: 'push@p.iam.gserviceaccount.com', token_uri: `${url}/token`,
  };
  return { url, pushes, creds, close: () => new Promise((r) => srv.close(r)) };
}

