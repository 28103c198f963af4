package pusher

import "strings"

// Kind is a channel's kind, decided by its name's prefix.
type Kind uint8

// The kinds of channel.
const (
	KindPublic       Kind = iota
	KindPrivate           // private-: authorized subscriptions
	KindEncrypted         // private-encrypted-: authorized; the clients encrypt the data
	KindPresence          // presence-: authorized, with members
	KindServerToUser      // #server-to-user-{id}: a signed-in user's own channel
)

// ServerToUserPrefix names the internal channel of a signed-in user.
const ServerToUserPrefix = "#server-to-user-"

// MaxChannelName is the longest channel name accepted.
const MaxChannelName = 200

// Classify returns a channel's kind and whether it is a cache channel (its
// last event is replayed on subscribe).
func Classify(name string) (kind Kind, cache bool) {
	switch {
	case strings.HasPrefix(name, ServerToUserPrefix):
		return KindServerToUser, false
	case strings.HasPrefix(name, "private-encrypted-"):
		return KindEncrypted, strings.HasPrefix(name, "private-encrypted-cache-")
	case strings.HasPrefix(name, "private-"):
		return KindPrivate, strings.HasPrefix(name, "private-cache-")
	case strings.HasPrefix(name, "presence-"):
		return KindPresence, strings.HasPrefix(name, "presence-cache-")
	default:
		return KindPublic, strings.HasPrefix(name, "cache-")
	}
}

// IsPresence reports whether name is a presence channel.
func IsPresence(name string) bool { k, _ := Classify(name); return k == KindPresence }

// IsEncrypted reports whether name is a private-encrypted channel.
func IsEncrypted(name string) bool { k, _ := Classify(name); return k == KindEncrypted }

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
