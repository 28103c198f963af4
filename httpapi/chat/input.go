package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// input is a request's fields from a JSON object, a form body, or the query
// string (GET). JSON numbers stay json.Number; form and query values are
// strings.
type input map[string]any

// readInput decodes the body by its Content-Type: JSON (the default) or
// form-encoded (what pusher-js sends). On failure it has answered 400/413.
func readInput(c *gin.Context) (input, bool) {
	if c.Request.Method == http.MethodGet {
		return queryInput(c), true
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBody)
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
		if err := c.Request.ParseMultipartForm(maxBody); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return nil, bodyError(c, err)
		}
		in := input{}
		for k, vs := range c.Request.PostForm {
			if len(vs) > 0 {
				in[k] = vs[0]
			}
		}
		return in, true
	}
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return nil, bodyError(c, err)
	}
	in := input{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return in, true
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&in); err != nil || d.More() {
		abortMessage(c, http.StatusBadRequest, "The request body is not a JSON object.")
		return nil, false
	}
	return in, true
}

func bodyError(c *gin.Context, err error) bool {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		abortMessage(c, http.StatusRequestEntityTooLarge, "The request body is too large.")
		return false
	}
	abortMessage(c, http.StatusBadRequest, "The request body could not be read.")
	return false
}

func queryInput(c *gin.Context) input {
	in := input{}
	for k, vs := range c.Request.URL.Query() {
		if len(vs) > 0 {
			in[k] = vs[0]
		}
	}
	return in
}

// present follows Laravel's TrimStrings and ConvertEmptyStringsToNull: a
// missing field, null and a blank string are all absent.
func (in input) present(field string) (any, bool) {
	v, ok := in[field]
	if !ok || v == nil {
		return nil, false
	}
	if s, isStr := v.(string); isStr && strings.TrimSpace(s) == "" {
		return nil, false
	}
	return v, true
}

// requiredString returns the trimmed string or records why it is not one.
func (in input) requiredString(v *validation, field string) string {
	raw, ok := in.present(field)
	if !ok {
		v.add(field, fmt.Sprintf("The %s field is required.", words(field)))
		return ""
	}
	s, isStr := raw.(string)
	if !isStr {
		v.add(field, fmt.Sprintf("The %s field must be a string.", words(field)))
		return ""
	}
	if !textOK(v, field, s) {
		return ""
	}
	return strings.TrimSpace(s)
}

// textOK refuses NUL and invalid UTF-8: PostgreSQL rejects both in text
// columns (a database error, not the client's 422) while SQLite would store
// them, so neither may reach the store. Form and query values can carry any
// bytes; JSON can carry \u0000.
func textOK(v *validation, field, s string) bool {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		v.add(field, fmt.Sprintf("The %s field must not contain NUL characters.", words(field)))
		return false
	case !utf8.ValidString(s):
		v.add(field, fmt.Sprintf("The %s field must be valid UTF-8.", words(field)))
		return false
	}
	return true
}

// integer returns the field as an integer: a JSON integer or a string of
// digits, as Laravel's integer rule accepts. present is false when absent.
func (in input) integer(v *validation, field string) (n int64, present, ok bool) {
	raw, present := in.present(field)
	if !present {
		return 0, false, false
	}
	var err error
	switch x := raw.(type) {
	case json.Number:
		n, err = strconv.ParseInt(x.String(), 10, 64)
	case string:
		n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	default:
		err = errors.New("not a number")
	}
	if err != nil {
		v.add(field, fmt.Sprintf("The %s field must be an integer.", words(field)))
		return 0, true, false
	}
	return n, true, true
}

// requiredInteger is integer with the required rule.
func (in input) requiredInteger(v *validation, field string) (int64, bool) {
	n, present, ok := in.integer(v, field)
	if !present {
		v.add(field, fmt.Sprintf("The %s field is required.", words(field)))
	}
	return n, ok
}

// words is Laravel's attribute name in messages: client_matter_id → client matter id.
func words(field string) string { return strings.ReplaceAll(field, "_", " ") }

// validation collects failures per field, in the order found.
type validation struct {
	fields []string
	errs   map[string][]string
}

func (v *validation) add(field, msg string) {
	if v.errs == nil {
		v.errs = map[string][]string{}
	}
	if _, seen := v.errs[field]; !seen {
		v.fields = append(v.fields, field)
	}
	v.errs[field] = append(v.errs[field], msg)
}

func (v *validation) failed() bool { return len(v.errs) > 0 }

// validInput reads the request's fields with read (readInput, or
// adminInput for the admin API) and has check validate them; false means it
// answered: 400 or 413 from read, or 422 with check's failures.
func validInput(c *gin.Context, read func(*gin.Context) (input, bool), check func(in input, v *validation)) bool {
	in, ok := read(c)
	if !ok {
		return false
	}
	var v validation
	check(in, &v)
	if v.failed() {
		v.render(c)
		return false
	}
	return true
}

// render answers 422 the way Laravel does: the first message, "(and N more
// errors)", and every message by field.
func (v *validation) render(c *gin.Context) {
	first := v.errs[v.fields[0]][0]
	more := -1
	for _, f := range v.fields {
		more += len(v.errs[f])
	}
	switch {
	case more == 1:
		first += " (and 1 more error)"
	case more > 1:
		first += fmt.Sprintf(" (and %d more errors)", more)
	}
	c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{"message": first, "errors": v.errs})
}
