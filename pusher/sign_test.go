package pusher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// The example from Pusher's authorization docs.
func TestChannelAuthMatchesPusherDocs(t *testing.T) {
	got := ChannelAuth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar", "")
	want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
	if got != want {
		t.Fatalf("got %s", got)
	}
	cd := `{"user_id":10,"user_info":{"name":"Mr. Channels"}}`
	got = ChannelAuth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "presence-foobar", cd)
	if want := "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"; got != want {
		t.Fatalf("presence: got %s", got)
	}
	if !ValidAuth(want, want) || ValidAuth(want, want[:len(want)-1]+"0") {
		t.Fatal("ValidAuth")
	}
}

func TestValidateChannelAndClassify(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "private-a": true, "presence-a.1": true, "-_=@,.;": true, strings.Repeat("x", 200): true,
		"": false, "a b": false, "a#b": false, "#x": false, strings.Repeat("x", 201): false, "é": false,
	} {
		if got := ValidateChannel(name, false) == ""; got != ok {
			t.Errorf("%q: valid=%v, want %v", name, got, ok)
		}
	}
	if ValidateChannel("#server-to-user-1", false) == "" || ValidateChannel("#server-to-user-1", true) != "" {
		t.Error("#server-to-user- is only for the server side")
	}
	for name, want := range map[string]struct {
		kind  Kind
		cache bool
	}{
		"x": {KindPublic, false}, "cache-x": {KindPublic, true}, "private-x": {KindPrivate, false},
		"private-cache-x": {KindPrivate, true}, "private-encrypted-x": {KindEncrypted, false},
		"private-encrypted-cache-x": {KindEncrypted, true}, "presence-x": {KindPresence, false},
		"presence-cache-x": {KindPresence, true}, "#server-to-user-9": {KindServerToUser, false},
	} {
		if k, c := Classify(name); k != want.kind || c != want.cache {
			t.Errorf("%s: %v %v", name, k, c)
		}
	}
}

func TestParseChannelData(t *testing.T) {
	if id, info, p := ParseChannelData(`{"user_id":"u","user_info":{"a":1}}`); id != "u" || string(info) != `{"a":1}` || p != "" {
		t.Fatal(id, string(info), p)
	}
	if id, info, p := ParseChannelData(`{"user_id":42}`); id != "42" || info != nil || p != "" {
		t.Fatal(id, info, p)
	}
	for _, bad := range []string{"", "x", `{}`, `{"user_id":null}`, `{"user_id":true}`, `{"user_id":""}`} {
		if _, _, p := ParseChannelData(bad); p == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSignersAgreeWithAFreshHMAC(t *testing.T) {
	fresh := func(secret, msg string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(msg))
		return hex.EncodeToString(m.Sum(nil))
	}
	for i := range 3 { // a signer used again must be reset
		for _, secret := range []string{"s1", "s2", "", strings.Repeat("k", 100)} {
			msg := strings.Repeat("m", i*40)
			if got, want := Sign(secret, msg), fresh(secret, msg); got != want {
				t.Fatalf("Sign(%q, %q) = %s, want %s", secret, msg, got, want)
			}
			if got, want := SignBytes(secret, []byte(msg)), fresh(secret, msg); got != want {
				t.Fatalf("SignBytes: %s, want %s", got, want)
			}
			if got, want := ChannelAuth("k", secret, "1.2", "private-a", msg), "k:"+fresh(secret, "1.2:private-a"+map[bool]string{true: ":" + msg}[msg != ""]); got != want {
				t.Fatalf("ChannelAuth: %s, want %s", got, want)
			}
			if got, want := UserAuth("k", secret, "1.2", msg), "k:"+fresh(secret, "1.2::user::"+msg); got != want {
				t.Fatalf("UserAuth: %s, want %s", got, want)
			}
			auth := ChannelAuth("k", secret, "1.2", "presence-a", msg)
			if !ValidChannelAuth(auth, "k", secret, "1.2", "presence-a", msg) ||
				ValidChannelAuth(auth[:len(auth)-1], "k", secret, "1.2", "presence-a", msg) ||
				ValidChannelAuth(auth+"0", "k", secret, "1.2", "presence-a", msg) ||
				ValidChannelAuth(auth, "k", secret, "1.3", "presence-a", msg) || ValidChannelAuth("", "k", secret, "1.2", "presence-a", msg) {
				t.Fatal("ValidChannelAuth")
			}
		}
	}
}
