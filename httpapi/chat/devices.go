package chat

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/persistence"
)

// Devices: POST /api/devices registers one of the caller's push targets
// (idempotent per token; a token another user registered moves to the
// caller), GET /api/devices lists them, DELETE /api/devices/{id} removes
// one. The admin API and `parley devices` list and remove a user's.

// Field limits of a device.
const (
	maxPushToken = 4096 // characters of an FCM or APNs token, or a Web Push endpoint
)

var apnsToken = regexp.MustCompile(`^[0-9a-fA-F]{32,200}$`)

// DeviceJSON is a device as the API shows it: token for FCM and APNs,
// endpoint for Web Push (its keys are never shown again).
type DeviceJSON struct {
	ID        int64   `json:"id"`
	UserID    int64   `json:"user_id"`
	Platform  string  `json:"platform"`
	Token     *string `json:"token,omitempty"`
	Endpoint  *string `json:"endpoint,omitempty"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

// Device renders d.
func Device(d persistence.Device) DeviceJSON {
	out := DeviceJSON{ID: d.ID, UserID: d.UserID, Platform: d.Platform, CreatedAt: timeJSON(d.CreatedAt), UpdatedAt: timeJSON(d.UpdatedAt)}
	tok := d.Token
	if d.Platform == persistence.PlatformWebPush {
		out.Endpoint = &tok
	} else {
		out.Token = &tok
	}
	return out
}

// DevicesJSON renders a list.
func DevicesJSON(ds []persistence.Device) []DeviceJSON {
	out := make([]DeviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, Device(d))
	}
	return out
}

// deviceInput validates POST /api/devices.
func deviceInput(in input, v *validation) persistence.NewDevice {
	platform, _ := in["platform"].(string)
	switch platform {
	case persistence.PlatformFCM, persistence.PlatformAPNs:
		tok := pushToken(in, v)
		if platform == persistence.PlatformAPNs && tok != "" && !apnsToken.MatchString(tok) {
			v.add("token", "The token field must be an APNs device token (hexadecimal).")
		}
		return persistence.NewDevice{Platform: platform, Token: tok}
	case persistence.PlatformWebPush:
		return webPushSubscription(in, v)
	}
	v.add("platform", "The platform field must be one of fcm, apns, webpush.")
	return persistence.NewDevice{}
}

func pushToken(in input, v *validation) string {
	tok := in.requiredString(v, "token")
	if utf8.RuneCountInString(tok) > maxPushToken {
		v.add("token", fmt.Sprintf("The token field must not be greater than %d characters.", maxPushToken))
	}
	if strings.ContainsAny(tok, " \t\r\n/") {
		v.add("token", "The token field must not contain spaces or slashes.")
	}
	return tok
}

// webPushSubscription validates {"subscription": {"endpoint", "keys":
// {"p256dh", "auth"}}}, what PushSubscription.toJSON() gives: an https
// endpoint, a P-256 public key and a 16-byte secret, base64url.
func webPushSubscription(in input, v *validation) persistence.NewDevice {
	sub, _ := in["subscription"].(map[string]any)
	keys, _ := sub["keys"].(map[string]any)
	endpoint, _ := sub["endpoint"].(string)
	p256dh, _ := keys["p256dh"].(string)
	auth, _ := keys["auth"].(string)
	if u, err := url.Parse(endpoint); err != nil || u.Scheme != "https" || u.Host == "" || len(endpoint) > maxPushToken {
		v.add("subscription.endpoint", "The subscription endpoint must be an https URL.")
	}
	if b, err := decodeBase64URL(p256dh); err != nil || len(b) != 65 || b[0] != 4 {
		v.add("subscription.keys.p256dh", "The subscription keys p256dh must be an uncompressed P-256 public key, base64url.")
	}
	if b, err := decodeBase64URL(auth); err != nil || len(b) != 16 {
		v.add("subscription.keys.auth", "The subscription keys auth must be 16 bytes, base64url.")
	}
	return persistence.NewDevice{Platform: persistence.PlatformWebPush, Token: endpoint, P256dh: p256dh, Auth: auth}
}

// decodeBase64URL accepts base64url with or without padding (browsers
// give it without; some libraries add it).
func decodeBase64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// registerDevice is POST /api/devices → 201 (200 when the token was the
// caller's already) {"data": device}.
func (s *Service) registerDevice(c *gin.Context) {
	in, ok := readInput(c)
	if !ok {
		return
	}
	var v validation
	nd := deviceInput(in, &v)
	if v.failed() {
		v.render(c)
		return
	}
	me := userOf(c)
	ctx, cancel := writeContext(c)
	defer cancel()
	r, err := s.st.RegisterDevice(ctx, me.ID, nd)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	s.pushTargetsChanged(me.ID)
	if r.PreviousUserID != 0 {
		s.pushTargetsChanged(r.PreviousUserID)
	}
	status := http.StatusOK
	if r.Created || r.PreviousUserID != 0 {
		status = http.StatusCreated
	}
	c.JSON(status, gin.H{"data": Device(r.Device)})
}

// listDevices is GET /api/devices → {"data": [device, ...]}.
func (s *Service) listDevices(c *gin.Context) {
	ds, err := s.st.Devices(c.Request.Context(), userOf(c).ID)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": DevicesJSON(ds)})
}

// deleteDevice is DELETE /api/devices/{id} → 204; 404 for a device that is
// not the caller's.
func (s *Service) deleteDevice(c *gin.Context) {
	id, ok := routeID(c, "Device")
	if !ok {
		return
	}
	me := userOf(c)
	ctx, cancel := writeContext(c)
	defer cancel()
	switch err := s.st.DeleteDevice(ctx, me.ID, id); {
	case errors.Is(err, persistence.ErrNotFound):
		abortMessage(c, http.StatusNotFound, "Device not found.")
		return
	case err != nil:
		s.unavailable(c, err)
		return
	}
	s.pushTargetsChanged(me.ID)
	c.Status(http.StatusNoContent)
}

// adminListDevices is GET /apps/{app}/admin/users/{id}/devices.
func (s *Service) adminListDevices(c *gin.Context) {
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	ds, err := s.st.Devices(c.Request.Context(), u.ID)
	if err != nil {
		s.adminFailed(c, err, "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"devices": DevicesJSON(ds)})
}

// adminRemoveDevice is POST .../users/{id}/devices/{device_id}/delete (or
// DELETE .../users/{id}/devices/{device_id}).
func (s *Service) adminRemoveDevice(c *gin.Context) {
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	id, ok := adminID(c, "device_id", "device")
	if !ok {
		return
	}
	ctx, cancel := writeContext(c)
	defer cancel()
	if err := s.st.DeleteDevice(ctx, u.ID, id); err != nil {
		s.adminFailed(c, err, fmt.Sprintf("user %d has no device with id %d", u.ID, id))
		return
	}
	s.pushTargetsChanged(u.ID)
	c.JSON(http.StatusOK, gin.H{"id": id, "user_id": u.ID, "removed": true})
}

// adminRemoveDevices is POST .../users/{id}/devices/delete: every device.
func (s *Service) adminRemoveDevices(c *gin.Context) {
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	ctx, cancel := writeContext(c)
	defer cancel()
	n, err := s.st.DeleteUserDevices(ctx, u.ID)
	if err != nil {
		s.adminFailed(c, err, "")
		return
	}
	s.pushTargetsChanged(u.ID)
	c.JSON(http.StatusOK, gin.H{"user_id": u.ID, "removed": n})
}

// pushTargetsChanged tells the user's unread counter that their devices or
// mutes changed, so its next push uses the new ones.
func (s *Service) pushTargetsChanged(userID int64) {
	if s.push != nil {
		s.counters.PushTargetsChanged(userID)
	}
}
