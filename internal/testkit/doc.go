// Package testkit is what the tests of several packages share: the
// configuration of a test server, a node behind a real WebSocket endpoint, a
// Pusher protocol client that reads its frames in the background, a webhook
// receiver, signed HTTP API requests, free ports and a locked buffer.
//
// Of Parley's packages it imports only config, pusher and wsconn, so that
// the tests of every other package may use it, actors' own tests too.
package testkit
