// What the push tests share: an FCM HTTP v1 stand-in on 127.0.0.1 for a
// real `parley serve` (PARLEY_FCM_ENDPOINT and the service account's
// token_uri point at it). It issues any token and records each push; the Go
// tests (push/pushtest) check the protocol itself.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

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

/**
 * The environment of a `parley serve` on `dataDir` that pushes through the stand-in `fcm` at
 * once (a 1 ms window) and one push at a time; writes the service account file into `dataDir`.
 */
export function fcmServeEnv(fcm, dataDir) {
  const credFile = path.join(dataDir, 'fcm.json');
  fs.writeFileSync(credFile, JSON.stringify(fcm.creds));
  return {
    PARLEY_DATA_DIR: dataDir, PARLEY_API_RATE_LIMIT: '0', PARLEY_FCM_CREDENTIALS: credFile, PARLEY_FCM_ENDPOINT: fcm.url,
    PARLEY_PUSH_WINDOW: '1ms', PARLEY_PUSH_CONCURRENCY: '1',
  };
}
