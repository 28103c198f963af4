package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// value is a setting's parser and validator, bound to its field.
type value interface {
	// set parses s into the field; the error completes `NAME="s" ...`.
	set(s string) error
	// problems says what is wrong with the value held, as typed (raw),
	// each line starting with label.
	problems(label, raw string) []string
	// arg names the value in --help; empty for a boolean flag.
	arg() string
	// isBool lets a flag stand alone: --chat means --chat=true.
	isBool() bool
}

// scalar is a setting of one value of type T.
type scalar[T any] struct {
	dst   *T
	parse func(string) (T, error)
	valid func(T) string // what is wrong, "" when nothing; nil checks nothing
	name  string         // arg
	quote bool           // shown quoted in problems (text)
	flag  bool           // isBool
}

func (v *scalar[T]) set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.dst = x
	return nil
}

func (v *scalar[T]) problems(label, raw string) []string {
	if v.valid == nil {
		return nil
	}
	what := v.valid(*v.dst)
	switch {
	case what == "":
		return nil
	case raw == "":
		return []string{label + " " + what}
	case v.quote:
		return []string{fmt.Sprintf("%s %q %s", label, raw, what)}
	}
	return []string{label + " " + raw + " " + what}
}

func (v *scalar[T]) arg() string  { return v.name }
func (v *scalar[T]) isBool() bool { return v.flag }

func custom[T any](dst *T, parse func(string) (T, error), valid func(T) string, arg string) *scalar[T] {
	return &scalar[T]{dst: dst, parse: parse, valid: valid, name: arg, quote: true}
}

// text is a string setting.
func text(dst *string, valid func(string) string) value {
	return custom(dst, func(s string) (string, error) { return s, nil }, valid, "VALUE")
}

// credential is a string setting that an empty value leaves as it was:
// --app-secret "" does not undo PARLEY_APP_SECRET.
func credential(dst *string) value {
	v := &scalar[string]{dst: dst, name: "VALUE", quote: true}
	v.parse = func(s string) (string, error) {
		if s == "" {
			return *dst, nil
		}
		return s, nil
	}
	return v
}

var errNotWhole = errors.New("is not a whole number")

// number is a whole-number setting.
func number[T ~int | ~int64](dst *T, valid func(T) string) value {
	return &scalar[T]{dst: dst, valid: valid, name: "N", parse: func(s string) (T, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
		if err != nil {
			return 0, errNotWhole
		}
		return T(n), nil
	}}
}

var errNotBool = errors.New("is not true or false")

// boolean is a true/false setting, as strconv.ParseBool reads it.
func boolean(dst *bool) value {
	return &scalar[bool]{dst: dst, flag: true, parse: func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, errNotBool
		}
		return b, nil
	}}
}

// parseSwitch reads on/off words as well as true/false (PARLEY_METRICS).
func parseSwitch(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "true", "on", "yes":
		return true, nil
	case "0", "false", "off", "no":
		return false, nil
	}
	return false, errNotBool
}

func parseLogLevel(s string) (string, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return "", errors.New("must be debug, info, warn or error")
	}
	return s, nil
}

// durationRange is which durations a setting accepts when parsed.
type durationRange int

const (
	anyDuration durationRange = iota
	nonNegative
	positiveDuration
)

// durationValue is a duration setting; its example, in the message for a
// value that is not one, is the setting's default.
type durationValue struct {
	scalar[time.Duration]
	accept  durationRange
	example string
}

func duration(dst *time.Duration, accept durationRange, valid func(time.Duration) string) value {
	d := &durationValue{accept: accept}
	d.scalar = scalar[time.Duration]{dst: dst, valid: valid, name: "DURATION", parse: d.parse}
	return d
}

func (d *durationValue) parse(s string) (time.Duration, error) {
	x, err := time.ParseDuration(s)
	switch {
	case d.accept == positiveDuration && (err != nil || x <= 0):
		return 0, fmt.Errorf("is not a positive duration such as %s", d.example)
	case d.accept == nonNegative && (err != nil || x < 0):
		return 0, fmt.Errorf("is not a duration such as %s, or 0", d.example)
	case err != nil:
		return 0, fmt.Errorf("is not a duration such as %s", d.example)
	}
	return x, nil
}

// listValue is a comma-separated list; each item is checked on its own.
type listValue struct {
	dst   *[]string
	valid func(string) string
}

func list(dst *[]string, valid func(string) string) value { return &listValue{dst: dst, valid: valid} }

func (l *listValue) set(s string) error { *l.dst = splitList(s); return nil }
func (l *listValue) arg() string        { return "A,B,..." }
func (l *listValue) isBool() bool       { return false }

func (l *listValue) problems(label, _ string) []string {
	if l.valid == nil {
		return nil
	}
	var out []string
	for _, item := range *l.dst {
		if what := l.valid(item); what != "" {
			out = append(out, fmt.Sprintf("%s: %q %s", label, item, what))
		}
	}
	return out
}

// Validators: each says what is wrong with a value, or "".

func notEmpty(s string) string {
	if s == "" {
		return "is empty"
	}
	return ""
}

func atLeast[T ~int | ~int64](least T, what string) func(T) string {
	return func(n T) string {
		if n < least {
			return what
		}
		return ""
	}
}

func between(lo, hi int, what string) func(int) string {
	return func(n int) string {
		if n < lo || n > hi {
			return what
		}
		return ""
	}
}

func positive(d time.Duration) string {
	if d <= 0 {
		return "must be positive"
	}
	return ""
}

func oneOf(what string, allowed ...string) func(string) string {
	return func(s string) string {
		if !slices.Contains(allowed, s) {
			return what
		}
		return ""
	}
}

func addressOrPrefix(s string) string {
	if _, err := netip.ParsePrefix(s); err == nil {
		return ""
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return ""
	}
	return "is not an address or CIDR prefix"
}
