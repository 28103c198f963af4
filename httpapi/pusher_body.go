package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/parley-chat/parley/pusher"
	"github.com/parley-chat/parley/wsconn"
)

// Pusher HTTP API limits.
const (
	MaxTriggerChannels = 100
	MaxBatchEvents     = 10
	MaxEventNameLength = 200
)

// apiError is an HTTP status with a message for the caller.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Msg) }

func badRequest(format string, a ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, a...)}
}

// triggerEvent is one event of POST /events or one entry of /batch_events.
type triggerEvent struct {
	Name     string
	Channels []string
	Data     string
	SocketID string
	Info     []string
}

// rawEvent is the wire form; data may be a string (what the SDKs send) or any
// other JSON value, which is passed on as its JSON text.
type rawEvent struct {
	Name     *string         `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channel  *string         `json:"channel"`
	Channels []string        `json:"channels"`
	SocketID *string         `json:"socket_id"`
	Info     *string         `json:"info"`
}

// parseTrigger parses and validates the body of POST /apps/{id}/events.
func parseTrigger(body []byte, maxData int) (triggerEvent, *apiError) {
	var raw rawEvent
	if err := decodeJSON(body, &raw); err != nil {
		return triggerEvent{}, err
	}
	return raw.validate(maxData, true)
}

// parseBatch parses and validates the body of POST /apps/{id}/batch_events.
func parseBatch(body []byte, maxData int) ([]triggerEvent, *apiError) {
	var raw struct {
		Batch []rawEvent `json:"batch"`
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, err
	}
	if raw.Batch == nil {
		return nil, badRequest(`body must be {"batch": [events]}`)
	}
	if len(raw.Batch) > MaxBatchEvents {
		return nil, badRequest("batch has %d events; the limit is %d", len(raw.Batch), MaxBatchEvents)
	}
	out := make([]triggerEvent, len(raw.Batch))
	for i, r := range raw.Batch {
		ev, err := r.validate(maxData, false)
		if err != nil {
			err.Msg = fmt.Sprintf("batch[%d]: %s", i, err.Msg)
			return nil, err
		}
		out[i] = ev
	}
	return out, nil
}

func decodeJSON(body []byte, v any) *apiError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return badRequest("request body is empty; send JSON")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest("field %q has the wrong type (%s)", te.Field, te.Value)
		}
		return badRequest("request body is not valid JSON: %v", err)
	}
	return nil
}

func (r rawEvent) validate(maxData int, multi bool) (triggerEvent, *apiError) {
	var ev triggerEvent
	if r.Name == nil || *r.Name == "" {
		return ev, badRequest(`"name" is required`)
	}
	ev.Name = *r.Name
	if len(ev.Name) > MaxEventNameLength {
		return ev, badRequest("event name is longer than %d characters", MaxEventNameLength)
	}
	if r.Data == nil {
		return ev, badRequest(`"data" is required`)
	}
	ev.Data = pusher.DataString(r.Data)
	switch {
	case r.Channel != nil && r.Channels != nil:
		return ev, badRequest(`give either "channel" or "channels", not both`)
	case r.Channel != nil:
		ev.Channels = []string{*r.Channel}
	case r.Channels != nil:
		if !multi && len(r.Channels) != 1 {
			return ev, badRequest(`a batch event names exactly one "channel"`)
		}
		ev.Channels = r.Channels
	default:
		return ev, badRequest(`"channel" or "channels" is required`)
	}
	if len(ev.Channels) == 0 {
		return ev, badRequest(`"channels" is empty`)
	}
	if len(ev.Channels) > MaxTriggerChannels {
		return ev, badRequest("event names %d channels; the limit is %d", len(ev.Channels), MaxTriggerChannels)
	}
	for _, ch := range ev.Channels {
		if p := pusher.ValidateChannel(ch, true); p != "" {
			return ev, badRequest("channel %q: %s", wsconn.Truncate(ch, 64), p)
		}
		if pusher.IsEncrypted(ch) && len(ev.Channels) > 1 {
			return ev, badRequest("an event for a private-encrypted channel may name only that one channel")
		}
	}
	if len(ev.Data) > maxData {
		return ev, &apiError{Status: http.StatusRequestEntityTooLarge,
			Msg: fmt.Sprintf("event data is %d bytes; the limit is %d", len(ev.Data), maxData)}
	}
	if r.SocketID != nil && *r.SocketID != "" {
		if !validSocketID(*r.SocketID) {
			return ev, badRequest(`socket_id %q is not a socket id ("123.456")`, wsconn.Truncate(*r.SocketID, 40))
		}
		ev.SocketID = *r.SocketID
	}
	if r.Info != nil && *r.Info != "" {
		ev.Info = strings.Split(*r.Info, ",")
		for _, attr := range ev.Info {
			if attr != "user_count" && attr != "subscription_count" {
				return ev, badRequest("info attribute %q is not supported (user_count, subscription_count)", wsconn.Truncate(attr, 40))
			}
		}
	}
	return ev, nil
}

func validSocketID(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != dot && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}
