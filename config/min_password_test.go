package config

import (
	"strings"
	"testing"
)

func TestMinPasswordLength(t *testing.T) {
	cfg, err := Load(nil, envOf(map[string]string{}), nil)
	if err != nil || cfg.MinPasswordLength != 8 {
		t.Fatalf("default: %v %v", cfg, err)
	}
	cfg, err = Load(nil, envOf(map[string]string{"PARLEY_MIN_PASSWORD_LENGTH": "12"}), nil)
	if err != nil || cfg.MinPasswordLength != 12 {
		t.Fatalf("12: %v %v", cfg, err)
	}
	for _, v := range []string{"0", "73", "eight"} {
		_, err := Load(nil, envOf(map[string]string{"PARLEY_MIN_PASSWORD_LENGTH": v}), nil)
		if err == nil || !strings.Contains(err.Error(), "PARLEY_MIN_PASSWORD_LENGTH") {
			t.Errorf("%q: %v", v, err)
		}
	}
}
