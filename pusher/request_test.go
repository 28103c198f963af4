package pusher

import (
	"net/url"
	"testing"
	"time"
)

// The example from Pusher's documentation of the HTTP API signature
// (TestChannelAuthMatchesPusherDocs has the channel authorisation one).
func TestSignedQueryPusherExample(t *testing.T) {
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	q := SignRequest("278d425bdf160c739803", "7ad3773142a6692b25b8", "POST", "/apps/3/events", nil, body, time.Unix(1353088179, 0))
	if q.Get("body_md5") != "ec365a775a4cd0599faeb73354201b6f" {
		t.Errorf("body_md5 %s", q.Get("body_md5"))
	}
	if q.Get("auth_signature") != "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c" {
		t.Errorf("auth_signature %s", q.Get("auth_signature"))
	}
	if q.Get("auth_version") != "1.0" || q.Get("auth_timestamp") != "1353088179" || q.Get("auth_key") != "278d425bdf160c739803" {
		t.Errorf("query %v", q)
	}
}

func TestCanonicalQueryIsSortedLowercaseUnescaped(t *testing.T) {
	got := CanonicalQuery(url.Values{"B": {"x y"}, "a": {"1&"}, "auth_signature": {"zz"}})
	if got != "a=1&&b=x y" {
		t.Errorf("got %q", got)
	}
}
