package config

import (
	"fmt"
	"io"
	"strings"
)

// SettingsDocument is the document, relative to the repository's root,
// whose settings table MarkdownTable renders; the table sits between
// SettingsBegin and SettingsEnd.
const (
	SettingsDocument = "docs/configuration.md"
	SettingsBegin    = "<!-- settings:begin -->"
	SettingsEnd      = "<!-- settings:end -->"
)

const usageHead = `Usage: parley serve [flags]

Every setting below is a flag, an environment variable or both. Flags
override environment variables, which override the defaults. Where a
setting has several environment variables the first one set is read
(REVERB_* let a Laravel Reverb .env work unchanged).
`

// usageWidth is where --help wraps a setting's description;
// usageColumn is where a flag's environment variables start.
const (
	usageWidth  = 80
	usageColumn = 30
)

// printUsage is `parley serve --help`: every setting, by group, with its
// flag, environment variables and default.
func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	group := ""
	for _, s := range Settings() {
		if s.Group != group {
			group = s.Group
			fmt.Fprintf(w, "\n%s:\n", group)
		}
		name, envs := s.Env[0], strings.Join(s.Env, ", ")
		if s.Flag != "" {
			name = "--" + s.Flag
			if a := s.arg(); a != "" {
				name += " " + a
			}
		} else {
			envs = strings.Join(s.Env[1:], ", ")
		}
		if envs != "" {
			name += strings.Repeat(" ", max(2, usageColumn-len(name))) + envs
		}
		fmt.Fprintf(w, "  %s\n", name)
		for _, line := range wrap(plain(s.Help+" (default "+s.DefaultText()+")"), usageWidth-6) {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
}

// arg names the flag's value: its own Arg, else its kind's.
func (s *Setting) arg() string {
	if s.Arg != "" || s.value == nil || s.value.isBool() {
		return s.Arg
	}
	return s.value.arg()
}

// DefaultText is the default as --help and the documentation show it;
// never a secret's value.
func (s *Setting) DefaultText() string {
	switch {
	case s.Shown != "":
		return s.Shown
	case s.Default == "" || s.Secret:
		return "none"
	}
	return s.Default
}

// plain drops the Markdown code marks.
func plain(s string) string { return strings.ReplaceAll(s, "`", "") }

// wrap breaks text into lines of at most width characters, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// MarkdownTable is the documentation's settings table, one row a setting.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| setting | flag | environment | default |\n|---|---|---|---|\n")
	group := ""
	for _, s := range Settings() {
		if s.Group != group {
			group = s.Group
			fmt.Fprintf(&b, "| **%s** | | | |\n", group)
		}
		flagCell := "–"
		if s.Flag != "" {
			flagCell = "`--" + s.Flag + "`"
		}
		envCell := "`" + s.Env[0] + "`"
		if len(s.Env) > 1 {
			envCell += " (or `" + strings.Join(s.Env[1:], "`, `") + "`)"
		}
		def := "`" + s.Default + "`"
		switch {
		case s.Shown != "":
			def = s.Shown
		case s.Default == "" || s.Secret:
			def = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(s.Help), flagCell, envCell, cell(def))
	}
	return b.String()
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
