// Command parley is the Parley server: a Pusher-protocol WebSocket server and
// chat backend in one binary.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/parley-chat/parley/cmd/parley/bench"
)

const usage = `parley - Pusher-protocol WebSocket server and chat backend

Usage:
  parley serve [flags]        run the server (parley serve --help for flags)
  parley migrate              apply database migrations (serve does it too)
  parley users create|list|show|update|delete ...     manage chat users
  parley tokens create|list|revoke ...                API tokens
  parley matters create|list|show|update|delete|add-member|remove-member ...
  parley devices list|remove ...                      a user's push devices
                              (parley users help lists every admin command)
  parley bench SCENARIO ...   load-test any Pusher-protocol server
  parley version              print the version
`

// version may be set at build time with -ldflags "-X main.version=..."; when
// it is not, buildVersion reads the build's own information.
var version = ""

// buildVersion is the ldflags version, else the module version Go recorded
// (`go install ...@v1.2.3`), else the VCS revision of the checkout it was
// built from (with "-dirty" for uncommitted changes), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "devel-" + rev
	if when != "" {
		v += " (" + when + ")"
	}
	if dirty {
		v += "-dirty"
	}
	return v
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "users", "tokens", "matters", "devices":
		return admin(ctx, args[0], args[1:], os.Stdin, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "bench":
		return bench.Main(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		goVersion := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			goVersion = " " + bi.GoVersion
		}
		fmt.Fprintf(stdout, "parley %s%s\n", buildVersion(), goVersion)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
