package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/persistence"
)

// The admin API: /apps/{app_id}/admin/..., signed exactly like the Pusher
// HTTP API with the chat app's key and secret (httpapi's signing middleware
// has verified the request and kept its body before these handlers run), so
// a backend manages users, tokens and matters with the `pusher` SDKs'
// generic get/post. Those SDKs only send GET and POST: every write is a
// POST, and DELETE is accepted too where a resource goes away.
//
// Errors: 422 {"message", "errors": {field: [...]}} for validation (as the
// chat API); every other refusal {"error": "..."} (as the Pusher HTTP API):
// 404 unknown id, 409 email or external_id taken, 503 database down.

// Field limits of the admin API.
const (
	maxAdminText     = 255                  // name, email, title, external_id (characters)
	maxAdminPage     = 100                  // list limit
	defaultAdminPage = 20                   // list limit when not given
	maxTokenTTL      = 10 * 365 * 24 * 3600 // ttl_seconds
	maxMemberIDs     = 1000                 // member_ids of one new matter
	msgAdminDBDown   = "The database is unavailable; try again."
	msgAdminBodyJSON = "The request body is not a JSON object."
)

// ValidatePassword checks a new password: at least minLen characters, at most
// 72 bytes (all bcrypt reads), no NUL, valid UTF-8. The error says which.
func ValidatePassword(pw string, minLen int) error {
	switch {
	case strings.IndexByte(pw, 0) >= 0 || !utf8.ValidString(pw):
		return errors.New("password contains NUL or invalid UTF-8")
	case utf8.RuneCountInString(pw) < minLen:
		return fmt.Errorf("password is shorter than %d characters (PARLEY_MIN_PASSWORD_LENGTH)", minLen)
	case len(pw) > 72:
		return errors.New("password is longer than 72 bytes (bcrypt reads no more)")
	}
	return nil
}

// ValidateEmail checks that email is a bare address (no display name) of at
// most 255 characters.
func ValidateEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return fmt.Errorf("%q is not an email address", email)
	}
	if utf8.RuneCountInString(email) > maxAdminText {
		return errors.New("email is longer than 255 characters")
	}
	return nil
}

// AdminUserJSON is a user as the admin API and the admin commands show it.
type AdminUserJSON struct {
	ID          int64   `json:"id"`
	Name        string  `json:"name"`
	Email       string  `json:"email"`
	ExternalID  *string `json:"external_id"`
	HasPassword bool    `json:"has_password"`
	CreatedAt   string  `json:"created_at"`
}

// AdminUser renders u.
func AdminUser(u persistence.User) AdminUserJSON {
	return AdminUserJSON{ID: u.ID, Name: u.Name, Email: u.Email, ExternalID: u.ExternalID,
		HasPassword: u.PasswordHash != "", CreatedAt: timeJSON(u.CreatedAt)}
}

// AdminTokenJSON is a token without its secret.
type AdminTokenJSON struct {
	ID         int64   `json:"id"`
	UserID     int64   `json:"user_id"`
	ExpiresAt  *string `json:"expires_at"`
	LastUsedAt *string `json:"last_used_at"`
	CreatedAt  string  `json:"created_at"`
}

// AdminToken renders t.
func AdminToken(t persistence.Token) AdminTokenJSON {
	return AdminTokenJSON{ID: t.ID, UserID: t.UserID, ExpiresAt: timePtrJSON(t.ExpiresAt),
		LastUsedAt: timePtrJSON(t.LastUsedAt), CreatedAt: timeJSON(t.CreatedAt)}
}

// IssuedTokenJSON is a new token, its secret shown this once.
type IssuedTokenJSON struct {
	Token     string  `json:"token"`
	ID        int64   `json:"id"`
	UserID    int64   `json:"user_id"`
	ExpiresAt *string `json:"expires_at"`
}

// IssuedToken renders a token IssueToken made.
func IssuedToken(plain string, t persistence.Token) IssuedTokenJSON {
	return IssuedTokenJSON{Token: plain, ID: t.ID, UserID: t.UserID, ExpiresAt: timePtrJSON(t.ExpiresAt)}
}

// AdminMatterJSON is a matter; Members only when shown alone.
type AdminMatterJSON struct {
	ID        int64            `json:"id"`
	Title     string           `json:"title"`
	CreatedAt string           `json:"created_at"`
	Members   *[]AdminUserJSON `json:"members,omitempty"`
}

// AdminMatter renders m with its members (nil: none listed).
func AdminMatter(m persistence.Matter, members []persistence.User) AdminMatterJSON {
	out := AdminMatterJSON{ID: m.ID, Title: m.Title, CreatedAt: timeJSON(m.CreatedAt)}
	if members != nil {
		list := make([]AdminUserJSON, 0, len(members))
		for _, u := range members {
			list = append(list, AdminUser(u))
		}
		out.Members = &list
	}
	return out
}

// mountAdmin adds the admin routes to the signed /apps/:app_id group.
func (s *Service) mountAdmin(signed *gin.RouterGroup) {
	a := signed.Group("/admin", s.adminOnly)
	a.GET("/users", s.adminListUsers)
	a.POST("/users", s.adminCreateUser)
	a.GET("/users/:id", s.adminShowUser)
	a.POST("/users/:id", s.adminUpdateUser)
	a.POST("/users/:id/delete", s.adminDeleteUser)
	a.DELETE("/users/:id", s.adminDeleteUser)
	a.GET("/users/:id/tokens", s.adminListTokens)
	a.POST("/users/:id/tokens", s.adminIssueToken)
	a.POST("/users/:id/tokens/revoke", s.adminRevokeUserTokens)
	a.GET("/users/:id/devices", s.adminListDevices)
	a.POST("/users/:id/devices/delete", s.adminRemoveDevices)
	a.POST("/users/:id/devices/:device_id/delete", s.adminRemoveDevice)
	a.DELETE("/users/:id/devices/:device_id", s.adminRemoveDevice)
	a.POST("/tokens/:id/revoke", s.adminRevokeToken)
	a.DELETE("/tokens/:id", s.adminRevokeToken)
	a.GET("/matters", s.adminListMatters)
	a.POST("/matters", s.adminCreateMatter)
	a.GET("/matters/:id", s.adminShowMatter)
	a.POST("/matters/:id", s.adminUpdateMatter)
	a.POST("/matters/:id/delete", s.adminDeleteMatter)
	a.DELETE("/matters/:id", s.adminDeleteMatter)
	a.POST("/matters/:id/members", s.adminAddMember)
	a.POST("/matters/:id/members/:user_id/delete", s.adminRemoveMember)
	a.DELETE("/matters/:id/members/:user_id", s.adminRemoveMember)
}

func adminError(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg})
}

// createdStatus is 201 for a created resource, except for the official PHP
// SDK (pusher/pusher-php-server, what Laravel's broadcaster uses), whose
// generic post() throws on any status but 200: it gets 200 with the same
// body. It names itself in X-Pusher-Library.
func createdStatus(c *gin.Context) int {
	if strings.HasPrefix(c.GetHeader("X-Pusher-Library"), "pusher-http-php") {
		return http.StatusOK
	}
	return http.StatusCreated
}

// adminOnly lets through only the chat's app: another app's (correctly
// signed) request learns nothing about the chat's data.
func (s *Service) adminOnly(c *gin.Context) {
	if c.Param("app_id") != s.app.ID {
		adminError(c, http.StatusNotFound, "the admin API belongs to the chat's app ("+s.app.ID+"); this app has none")
	}
}

// adminFailed answers a store error: 404, 409 or 503.
func (s *Service) adminFailed(c *gin.Context, err error, notFound string) {
	switch {
	case errors.Is(err, persistence.ErrEmailTaken):
		adminError(c, http.StatusConflict, "The email has already been taken.")
	case errors.Is(err, persistence.ErrExternalIDTaken):
		adminError(c, http.StatusConflict, "The external id has already been taken.")
	case errors.Is(err, persistence.ErrNotFound):
		adminError(c, http.StatusNotFound, notFound)
	default:
		s.log.Error("admin: database unavailable", "error", err, "method", c.Request.Method, "path", c.FullPath())
		c.Header("Retry-After", "5")
		adminError(c, http.StatusServiceUnavailable, msgAdminDBDown)
	}
}

// adminInput is the request's fields: the query string of a GET, else the
// signed JSON body (empty is an empty object).
func adminInput(c *gin.Context) (input, bool) {
	if c.Request.Method == http.MethodGet {
		return queryInput(c), true
	}
	raw, _ := c.Get(gin.BodyBytesKey)
	body, _ := raw.([]byte)
	in := input{}
	// PHP's json_encode([]) is "[]": an empty body as PHP writes it.
	if b := bytes.TrimSpace(body); len(b) == 0 || string(b) == "[]" {
		return in, true
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&in); err != nil || d.More() {
		adminError(c, http.StatusBadRequest, msgAdminBodyJSON)
		return nil, false
	}
	return in, true
}

// adminID parses a positive path id; false means 404 was answered.
func adminID(c *gin.Context, param, what string) (int64, bool) {
	id, err := strconv.ParseInt(c.Param(param), 10, 64)
	if err != nil || id <= 0 {
		adminError(c, http.StatusNotFound, fmt.Sprintf("no %s %q", what, c.Param(param)))
		return 0, false
	}
	return id, true
}

func noUser(id int64) string   { return fmt.Sprintf("no user with id %d", id) }
func noMatter(id int64) string { return fmt.Sprintf("no matter with id %d", id) }

// textField validates a trimmed text field of at most 255 characters.
func textField(v *validation, field, s string) string {
	if utf8.RuneCountInString(s) > maxAdminText {
		v.add(field, fmt.Sprintf("The %s field must not be greater than %d characters.", words(field), maxAdminText))
	}
	return s
}

// optionalString reads a field that may be absent, null or blank (set
// false), a string, or for external_id an integer (a Laravel users.id).
func (in input) optionalString(v *validation, field string, numbers bool) (val string, set bool) {
	raw, ok := in.present(field)
	if !ok {
		return "", false
	}
	switch x := raw.(type) {
	case string:
		if !textOK(v, field, x) {
			return "", false
		}
		return strings.TrimSpace(x), true
	case json.Number:
		if n, err := strconv.ParseInt(x.String(), 10, 64); numbers && err == nil {
			return strconv.FormatInt(n, 10), true
		}
	}
	v.add(field, fmt.Sprintf("The %s field must be a string.", words(field)))
	return "", false
}

// page reads after_id and limit.
func (in input) page(v *validation) (afterID int64, limit int) {
	afterID, present, ok := in.integer(v, "after_id")
	if present && ok && afterID < 0 {
		v.add("after_id", "The after id field must be at least 0.")
	}
	limit = defaultAdminPage
	if n, present, ok := in.integer(v, "limit"); present && ok {
		if n < 1 || n > maxAdminPage {
			v.add("limit", fmt.Sprintf("The limit field must be between 1 and %d.", maxAdminPage))
		}
		limit = int(n)
	}
	return afterID, limit
}

// nextAfter is the cursor of the next page: null when this one is the last
// (the store was asked for one row more than the page).
func nextAfter[T any](rows []T, limit int, id func(T) int64) ([]T, *int64) {
	if len(rows) <= limit {
		return rows, nil
	}
	rows = rows[:limit]
	next := id(rows[limit-1])
	return rows, &next
}

// UsersPage is one page of the admin API's GET users and of `parley users
// list`: q.Limit users after q.AfterID, and the after_id of the next page
// (null on the last).
func UsersPage(ctx context.Context, st persistence.Store, q persistence.UserQuery) (map[string]any, error) {
	limit := q.Limit
	q.Limit++
	users, err := st.ListUsers(ctx, q)
	if err != nil {
		return nil, err
	}
	users, next := nextAfter(users, limit, func(u persistence.User) int64 { return u.ID })
	out := make([]AdminUserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, AdminUser(u))
	}
	return map[string]any{"users": out, "next_after_id": next}, nil
}

// MattersPage is UsersPage for matters (GET matters, `parley matters list`).
func MattersPage(ctx context.Context, st persistence.Store, q persistence.MatterQuery) (map[string]any, error) {
	limit := q.Limit
	q.Limit++
	ms, err := st.ListMatters(ctx, q)
	if err != nil {
		return nil, err
	}
	ms, next := nextAfter(ms, limit, func(m persistence.Matter) int64 { return m.ID })
	out := make([]AdminMatterJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, AdminMatter(m, nil))
	}
	return map[string]any{"matters": out, "next_after_id": next}, nil
}

func (s *Service) adminListUsers(c *gin.Context) {
	q := persistence.UserQuery{}
	if !validInput(c, adminInput, func(in input, v *validation) {
		q.AfterID, q.Limit = in.page(v)
		q.Email, _ = in.optionalString(v, "email", false)
		q.ExternalID, _ = in.optionalString(v, "external_id", true)
	}) {
		return
	}
	page, err := UsersPage(c.Request.Context(), s.st, q)
	s.adminAnswer(c, http.StatusOK, page, err, "")
}

// adminAnswer answers out with status, or err (when not nil) as
// adminFailed does, notFound being the words of a 404.
func (s *Service) adminAnswer(c *gin.Context, status int, out any, err error, notFound string) {
	if err != nil {
		s.adminFailed(c, err, notFound)
		return
	}
	c.JSON(status, out)
}

// adminWrite runs write under the write deadline (writeContext) and
// answers what it returns as adminAnswer does.
func (s *Service) adminWrite(c *gin.Context, status int, notFound string, write func(ctx context.Context) (any, error)) {
	ctx, cancel := writeContext(c)
	defer cancel()
	out, err := write(ctx)
	s.adminAnswer(c, status, out, err, notFound)
}

// adminHash hashes a new password ("": none, ""); false means 500 was
// answered.
func adminHash(c *gin.Context, password string) (string, bool) {
	if password == "" {
		return "", true
	}
	hash, err := HashPassword(password)
	if err != nil {
		adminError(c, http.StatusInternalServerError, err.Error())
		return "", false
	}
	return hash, true
}

// userFields validates name, email, password and external_id of a create
// (required: name and email) or an update (all optional; external_id null
// or "" clears it).
func (s *Service) userFields(v *validation, in input, create bool) (p persistence.UserPatch, password string) {
	for _, f := range []struct {
		name string
		dst  **string
	}{{"name", &p.Name}, {"email", &p.Email}} {
		if _, sent := in[f.name]; !create && !sent {
			continue
		}
		val := in.requiredString(v, f.name)
		if val == "" {
			continue
		}
		val = textField(v, f.name, val)
		*f.dst = &val
	}
	if p.Email != nil {
		if err := ValidateEmail(*p.Email); err != nil {
			v.add("email", "The email field must be a valid email address.")
		}
	}
	// Passwords are taken as sent (not trimmed); null means none (create)
	// or unchanged (update), "" is too short.
	if raw, sent := in["password"]; sent && raw != nil {
		pw, isStr := raw.(string)
		switch {
		case !isStr:
			v.add("password", "The password field must be a string.")
		case ValidatePassword(pw, s.cfg.MinPasswordLength) != nil:
			v.add("password", passwordMessage(pw, s.cfg.MinPasswordLength))
		default:
			password = pw
		}
	}
	if _, sent := in["external_id"]; sent {
		id, set := in.optionalString(v, "external_id", true)
		switch {
		case set:
			id = textField(v, "external_id", id)
			p.ExternalID = &id
		case !create && !v.has("external_id"):
			p.ClearExternalID = true
		}
	}
	return p, password
}

// passwordMessage is Laravel's wording for ValidatePassword's refusals.
func passwordMessage(pw string, minLen int) string {
	switch {
	case strings.IndexByte(pw, 0) >= 0 || !utf8.ValidString(pw):
		return "The password field must not contain NUL characters or invalid UTF-8."
	case utf8.RuneCountInString(pw) < minLen:
		return fmt.Sprintf("The password field must be at least %d characters.", minLen)
	default:
		return "The password field must not be greater than 72 bytes."
	}
}

func (v *validation) has(field string) bool { _, ok := v.errs[field]; return ok }

func (s *Service) adminCreateUser(c *gin.Context) {
	var p persistence.UserPatch
	var password string
	if !validInput(c, adminInput, func(in input, v *validation) { p, password = s.userFields(v, in, true) }) {
		return
	}
	nu := persistence.NewUser{Name: *p.Name, Email: *p.Email, ExternalID: p.ExternalID}
	var ok bool
	if nu.PasswordHash, ok = adminHash(c, password); !ok {
		return
	}
	s.adminWrite(c, createdStatus(c), "", func(ctx context.Context) (any, error) {
		u, err := s.st.CreateUserWith(ctx, nu)
		return AdminUser(u), err
	})
}

// activeUser loads the path's user; deleted users are not found.
func (s *Service) activeUser(c *gin.Context) (persistence.User, bool) {
	id, ok := adminID(c, "id", "user")
	if !ok {
		return persistence.User{}, false
	}
	u, err := s.st.UserByID(c.Request.Context(), id)
	if err == nil && u.DeletedAt != nil {
		err = persistence.ErrNotFound
	}
	if err != nil {
		s.adminFailed(c, err, noUser(id))
		return persistence.User{}, false
	}
	return u, true
}

func (s *Service) adminShowUser(c *gin.Context) {
	if u, ok := s.activeUser(c); ok {
		c.JSON(http.StatusOK, AdminUser(u))
	}
}

func (s *Service) adminUpdateUser(c *gin.Context) {
	id, ok := adminID(c, "id", "user")
	if !ok {
		return
	}
	var p persistence.UserPatch
	var password string
	if !validInput(c, adminInput, func(in input, v *validation) { p, password = s.userFields(v, in, false) }) {
		return
	}
	hash, ok := adminHash(c, password)
	if !ok {
		return
	}
	if hash != "" {
		p.PasswordHash = &hash
	}
	s.adminWrite(c, http.StatusOK, noUser(id), func(ctx context.Context) (any, error) {
		u, err := s.st.UpdateUser(ctx, id, p)
		s.auth.forgetUser(id)
		return AdminUser(u), err
	})
}

func (s *Service) adminDeleteUser(c *gin.Context) {
	id, ok := adminID(c, "id", "user")
	if !ok {
		return
	}
	s.adminWrite(c, http.StatusOK, noUser(id), func(ctx context.Context) (any, error) {
		matters, err := s.st.DeleteUser(ctx, id)
		s.auth.forgetUser(id)
		if err != nil {
			return nil, err
		}
		// Their counter, if running, drops the matters they left.
		s.counters.Reload(id)
		return gin.H{"id": id, "deleted": true, "left_matter_ids": matters}, nil
	})
}

func (s *Service) adminListTokens(c *gin.Context) {
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	toks, err := s.st.ListTokens(c.Request.Context(), u.ID)
	out := make([]AdminTokenJSON, 0, len(toks))
	for _, t := range toks {
		out = append(out, AdminToken(t))
	}
	s.adminAnswer(c, http.StatusOK, gin.H{"tokens": out}, err, "")
}

func (s *Service) adminIssueToken(c *gin.Context) {
	ttl := LoginTokenTTL
	if !validInput(c, adminInput, func(in input, v *validation) {
		if n, present, ok := in.integer(v, "ttl_seconds"); present && ok {
			if n < 0 || n > maxTokenTTL {
				v.add("ttl_seconds", fmt.Sprintf("The ttl seconds field must be between 0 and %d.", maxTokenTTL))
			}
			ttl = time.Duration(n) * time.Second
		}
	}) {
		return
	}
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	s.adminWrite(c, createdStatus(c), noUser(u.ID), func(ctx context.Context) (any, error) {
		plain, tok, err := IssueToken(ctx, s.st, u.ID, ttl)
		return IssuedToken(plain, tok), err
	})
}

func (s *Service) adminRevokeToken(c *gin.Context) {
	id, ok := adminID(c, "id", "token")
	if !ok {
		return
	}
	s.adminWrite(c, http.StatusOK, fmt.Sprintf("no token with id %d", id), func(ctx context.Context) (any, error) {
		err := s.st.DeleteToken(ctx, id)
		s.auth.forgetToken(id)
		return gin.H{"id": id, "revoked": true}, err
	})
}

func (s *Service) adminRevokeUserTokens(c *gin.Context) {
	u, ok := s.activeUser(c)
	if !ok {
		return
	}
	s.adminWrite(c, http.StatusOK, noUser(u.ID), func(ctx context.Context) (any, error) {
		n, err := s.st.DeleteUserTokens(ctx, u.ID)
		s.auth.forgetUser(u.ID)
		return gin.H{"user_id": u.ID, "revoked": n}, err
	})
}

func (s *Service) adminListMatters(c *gin.Context) {
	q := persistence.MatterQuery{}
	if !validInput(c, adminInput, func(in input, v *validation) {
		q.AfterID, q.Limit = in.page(v)
		if n, present, ok := in.integer(v, "user_id"); present && ok {
			if n < 1 {
				v.add("user_id", "The user id field must be at least 1.")
			}
			q.UserID = n
		}
	}) {
		return
	}
	page, err := MattersPage(c.Request.Context(), s.st, q)
	s.adminAnswer(c, http.StatusOK, page, err, "")
}

// titleField validates a matter's title.
func titleField(v *validation, in input) string {
	t := in.requiredString(v, "title")
	if t != "" {
		textField(v, "title", t)
	}
	return t
}

// memberIDs validates the member_ids of a new matter: absent, or an array
// of at most maxMemberIDs user ids.
func memberIDs(v *validation, in input) []int64 {
	raw, present := in.present("member_ids")
	if !present {
		return nil
	}
	list, isList := raw.([]any)
	switch {
	case !isList:
		v.add("member_ids", "The member ids field must be an array.")
		return nil
	case len(list) > maxMemberIDs:
		v.add("member_ids", fmt.Sprintf("The member ids field must not have more than %d items.", maxMemberIDs))
		return nil
	}
	var members []int64
	for i, x := range list {
		field := "member_ids." + strconv.Itoa(i)
		n, _, ok := input{field: x}.integer(v, field)
		if ok && n < 1 {
			v.add(field, fmt.Sprintf("The %s field must be at least 1.", words(field)))
		}
		members = append(members, n)
	}
	return members
}

func (s *Service) adminCreateMatter(c *gin.Context) {
	var title string
	var members []int64
	if !validInput(c, adminInput, func(in input, v *validation) {
		title = titleField(v, in)
		members = memberIDs(v, in)
	}) {
		return
	}
	ctx, cancel := writeContext(c)
	defer cancel()
	m, err := s.st.CreateMatterWith(ctx, title, members)
	var missing *persistence.MissingUsersError
	if errors.As(err, &missing) {
		var v validation
		for _, id := range missing.IDs {
			v.add("member_ids", fmt.Sprintf("The selected member id %d is invalid.", id))
		}
		v.render(c)
		return
	}
	if err != nil {
		s.adminFailed(c, err, "")
		return
	}
	users, err := s.st.MatterMembers(ctx, m.ID)
	if err == nil {
		for _, u := range users {
			s.counters.Reload(u.ID)
		}
	}
	s.adminAnswer(c, createdStatus(c), AdminMatter(m, users), err, "")
}

func (s *Service) adminShowMatter(c *gin.Context) {
	id, ok := adminID(c, "id", "matter")
	if !ok {
		return
	}
	ctx := c.Request.Context()
	m, err := s.st.MatterByID(ctx, id)
	if err != nil {
		s.adminFailed(c, err, noMatter(id))
		return
	}
	users, err := s.st.MatterMembers(ctx, id)
	s.adminAnswer(c, http.StatusOK, AdminMatter(m, users), err, "")
}

func (s *Service) adminUpdateMatter(c *gin.Context) {
	id, ok := adminID(c, "id", "matter")
	if !ok {
		return
	}
	var title string
	if !validInput(c, adminInput, func(in input, v *validation) { title = titleField(v, in) }) {
		return
	}
	s.adminWrite(c, http.StatusOK, noMatter(id), func(ctx context.Context) (any, error) {
		m, err := s.st.UpdateMatter(ctx, id, title)
		return AdminMatter(m, nil), err
	})
}

func (s *Service) adminDeleteMatter(c *gin.Context) {
	id, ok := adminID(c, "id", "matter")
	if !ok {
		return
	}
	s.adminWrite(c, http.StatusOK, noMatter(id), func(ctx context.Context) (any, error) {
		members, err := s.st.DeleteMatter(ctx, id)
		if err != nil {
			return nil, err
		}
		// Its unread messages no longer count: each former member's
		// counter reloads now and sends UnreadCountUpdated.
		for _, uid := range members {
			s.counters.Reload(uid)
		}
		return gin.H{"id": id, "deleted": true, "member_ids": members}, nil
	})
}

func (s *Service) adminAddMember(c *gin.Context) {
	id, ok := adminID(c, "id", "matter")
	if !ok {
		return
	}
	var uid int64
	if !validInput(c, adminInput, func(in input, v *validation) {
		var ok bool
		if uid, ok = in.requiredInteger(v, "user_id"); ok && uid < 1 {
			v.add("user_id", "The user id field must be at least 1.")
		}
	}) {
		return
	}
	s.adminMembership(c, id, uid, true, s.st.AddActiveMember)
}

func (s *Service) adminRemoveMember(c *gin.Context) {
	id, ok := adminID(c, "id", "matter")
	if !ok {
		return
	}
	uid, ok := adminID(c, "user_id", "user")
	if !ok {
		return
	}
	s.adminMembership(c, id, uid, false, s.st.RemoveMember)
}

// adminMembership makes uid a member of the matter (member true) or not
// with change, which says whether it changed anything: then uid's counter
// reloads. The answer says "added" or "removed".
func (s *Service) adminMembership(c *gin.Context, id, uid int64, member bool, change func(ctx context.Context, matterID, userID int64) (bool, error)) {
	ctx, cancel := writeContext(c)
	defer cancel()
	changed, err := change(ctx, id, uid)
	if err != nil {
		s.adminFailed(c, err, memberNotFound(err, id, uid))
		return
	}
	if changed {
		s.counters.Reload(uid)
	}
	done := "removed"
	if member {
		done = "added"
	}
	c.JSON(http.StatusOK, gin.H{"matter_id": id, "user_id": uid, "member": member, done: changed})
}

// memberNotFound says whether the matter or the user is missing.
func memberNotFound(err error, matterID, userID int64) string {
	if errors.Is(err, persistence.ErrNoSuchMatter) {
		return noMatter(matterID)
	}
	return noUser(userID)
}
