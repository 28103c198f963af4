package chat

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/persistence"
)

// settingsJSON is a member's settings of a matter: GET and PUT
// /api/matters/{id}/settings.
type settingsJSON struct {
	ClientMatterID int64 `json:"client_matter_id"`
	Muted          bool  `json:"muted"`
}

// matterSettings is GET /api/matters/{id}/settings → {"data": {...}}; 404
// unknown matter, 403 not a member.
func (s *Service) matterSettings(c *gin.Context) {
	id, ok := routeID(c, "Matter")
	if !ok {
		return
	}
	muted, err := s.st.Muted(c.Request.Context(), id, userOf(c).ID)
	if s.settingsFailed(c, err) {
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": settingsJSON{ClientMatterID: id, Muted: muted}})
}

// updateMatterSettings is PUT /api/matters/{id}/settings {"muted": bool}:
// a muted matter sends its member no push notifications (its messages still
// count as unread and arrive on sockets).
func (s *Service) updateMatterSettings(c *gin.Context) {
	id, ok := routeID(c, "Matter")
	if !ok {
		return
	}
	in, ok := readInput(c)
	if !ok {
		return
	}
	var v validation
	muted, isBool := in["muted"].(bool)
	if !isBool {
		v.add("muted", "The muted field must be true or false.")
		v.render(c)
		return
	}
	me := userOf(c)
	ctx, cancel := writeContext(c)
	defer cancel()
	if s.settingsFailed(c, s.st.SetMuted(ctx, id, me.ID, muted)) {
		return
	}
	s.pushTargetsChanged(me.ID)
	c.JSON(http.StatusOK, gin.H{"data": settingsJSON{ClientMatterID: id, Muted: muted}})
}

// settingsFailed answers a settings store error; false when there was none.
func (s *Service) settingsFailed(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, persistence.ErrNotFound):
		abortMessage(c, http.StatusNotFound, "Matter not found.")
	case errors.Is(err, persistence.ErrForbidden):
		abortMessage(c, http.StatusForbidden, msgForbidden)
	default:
		s.unavailable(c, err)
	}
	return true
}
