// Package codecheck holds tests of the code base itself: rules a reader can
// rely on (no function longer than a screen or two), checked on every run.
package codecheck
