// Command parley is the Parley server: a Pusher-protocol WebSocket server and
// chat backend in one binary.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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
                              (parley users help lists every admin command)
  parley bench SCENARIO ...   load-test any Pusher-protocol server
  parley version              print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
	case "users", "tokens", "matters":
		return admin(ctx, args[0], args[1:], os.Stdin, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "bench":
		return bench.Main(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "parley", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
