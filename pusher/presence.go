package pusher

import (
	"bytes"
	"encoding/json"
)

// Presence limits (Pusher's).
const (
	MaxUserID   = 128  // characters of a presence user_id
	MaxUserInfo = 1024 // bytes of a presence user_info
)

// ParseChannelData checks a presence subscription's channel_data: a JSON
// object with user_id (a string or a number, at most MaxUserID characters)
// and an optional user_info (at most MaxUserInfo bytes); problem says what
// is wrong.
func ParseChannelData(s string) (userID string, info json.RawMessage, problem string) {
	if s == "" {
		return "", nil, "presence channels need channel_data with a user_id"
	}
	var cd struct {
		UserID   json.RawMessage `json:"user_id"`
		UserInfo json.RawMessage `json:"user_info"`
	}
	if err := json.Unmarshal([]byte(s), &cd); err != nil {
		return "", nil, "channel_data is not a JSON object: " + err.Error()
	}
	uid := bytes.TrimSpace(cd.UserID)
	switch {
	case len(uid) == 0 || string(uid) == "null":
		return "", nil, "channel_data has no user_id"
	case uid[0] == '"':
		_ = json.Unmarshal(uid, &userID)
	case (uid[0] >= '0' && uid[0] <= '9') || uid[0] == '-':
		userID = string(uid) // numeric ids, as Laravel sends them
	default:
		return "", nil, "user_id must be a string or a number"
	}
	if userID == "" {
		return "", nil, "user_id is empty"
	}
	if len(userID) > MaxUserID {
		return "", nil, "user_id is longer than 128 characters"
	}
	if len(cd.UserInfo) > MaxUserInfo {
		return "", nil, "user_info is larger than 1 KB"
	}
	if len(cd.UserInfo) > 0 && string(cd.UserInfo) != "null" {
		info = cd.UserInfo
	}
	return userID, info, ""
}
