package chat

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/pusher"
)

// Channel prefixes broadcasting auth knows; anything else is refused.
const (
	prefixUser           = "private-user."
	prefixPrivateMatter  = "private-matter."
	prefixPresenceMatter = "presence-matter."
)

// channelID parses the positive id after prefix.
func channelID(name, prefix string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || rest[0] == '+' || rest[0] == '0' {
		return 0, false
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	return id, err == nil && id > 0
}

// presenceData is a presence member as Echo's join() sees it.
type presenceData struct {
	UserID   string       `json:"user_id"` // a string, as the Pusher protocol wants
	UserInfo presenceInfo `json:"user_info"`
}

type presenceInfo struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// broadcastingAuth is POST /api/broadcasting/auth and /broadcasting/auth:
// socket_id and channel_name, form-encoded (pusher-js) or JSON. A user may
// join private-user.{their id}, and private-matter.{id} / presence-matter.{id}
// of matters they belong to; every other channel is 403.
func (s *Service) broadcastingAuth(c *gin.Context) {
	var socketID, channel string
	if !validInput(c, readInput, func(in input, v *validation) {
		socketID = in.requiredString(v, "socket_id")
		channel = in.requiredString(v, "channel_name")
		if socketID != "" && !socketIDPattern.MatchString(socketID) {
			v.add("socket_id", "The socket id field format is invalid.")
		}
	}) {
		return
	}
	me := userOf(c)
	var channelData string
	switch {
	case strings.HasPrefix(channel, prefixUser):
		if id, ok := channelID(channel, prefixUser); !ok || id != me.ID {
			abortMessage(c, http.StatusForbidden, msgForbidden)
			return
		}
	case strings.HasPrefix(channel, prefixPrivateMatter), strings.HasPrefix(channel, prefixPresenceMatter):
		prefix := prefixPrivateMatter
		if pusher.IsPresence(channel) {
			prefix = prefixPresenceMatter
		}
		matterID, ok := channelID(channel, prefix)
		if !ok {
			abortMessage(c, http.StatusForbidden, msgForbidden)
			return
		}
		if !s.requireMember(c.Request.Context(), c, matterID, me.ID) {
			return
		}
		if prefix == prefixPresenceMatter {
			b, _ := json.Marshal(presenceData{UserID: strconv.FormatInt(me.ID, 10), UserInfo: presenceInfo{ID: me.ID, Name: me.Name}})
			channelData = string(b)
		}
	default:
		abortMessage(c, http.StatusForbidden, msgForbidden)
		return
	}
	res := gin.H{"auth": pusher.ChannelAuth(s.app.Key, s.app.Secret, socketID, channel, channelData)}
	if channelData != "" {
		res["channel_data"] = channelData
	}
	c.JSON(http.StatusOK, res)
}
