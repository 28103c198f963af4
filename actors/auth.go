package actors

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Sign is hex(HMAC-SHA256(secret, message)), the signature every part of the
// Pusher protocol uses.
func Sign(secret, message string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(message))
	return hex.EncodeToString(m.Sum(nil))
}

// ChannelAuth is the "auth" value a client must present to join a private,
// encrypted or presence channel; channelData is empty except for presence.
func ChannelAuth(key, secret, socketID, channel, channelData string) string {
	msg := socketID + ":" + channel
	if channelData != "" {
		msg += ":" + channelData
	}
	return key + ":" + Sign(secret, msg)
}

// UserAuth is the "auth" value of pusher:signin.
func UserAuth(key, secret, socketID, userData string) string {
	return key + ":" + Sign(secret, socketID+"::user::"+userData)
}

// ValidAuth compares a presented "key:signature" with the expected one in
// constant time.
func ValidAuth(presented, expected string) bool {
	return hmac.Equal([]byte(presented), []byte(expected))
}

// Channel kinds, decided by the name's prefix.
type channelKind uint8

const (
	kindPublic channelKind = iota
	kindPrivate
	kindEncrypted
	kindPresence
	kindServerToUser
)

// ServerToUserPrefix names the internal channel of a signed-in user.
const ServerToUserPrefix = "#server-to-user-"

// MaxChannelName is the longest channel name accepted.
const MaxChannelName = 200

func classify(name string) (kind channelKind, cache bool) {
	switch {
	case strings.HasPrefix(name, ServerToUserPrefix):
		return kindServerToUser, false
	case strings.HasPrefix(name, "private-encrypted-"):
		return kindEncrypted, strings.HasPrefix(name, "private-encrypted-cache-")
	case strings.HasPrefix(name, "private-"):
		return kindPrivate, strings.HasPrefix(name, "private-cache-")
	case strings.HasPrefix(name, "presence-"):
		return kindPresence, strings.HasPrefix(name, "presence-cache-")
	default:
		return kindPublic, strings.HasPrefix(name, "cache-")
	}
}

// IsPresence reports whether name is a presence channel.
func IsPresence(name string) bool { k, _ := classify(name); return k == kindPresence }

// IsEncrypted reports whether name is a private-encrypted channel.
func IsEncrypted(name string) bool { k, _ := classify(name); return k == kindEncrypted }

// ValidateChannel returns "" for a valid channel name, else what is wrong.
// #server-to-user-{id} is accepted only when serverToUser is true.
func ValidateChannel(name string, serverToUser bool) string {
	if name == "" {
		return "channel name is empty"
	}
	if len(name) > MaxChannelName {
		return "channel name is longer than 200 characters"
	}
	if strings.HasPrefix(name, "#") {
		if serverToUser && strings.HasPrefix(name, ServerToUserPrefix) && len(name) > len(ServerToUserPrefix) {
			return ""
		}
		return "channel names starting with # are reserved"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_=@,.;", c) >= 0:
		default:
			return "channel name may only contain letters, digits and - _ = @ , . ;"
		}
	}
	return ""
}
