// Package defaults fills in options left unset.
package defaults

// Set gives *v the default def unless *v is positive: for a count, size or
// duration option, zero (and a negative value) means "the default".
func Set[T ~int | ~int64 | ~float64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
