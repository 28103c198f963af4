// Package bench implements `parley bench`, a load generator for any
// Pusher-protocol server: Parley itself, or soketi, Reverb and the like on
// the same machine, so that their numbers can be compared with the same
// client. Every scenario is open-loop where it publishes (latency counts
// from the time a message was due), bounded in size and time, and by
// default refuses targets other than loopback.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Exit codes of Main.
const (
	exitOK      = 0 // the run completed; loss is a result, not a failure
	exitFailure = 1 // the run could not complete
	exitUsage   = 2 // bad command line
)

// command is one scenario with its flags parsed.
type command interface {
	// register defines the scenario's own flags on fs.
	register(fs *flag.FlagSet)
	// credentials says which app credentials the scenario needs.
	credentials() credentials
	// validate returns every problem with the scenario's flags.
	validate() []string
	// sockets is how many sockets the run holds at once (for RLIMIT_NOFILE).
	sockets() int
	// budget bounds the run's wall time when --timeout is not given.
	budget() time.Duration
	// run performs the scenario. It returns a report whenever it got far
	// enough to have one, even together with an error.
	run(ctx context.Context, e *env) (report, error)
}

// multiNode is implemented by the commands that spread their sockets over
// several nodes (--port given more than once).
type multiNode interface{ multiNode() bool }

// scenario describes a subcommand of `parley bench`.
type scenario struct {
	name    string
	summary string
	details string
	// newCommand makes the scenario's command with the common configuration.
	newCommand func(c *commonConfig) command
}

// define makes the scenario's command and registers its flags on fs.
func (sc *scenario) define(fs *flag.FlagSet, c *commonConfig) command {
	cmd := sc.newCommand(c)
	cmd.register(fs)
	return cmd
}

var scenarios = []scenario{fanoutScenario, connectionsScenario, presenceScenario, chatScenario}

// env is what a running scenario gets from Main.
type env struct {
	cfg      *commonConfig
	target   target    // the first node: the HTTP API and single-node scenarios
	nodes    []target  // every node (fanout spreads its sockets over them)
	progress io.Writer // nil with --quiet
	server   serverSampler
	errs     *errorLog
	scenario string
}

// newInfo starts a report's common part.
func (e *env) newInfo() runInfo {
	return runInfo{Scenario: e.scenario, Target: targetsString(e.nodes), StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

// newServerReport returns nil without --server-pid.
func (e *env) newServerReport() *serverReport {
	if !e.server.enabled() {
		return nil
	}
	return &serverReport{PID: e.server.pids[0], PIDs: e.server.pids}
}

// Main runs `parley bench SCENARIO [flags]` with args = everything after
// "bench"; returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			if args[1] == "seed-data" {
				return seedMain(ctx, []string{"--help"}, stdout, stderr)
			}
			if sc := lookup(args[1]); sc != nil {
				fs, cfg := newFlagSet(sc)
				sc.define(fs, cfg)
				printScenarioUsage(stdout, sc, fs)
				return exitOK
			}
		}
		printUsage(stdout)
		return exitOK
	}
	if args[0] == "seed-data" {
		return seedMain(ctx, args[1:], stdout, stderr)
	}
	sc := lookup(args[0])
	if sc == nil {
		fmt.Fprintf(stderr, "parley bench: unknown scenario %q\n\n", args[0])
		printUsage(stderr)
		return exitUsage
	}
	fs, cfg := newFlagSet(sc)
	cmd := sc.define(fs, cfg)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printScenarioUsage(stdout, sc, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "parley bench %s: %v\nRun 'parley bench %s --help' for usage.\n", sc.name, err, sc.name)
		return exitUsage
	}
	var probs []string
	if err := cfg.applyEnv(); err != nil {
		probs = append(probs, err.Error())
	}
	if probs = append(probs, validate(fs, cfg, cmd)...); len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintf(stderr, "parley bench %s: %s\n", sc.name, p)
		}
		fmt.Fprintf(stderr, "Run 'parley bench %s --help' for usage.\n", sc.name)
		return exitUsage
	}
	return execute(ctx, sc, cfg, cmd, stdout, stderr)
}

// validate returns every problem with the command line, and raises the
// open-file limit once the command line is sound.
func validate(fs *flag.FlagSet, cfg *commonConfig, cmd command) []string {
	probs := cfg.validate(cmd.credentials())
	if fs.NArg() > 0 {
		probs = append(probs, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if n := len(cfg.Ports.v); n > 1 {
		if m, ok := cmd.(multiNode); !ok || !m.multiNode() {
			probs = append(probs, fmt.Sprintf("--port lists %d nodes but only fanout spreads over several; give one port", n))
		}
	}
	probs = append(probs, cmd.validate()...)
	if len(probs) > 0 {
		return probs
	}
	// Every socket is a descriptor; the headroom covers HTTP connections
	// and the runtime's own.
	limit, err := raiseNofile()
	if need := uint64(cmd.sockets()) + 256; err == nil && limit < need {
		probs = append(probs, fmt.Sprintf("this run needs about %d open files but the limit is %d: raise it (ulimit -n) or use fewer sockets", need, limit))
	}
	return probs
}

// execute runs a validated command under its deadline and prints the
// report, returning the exit code.
func execute(ctx context.Context, sc *scenario, cfg *commonConfig, cmd command, stdout, stderr io.Writer) int {
	budget := cfg.Timeout
	if budget == 0 {
		budget = min(cmd.budget(), maxTimeout)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	e := &env{
		cfg:      cfg,
		target:   cfg.target(),
		nodes:    cfg.targets(),
		server:   serverSampler{pids: cfg.ServerPIDs.v},
		errs:     newErrorLog(),
		scenario: sc.name,
	}
	if !cfg.Quiet {
		e.progress = stderr
	}
	start := time.Now()
	rep, err := cmd.run(ctx, e)
	if rep != nil {
		info := rep.common()
		info.WallSeconds = round(time.Since(start).Seconds(), 3)
		info.Errors = append(info.Errors, e.errs.list()...)
		if werr := writeReport(stdout, cfg.JSONPath, rep); werr != nil {
			fmt.Fprintf(stderr, "parley bench %s: writing report: %v\n", sc.name, werr)
			return exitFailure
		}
		if err == nil && !info.Completed {
			err = errors.New("the run did not complete")
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("%w (the run's deadline was %s; see --timeout)", err, budget)
		}
		fmt.Fprintf(stderr, "parley bench %s: %v\n", sc.name, err)
		return exitFailure
	}
	return exitOK
}

func lookup(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name {
			return &scenarios[i]
		}
	}
	return nil
}

func newFlagSet(sc *scenario) (*flag.FlagSet, *commonConfig) {
	fs := flag.NewFlagSet("parley bench "+sc.name, flag.ContinueOnError)
	// Errors and usage are printed by Main, to the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cfg := &commonConfig{}
	cfg.register(fs)
	return fs, cfg
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: parley bench SCENARIO [flags]

Load-tests a Pusher-protocol server (Parley, soketi, Reverb, ...) on this
machine. Publishing is open-loop: latency counts from when each message was
due, so a slow server cannot hide its stalls.

Scenarios:
`)
	for _, sc := range scenarios {
		fmt.Fprintf(w, "  %-12s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintf(w, "  %-12s %s\n", "seed-data", "fill an empty chat database with a large history (users, matters, messages, read state)")
	fmt.Fprint(w, `
Every scenario takes --host (127.0.0.1), --port (8080), --app-id, --key and
--secret (from $PARLEY_APP_ID/_KEY/_SECRET, else $REVERB_APP_ID/_KEY/_SECRET,
else the credentials parley serve generated in --data-dir, as serve reads
them), --data-dir (the server's: $PARLEY_DATA_DIR, else ./data), --json FILE, --server-pid PID and --allow-remote (targets other than loopback
are refused without it). fanout takes several ports (--port 8080,8081), one
per node, and --server-pid takes several pids, whose figures are summed.

Exit status: 0 when the run completed (even with loss), 1 when it failed,
2 on a usage error. Run 'parley bench SCENARIO --help' for its flags.
`)
}

func printScenarioUsage(w io.Writer, sc *scenario, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: parley bench %s [flags]\n\n%s\n\n%s\n\nFlags:\n", sc.name, sc.summary, strings.TrimSpace(sc.details))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
